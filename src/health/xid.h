// XID meanings: the driver's error codes that NVML reports through
// nvmlEventTypeXidCriticalError, with the descriptions NVIDIA's XID catalog
// gives them, so that health log lines and ListAndWatch reasons say what
// happened ("XID 79: GPU has fallen off the bus") rather than only a number.
//
// Pure functions over a constant table; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace gdp::health {

// NVML reports an XID it cannot decode as 999 (nvml.h, nvmlEventData_t::eventData).
inline constexpr unsigned long long kUnknownXid = 999;

// NVIDIA's description of a well-known XID, or an empty view for one the
// table does not hold.
std::string_view XidDescription(unsigned long long xid);

// "XID 79: GPU has fallen off the bus"; "XID 200" for an XID the table lacks.
std::string XidReason(unsigned long long xid);

// What a GPU needs before it can be used again, as NVML's
// NVML_FI_DEV_GET_GPU_RECOVERY_ACTION field says (nvmlDeviceGpuRecoveryAction_t).
enum class RecoveryAction { kNone, kGpuReset, kNodeReboot, kDrainP2p, kDrainAndReset };

// NVML's value (NVML_GPU_RECOVERY_ACTION_*); an unknown value is taken as a
// GPU reset, the safe reading of "something is needed".
RecoveryAction RecoveryActionFromNvml(unsigned value);
// "GPU reset", "node reboot", "drain peer-to-peer traffic", "drain and GPU reset".
std::string_view RecoveryActionName(RecoveryAction action);

// The action NVIDIA's XID catalog documents for an XID, for drivers whose NVML
// lacks the recovery-action field; kNone for an XID whose documented action
// is restarting the application (or that the table does not hold).
RecoveryAction XidDocumentedAction(unsigned long long xid);

}  // namespace gdp::health
