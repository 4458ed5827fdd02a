// HealthTracker: the per-GPU health state machine, pure logic with no threads,
// no NVML and no clock of its own (callers pass `now`), so every rule below is
// unit-tested with plain values.
//
// A GPU is Healthy or Unhealthy. It becomes Unhealthy for one of two causes,
// which are tracked separately and must both be cleared before it recovers:
//   critical  an XID not in the ignored set, or a double-bit ECC error. Each
//             one restarts the quiet period. Cleared by a successful probe
//             once `now - last critical event >= quiet_period`; a quiet
//             period of zero never clears it.
//   lost      NVML answered NVML_ERROR_GPU_IS_LOST (or no longer finds the
//             GPU). Cleared by the first successful probe (NVML finds it again).
// and, on top of either, a pending recovery action: what NVML says the GPU
// needs before it can be used again (a reset, a reboot), or, where the driver
// lacks that field, what the XID's catalog entry documents. While one is
// pending the GPU stays Unhealthy whatever the quiet period says. NVML's value
// is cleared when NVML reports no action any more (after `gpusim reset` or a
// real reset); the documented one when the GPU is seen lost and found again
// (a reset takes it off the bus and back).
// Every Healthy<->Unhealthy transition is logged with its reason and returned
// as a HealthEvent; events that do not change the health (another XID on an
// Unhealthy GPU) return nothing.
//
// The options can be replaced (a config reload) without losing any GPU's state:
// see SetOptions().
//
// Not thread-safe: one owner (HealthMonitor guards it with a mutex).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/common/clock.h"
#include "src/health/health_options.h"
#include "src/health/xid.h"

namespace gdp::health {

// A change of one GPU's health.
struct HealthEvent {
  std::string uuid;
  bool healthy = true;
  // Unhealthy: why ("XID 79: GPU has fallen off the bus"); Healthy: how it
  // recovered.
  std::string reason;

  bool operator==(const HealthEvent&) const = default;
};

// The state of one GPU.
struct DeviceHealth {
  bool healthy = true;
  bool lost = false;
  bool critical = false;
  Clock::TimePoint last_critical{};  // valid when critical
  std::string critical_reason;       // e.g. "XID 48: Double Bit ECC Error"
  // What the GPU needs before it can be used again; kNone when nothing.
  RecoveryAction pending_action = RecoveryAction::kNone;
  bool action_from_nvml = false;  // NVML's field said so (else the XID table)
  // Why it is Unhealthy (the lost reason while lost, else the critical one,
  // with the pending action); empty when Healthy.
  std::string reason;
};

class HealthTracker {
 public:
  // Every GPU in `uuids` starts Healthy. Events for other UUIDs are logged
  // and ignored.
  HealthTracker(const std::vector<std::string>& uuids, const HealthOptions& options);

  std::optional<HealthEvent> OnXid(const std::string& uuid, unsigned long long xid,
                                   Clock::TimePoint now);
  std::optional<HealthEvent> OnDoubleBitEcc(const std::string& uuid, Clock::TimePoint now);
  std::optional<HealthEvent> OnLost(const std::string& uuid, Clock::TimePoint now);
  // What the GPU needs now: `from_nvml` when NVML's recovery-action field
  // said so, false for an XID's documented action. kNone from NVML clears a
  // pending action (the GPU then recovers at a probe once nothing else holds
  // it); kNone from the table changes nothing.
  std::optional<HealthEvent> OnRecoveryAction(const std::string& uuid, RecoveryAction action,
                                              bool from_nvml, Clock::TimePoint now);
  // `ok`: NVML answered normally for the GPU. A failed probe changes nothing.
  std::optional<HealthEvent> OnProbe(const std::string& uuid, bool ok, Clock::TimePoint now);

  // Replaces the options; every GPU keeps its state. An Unhealthy GPU stays
  // Unhealthy and recovers under the new quiet period, still measured from its
  // last critical event (so a shortened period can make it recoverable at the
  // next probe; a period of zero stops it recovering). A newly ignored XID no
  // longer marks a GPU, but does not clear a GPU it already marked: that one
  // recovers through the quiet period like any other.
  void SetOptions(const HealthOptions& options);
  const HealthOptions& options() const { return options_; }

  // Makes every Unhealthy GPU Healthy, clearing both causes: health checking
  // was switched off (`why` says so) and nobody will clear them otherwise.
  // Returns one Healthy event per GPU that changed, in the constructor's order.
  std::vector<HealthEvent> ClearAll(std::string_view why);

  // Tracks `uuids` from now on: a GPU in both keeps its state, a new one
  // starts Healthy, one no longer listed is forgotten.
  void Retarget(const std::vector<std::string>& uuids);

  // nullptr for an unknown UUID.
  const DeviceHealth* Get(const std::string& uuid) const;
  const std::map<std::string, DeviceHealth>& devices() const { return devices_; }
  const std::vector<std::string>& uuids() const { return uuids_; }

 private:
  DeviceHealth* Find(const std::string& uuid, std::string_view what);
  std::optional<HealthEvent> MarkCritical(const std::string& uuid, DeviceHealth& d,
                                          std::string reason, Clock::TimePoint now);

  HealthOptions options_;
  std::vector<std::string> uuids_;  // in the caller's order
  std::map<std::string, DeviceHealth> devices_;
};

}  // namespace gdp::health
