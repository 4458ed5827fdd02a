// The Inventory as a JSON document that reads back to the same Inventory,
// every field included. `gpu-device-plugin inventory` prints it; the daemon
// reads it from that command, run as a child process, to learn a changed
// node's GPUs while its own NVML session is still in use (see
// src/daemon/discovery_child.h).
//
// Not the operator-facing GET /inventory document, which is shorter and
// free to change shape.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "src/nvml/inventory.h"

namespace gdp::nvml {

// Format version, the document's "format" field; a reader refuses others.
inline constexpr int kInventoryCodecFormat = 1;

std::string EncodeInventory(const Inventory& inventory);

// INVALID_ARGUMENT, naming the field, when the text is not such a document.
absl::StatusOr<std::shared_ptr<const Inventory>> DecodeInventory(std::string_view text);

}  // namespace gdp::nvml
