#include "src/health/health_tracker.h"

#include <fmt/format.h>

#include <utility>

#include "src/common/log.h"
#include "src/health/xid.h"

namespace gdp::health {
namespace {

constexpr std::string_view kLostReason =
    "GPU is lost: NVML reports it fallen off the bus or inaccessible (NVML_ERROR_GPU_IS_LOST)";

long long Seconds(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

}  // namespace

HealthTracker::HealthTracker(const std::vector<std::string>& uuids, const HealthOptions& options)
    : options_(options), uuids_(uuids) {
  for (const auto& uuid : uuids_) devices_.try_emplace(uuid);
}

void HealthTracker::SetOptions(const HealthOptions& options) { options_ = options; }

std::vector<HealthEvent> HealthTracker::ClearAll(std::string_view why) {
  std::vector<HealthEvent> events;
  for (const auto& uuid : uuids_) {
    DeviceHealth& d = devices_.at(uuid);
    if (d.healthy) continue;
    const std::string reason = fmt::format("reported healthy: {} (was: {})", why, d.reason);
    log::Info("device reported healthy without checking", {{"device", uuid}, {"reason", reason}});
    d = DeviceHealth{};
    events.push_back(HealthEvent{uuid, true, reason});
  }
  return events;
}

const DeviceHealth* HealthTracker::Get(const std::string& uuid) const {
  auto it = devices_.find(uuid);
  return it == devices_.end() ? nullptr : &it->second;
}

DeviceHealth* HealthTracker::Find(const std::string& uuid, std::string_view what) {
  auto it = devices_.find(uuid);
  if (it == devices_.end()) {
    log::Warn("health event for a device not in the inventory; ignored",
              {{"device", uuid}, {"event", what}});
    return nullptr;
  }
  return &it->second;
}

std::optional<HealthEvent> HealthTracker::OnXid(const std::string& uuid, unsigned long long xid,
                                                Clock::TimePoint now) {
  DeviceHealth* d = Find(uuid, "xid");
  if (d == nullptr) return std::nullopt;
  if (options_.ignored_xids.contains(xid)) {
    log::Info("ignoring XID: application fault, not a device fault (healthCheck ignored XIDs)",
              {{"device", uuid}, {"xid", xid}, {"description", XidDescription(xid)}});
    return std::nullopt;
  }
  return MarkCritical(uuid, *d, XidReason(xid), now);
}

std::optional<HealthEvent> HealthTracker::OnDoubleBitEcc(const std::string& uuid,
                                                         Clock::TimePoint now) {
  DeviceHealth* d = Find(uuid, "double-bit ECC");
  if (d == nullptr) return std::nullopt;
  return MarkCritical(uuid, *d, "double-bit ECC error", now);
}

namespace {

std::string WithAction(const std::string& reason, RecoveryAction action, bool from_nvml) {
  if (action == RecoveryAction::kNone) return reason;
  return fmt::format("{}; needs a {} before it is used again ({})", reason,
                     RecoveryActionName(action),
                     from_nvml ? "NVML recovery action" : "documented action of the XID");
}

}  // namespace

std::optional<HealthEvent> HealthTracker::OnRecoveryAction(const std::string& uuid,
                                                           RecoveryAction action, bool from_nvml,
                                                           Clock::TimePoint /*now*/) {
  DeviceHealth* d = Find(uuid, "recovery action");
  if (d == nullptr) return std::nullopt;
  if (action == RecoveryAction::kNone) {
    if (!from_nvml || d->pending_action == RecoveryAction::kNone) return std::nullopt;
    log::Info("NVML reports no recovery action pending any more",
              {{"device", uuid}, {"was", RecoveryActionName(d->pending_action)}});
    d->pending_action = RecoveryAction::kNone;
    d->action_from_nvml = false;
    if (!d->healthy) d->reason = d->lost ? std::string(kLostReason) : d->critical_reason;
    return std::nullopt;
  }
  // NVML's own word outranks the table's guess; a table guess never replaces it.
  if (!from_nvml && d->action_from_nvml) return std::nullopt;
  if (action == d->pending_action && from_nvml == d->action_from_nvml) return std::nullopt;
  d->pending_action = action;
  d->action_from_nvml = from_nvml;
  const std::string base = d->lost                       ? std::string(kLostReason)
                           : !d->critical_reason.empty() ? d->critical_reason
                                                         : std::string("recovery action pending");
  d->reason = WithAction(base, action, from_nvml);
  if (!d->healthy) {
    log::Warn("device unhealthy until it is recovered", {{"device", uuid}, {"reason", d->reason}});
    return std::nullopt;
  }
  d->healthy = false;
  log::Warn("device unhealthy", {{"device", uuid}, {"reason", d->reason}});
  return HealthEvent{uuid, false, d->reason};
}

std::optional<HealthEvent> HealthTracker::MarkCritical(const std::string& uuid, DeviceHealth& d,
                                                       std::string reason, Clock::TimePoint now) {
  d.critical = true;
  d.last_critical = now;
  d.critical_reason = std::move(reason);
  if (!d.lost) d.reason = WithAction(d.critical_reason, d.pending_action, d.action_from_nvml);
  if (!d.healthy) {
    log::Warn("device still unhealthy: another critical error restarts its quiet period",
              {{"device", uuid},
               {"reason", d.critical_reason},
               {"quiet_period_s", Seconds(options_.quiet_period)}});
    return std::nullopt;
  }
  d.healthy = false;
  log::Warn(
      "device unhealthy",
      {{"device", uuid}, {"reason", d.reason}, {"quiet_period_s", Seconds(options_.quiet_period)}});
  return HealthEvent{uuid, false, d.reason};
}

std::optional<HealthEvent> HealthTracker::OnLost(const std::string& uuid, Clock::TimePoint) {
  DeviceHealth* d = Find(uuid, "lost");
  if (d == nullptr) return std::nullopt;
  if (d->lost) return std::nullopt;  // probes keep saying so; nothing new
  d->lost = true;
  d->reason = std::string(kLostReason);
  if (!d->healthy) {
    log::Warn("unhealthy device is now lost", {{"device", uuid}, {"reason", d->reason}});
    return std::nullopt;
  }
  d->healthy = false;
  log::Error("device unhealthy", {{"device", uuid}, {"reason", d->reason}});
  return HealthEvent{uuid, false, d->reason};
}

std::optional<HealthEvent> HealthTracker::OnProbe(const std::string& uuid, bool ok,
                                                  Clock::TimePoint now) {
  DeviceHealth* d = Find(uuid, "probe");
  if (d == nullptr || d->healthy || !ok) return std::nullopt;

  std::string how;
  if (d->lost) {
    d->lost = false;
    how = "NVML finds the GPU again";
    if (d->pending_action != RecoveryAction::kNone && !d->action_from_nvml) {
      // Off the bus and back: the reset the XID called for has happened.
      log::Info("GPU found again after being lost: taking it as the reset its XID called for",
                {{"device", uuid}, {"action", RecoveryActionName(d->pending_action)}});
      d->pending_action = RecoveryAction::kNone;
    }
    if (d->critical) {
      d->reason = d->critical_reason;
      log::Info("lost device found again; still waiting out its critical error",
                {{"device", uuid}, {"reason", d->reason}});
    }
  }
  if (d->pending_action != RecoveryAction::kNone) {
    d->reason =
        WithAction(d->critical ? d->critical_reason : std::string("recovery action pending"),
                   d->pending_action, d->action_from_nvml);
    return std::nullopt;  // waits for the reset, whatever the quiet period says
  }
  if (d->critical) {
    if (options_.quiet_period.count() == 0) return std::nullopt;  // never recovers
    const auto quiet = now - d->last_critical;
    if (quiet < options_.quiet_period) return std::nullopt;
    d->critical = false;
    how = fmt::format("no critical error for {}s after \"{}\" and NVML answers normally",
                      Seconds(options_.quiet_period), d->critical_reason);
  }
  if (how.empty()) how = "NVML reports no recovery action pending";
  d->healthy = true;
  d->reason.clear();
  d->critical_reason.clear();
  const std::string reason = "recovered: " + how;
  log::Info("device healthy again", {{"device", uuid}, {"reason", reason}});
  return HealthEvent{uuid, true, reason};
}

}  // namespace gdp::health

namespace gdp::health {

void HealthTracker::Retarget(const std::vector<std::string>& uuids) {
  std::map<std::string, DeviceHealth> next;
  for (const std::string& uuid : uuids) {
    auto it = devices_.find(uuid);
    next.emplace(uuid, it != devices_.end() ? it->second : DeviceHealth{});
  }
  devices_ = std::move(next);
  uuids_ = uuids;
}

}  // namespace gdp::health
