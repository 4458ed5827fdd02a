#include "src/health/xid.h"

#include <fmt/format.h>
#include <nvml.h>

#include <array>
#include <utility>

namespace gdp::health {
namespace {

// From NVIDIA's XID catalog (docs.nvidia.com/deploy/xid-errors). The codes
// NVIDIA's device plugin ignores by default (13, 31, 43, 45, 68, 109) and the
// ones GKE treats as critical for the node (48, 63, 64, 79, 119, 120, 123,
// 140) are all here, plus the common ECC and NVLink ones.
constexpr std::array<std::pair<unsigned long long, std::string_view>, 19> kXids = {{
    {13, "Graphics Engine Exception"},
    {31, "GPU memory page fault"},
    {43, "GPU stopped processing"},
    {45, "Preemptive cleanup, due to previous errors"},
    {48, "Double Bit ECC Error"},
    {63, "ECC page retirement or row remapping recording event"},
    {64, "ECC page retirement or row remapper recording failure"},
    {68, "NVDEC0 Exception"},
    {74, "NVLink Error"},
    {79, "GPU has fallen off the bus"},
    {92, "High single-bit ECC error rate"},
    {94, "Contained ECC error"},
    {95, "Uncontained ECC error"},
    {109, "Context Switch Timeout Error"},
    {119, "GSP RPC Timeout"},
    {120, "GSP Error"},
    {123, "SPI PMU RPC Write Failure"},
    {140, "Unrecovered ECC Error"},
    {kUnknownXid, "unknown XID (NVML could not decode it)"},
}};

}  // namespace

std::string_view XidDescription(unsigned long long xid) {
  for (const auto& [code, text] : kXids) {
    if (code == xid) return text;
  }
  return {};
}

RecoveryAction RecoveryActionFromNvml(unsigned value) {
  switch (value) {
    case NVML_GPU_RECOVERY_ACTION_NONE:
      return RecoveryAction::kNone;
    case NVML_GPU_RECOVERY_ACTION_GPU_RESET:
      return RecoveryAction::kGpuReset;
    case NVML_GPU_RECOVERY_ACTION_NODE_REBOOT:
      return RecoveryAction::kNodeReboot;
    case NVML_GPU_RECOVERY_ACTION_DRAIN_P2P:
      return RecoveryAction::kDrainP2p;
    case NVML_GPU_RECOVERY_ACTION_DRAIN_AND_RESET:
      return RecoveryAction::kDrainAndReset;
    default:
      return RecoveryAction::kGpuReset;
  }
}

std::string_view RecoveryActionName(RecoveryAction action) {
  switch (action) {
    case RecoveryAction::kNone:
      return "nothing";
    case RecoveryAction::kGpuReset:
      return "GPU reset";
    case RecoveryAction::kNodeReboot:
      return "node reboot";
    case RecoveryAction::kDrainP2p:
      return "drain of peer-to-peer traffic";
    case RecoveryAction::kDrainAndReset:
      return "drain and GPU reset";
  }
  return "GPU reset";
}

RecoveryAction XidDocumentedAction(unsigned long long xid) {
  // XIDs whose catalog entry says the GPU must be reset (or the node
  // rebooted) before it is used again. Application faults, contained errors
  // and rate warnings (13, 31, 43, 45, 68, 92, 94, 109, ...) need no reset.
  switch (xid) {
    case 48:   // double-bit ECC error
    case 63:   // row remapping pending: applied at the next reset
    case 64:   // row remapping failure
    case 74:   // NVLink error
    case 79:   // fallen off the bus
    case 95:   // uncontained ECC error
    case 119:  // GSP RPC timeout
    case 120:  // GSP error
    case 140:  // unrecovered ECC error
      return RecoveryAction::kGpuReset;
    default:
      return RecoveryAction::kNone;
  }
}

std::string XidReason(unsigned long long xid) {
  const std::string_view text = XidDescription(xid);
  if (text.empty()) return fmt::format("XID {}", xid);
  return fmt::format("XID {}: {}", xid, text);
}

}  // namespace gdp::health
