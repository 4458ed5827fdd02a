// DiscoverInChild: the node's GPUs as a fresh NVML session sees them, found by
// a child process (`<exe> inventory --nvml-library <path>`), while this
// process's own session stays in use.
//
// Why: a GPU added since nvmlInit is only enumerated by a new session, and
// this process cannot start one until its NVML event waits return (they
// cannot be interrupted and last up to a second). The child's answer lets the
// daemon advertise the change at once and swap its own session afterwards.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "src/nvml/inventory.h"

namespace gdp::daemon {

struct DiscoveryChildOptions {
  std::string exe;           // the gpu-device-plugin binary
  std::string nvml_library;  // passed as --nvml-library
  // The child is killed, and the call fails, after this long.
  std::chrono::milliseconds timeout{10000};
};

// The child's inventory; an error says what failed (spawn, exit status,
// timeout, a document that does not decode). The child's stderr is this
// process's: its log lines land in the daemon's log.
absl::StatusOr<std::shared_ptr<const nvml::Inventory>> DiscoverInChild(
    const DiscoveryChildOptions& options);

}  // namespace gdp::daemon
