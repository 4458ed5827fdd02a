#include "src/health/health_monitor.h"

#include <fmt/format.h>
#include <pthread.h>

#include <algorithm>
#include <utility>

#include "src/common/backoff.h"
#include "src/common/log.h"
#include "src/health/xid.h"

namespace gdp::health {
namespace {

constexpr unsigned long long kHealthEvents =
    nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError;
constexpr unsigned long long kWantedEvents = kHealthEvents | nvmlEventMigConfigChange |
                                             nvmlEventTypeGpuRecoveryAction |
                                             nvmlEventTypeGpuUnavailableError;

std::vector<std::string> GpuUuids(const nvml::Inventory& inventory) {
  std::vector<std::string> uuids;
  uuids.reserve(inventory.gpus.size());
  for (const auto& gpu : inventory.gpus) uuids.push_back(gpu.uuid);
  return uuids;
}

// NVML_FI_DEV_GET_GPU_RECOVERY_ACTION; nullopt when the driver lacks it.
std::optional<RecoveryAction> ReadRecoveryAction(nvml::NvmlApi& api, nvmlDevice_t device) {
  nvmlFieldValue_t v{};
  v.fieldId = NVML_FI_DEV_GET_GPU_RECOVERY_ACTION;
  if (api.DeviceGetFieldValues(device, 1, &v) != NVML_SUCCESS || v.nvmlReturn != NVML_SUCCESS) {
    return std::nullopt;
  }
  return RecoveryActionFromNvml(v.value.uiVal);
}

unsigned int ToMs(std::chrono::milliseconds d) {
  return d.count() <= 0 ? 0u : static_cast<unsigned int>(d.count());
}

}  // namespace

HealthMonitor::HealthMonitor(nvml::NvmlApi& api, const nvml::Inventory& inventory,
                             HealthOptions options, HealthListener& listener, Clock& clock)
    : api_(&api),
      listener_(listener),
      clock_(clock),
      uuids_(GpuUuids(inventory)),
      tracker_(uuids_, options),
      options_(std::move(options)) {}

HealthMonitor::~HealthMonitor() { Stop(); }

absl::Status HealthMonitor::Start() {
  std::lock_guard control(control_mu_);
  if (started_) {
    return absl::FailedPreconditionError(
        "health monitor: Start() called while already started; call Stop() first");
  }
  started_ = true;
  if (!Options().enabled) {
    log::Info("health checking disabled (health.enabled: false); every GPU stays Healthy",
              {{"gpus", uuids_.size()}});
    return absl::OkStatus();
  }
  StartThread();
  return absl::OkStatus();
}

void HealthMonitor::RequestStop() {
  std::lock_guard control(control_mu_);
  if (thread_.joinable()) thread_.request_stop();
}

void HealthMonitor::Stop() {
  std::lock_guard control(control_mu_);
  started_ = false;
  StopThread();
}

void HealthMonitor::StartThread() {
  // Measured here, not on the new thread, so the first probe is due one
  // interval after Start() returns whatever the thread's scheduling.
  last_probe_ = clock_.Now();
  probe_now_ = false;
  rebuild_ = false;
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

void HealthMonitor::StopThread() {
  if (!thread_.joinable()) return;
  thread_.request_stop();  // wakes SleepFor through the stop_token
  thread_.join();
}

HealthOptions HealthMonitor::Options() const {
  MutexLock lock(&mu_);
  return options_;
}

void HealthMonitor::SetOptions(HealthOptions options) {
  std::lock_guard control(control_mu_);
  HealthOptions old;
  {
    MutexLock lock(&mu_);
    old = options_;
    options_ = options;
    tracker_.SetOptions(options);
  }
  {
    std::lock_guard lock(sleep_mu_);
    ++options_generation_;
  }
  sleep_cv_.notify_all();
  const auto seconds = [](std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
  };
  log::Info("health options changed; every GPU keeps its state",
            {{"enabled", options.enabled},
             {"ignored_xids", fmt::format("{}", fmt::join(options.ignored_xids, ","))},
             {"quiet_period_s", seconds(options.quiet_period)},
             {"probe_interval_ms", options.probe_interval.count()}});

  if (old.enabled && !options.enabled) {
    StopThread();
    std::vector<HealthEvent> cleared;
    {
      MutexLock lock(&mu_);
      cleared = tracker_.ClearAll(
          "health checking disabled (health.enabled: false), so nothing would ever clear it");
    }
    log::Info(
        "health checking disabled by a config change: monitoring stopped, every GPU is reported "
        "Healthy",
        {{"gpus", uuids_.size()}, {"were_unhealthy", cleared.size()}});
    for (auto& e : cleared) Emit(std::move(e));
  } else if (!old.enabled && options.enabled && started_) {
    log::Info("health checking enabled by a config change: monitoring starts",
              {{"gpus", uuids_.size()}});
    StartThread();
  }
}

absl::Status HealthMonitor::SetInventory(nvml::NvmlApi& api, const nvml::Inventory& inventory) {
  std::lock_guard control(control_mu_);
  if (thread_.joinable()) {
    return absl::FailedPreconditionError(
        "health monitor: SetInventory() while the monitor runs; call Stop() first");
  }
  api_ = &api;
  uuids_ = GpuUuids(inventory);
  probe_failure_runs_.clear();
  MutexLock lock(&mu_);
  tracker_.Retarget(uuids_);
  return absl::OkStatus();
}

std::map<std::string, DeviceHealth> HealthMonitor::Devices() const {
  MutexLock lock(&mu_);
  return tracker_.devices();
}

HealthStats HealthMonitor::Stats() const {
  HealthStats s;
  s.events = events_.load();
  s.ecc_events = ecc_events_.load();
  s.unattributed_events = unattributed_events_.load();
  s.wait_errors = wait_errors_.load();
  s.event_set_recreations = event_set_recreations_.load();
  s.registration_failures = registration_failures_.load();
  s.probes = probes_.load();
  s.probe_failures = probe_failures_.load();
  s.transitions = transitions_.load();
  MutexLock lock(&mu_);
  s.xids = xids_;
  s.xids_by_gpu = xids_by_gpu_;
  s.last_xid_by_gpu = last_xid_by_gpu_;
  return s;
}

void HealthMonitor::Emit(std::optional<HealthEvent> event) {
  if (!event) return;
  ++transitions_;
  listener_.OnHealthChanged(*event);
}

void HealthMonitor::MarkLost(const std::string& uuid) {
  std::optional<HealthEvent> event;
  {
    MutexLock lock(&mu_);
    event = tracker_.OnLost(uuid, clock_.Now());
  }
  Emit(std::move(event));
}

void HealthMonitor::SleepFor(const std::stop_token& stop, std::chrono::milliseconds d) {
  std::unique_lock lock(sleep_mu_);
  sleep_cv_.wait_for(lock, stop, d, [&] { return options_generation_ != seen_generation_; });
}

void HealthMonitor::Run(const std::stop_token& stop) {
  ::pthread_setname_np(::pthread_self(), "gdp-health");  // as top -H and perf show it
  HealthOptions options = Options();
  log::Info("health monitor started",
            {{"gpus", uuids_.size()},
             {"probe_interval_ms", options.probe_interval.count()},
             {"quiet_period_s",
              std::chrono::duration_cast<std::chrono::seconds>(options.quiet_period).count()}});
  Backoff backoff(options.wait_error_backoff_initial, options.wait_error_backoff_max);
  SetState state = SetState::kNone;
  int consecutive_errors = 0;

  while (!stop.stop_requested()) {
    // A snapshot per round, so SetOptions() takes effect here. The generation
    // is read first: a SetOptions() after it makes SleepFor() return at once.
    {
      std::lock_guard lock(sleep_mu_);
      seen_generation_ = options_generation_;
    }
    const HealthOptions previous = options;
    options = Options();
    if (options.wait_error_backoff_initial != previous.wait_error_backoff_initial ||
        options.wait_error_backoff_max != previous.wait_error_backoff_max) {
      backoff = Backoff(options.wait_error_backoff_initial, options.wait_error_backoff_max);
    }
    if (rebuild_ && state == SetState::kReady) {
      TearDown();
      state = SetState::kNone;
    }
    rebuild_ = false;
    if (state == SetState::kNone) {
      state = SetUp();
      if (state == SetState::kNone) {  // nvmlEventSetCreate failed; retry after a pause
        ProbeIfDue(options);
        SleepFor(stop, backoff.Next());
        continue;
      }
    }
    if (state == SetState::kUnsupported) {
      ProbeIfDue(options);
      SleepFor(stop, options.wait_timeout);
      continue;
    }

    nvmlEventData_t data{};
    const nvmlReturn_t r = api_->EventSetWait(set_, &data, ToMs(options.wait_timeout));
    if (r == NVML_SUCCESS || r == NVML_ERROR_TIMEOUT) {
      if (consecutive_errors > 0) {
        log::Info("NVML event wait works again", {{"failed_waits", consecutive_errors}});
      }
      consecutive_errors = 0;
      backoff.Reset();
      if (r == NVML_SUCCESS) HandleEvent(data);
      ProbeIfDue(options);
      continue;
    }

    ++wait_errors_;
    ++consecutive_errors;
    OnWaitError(r, consecutive_errors, options);
    // Some GPU fell off the bus; the wait does not say which, the probes will.
    if (r == NVML_ERROR_GPU_IS_LOST) probe_now_ = true;
    if (consecutive_errors % std::max(1, options.recreate_event_set_after) == 0) {
      log::Warn("recreating the NVML event set after repeated wait errors",
                {{"consecutive_errors", consecutive_errors}});
      ++event_set_recreations_;
      rebuild_ = true;
    }
    ProbeIfDue(options);
    SleepFor(stop, backoff.Next());
  }
  TearDown();
  log::Info("health monitor stopped");
}

void HealthMonitor::OnWaitError(nvmlReturn_t r, int consecutive, const HealthOptions& options) {
  const Clock::TimePoint now = clock_.Now();
  if (consecutive > 1 && now - last_error_log_ < options.error_log_interval) return;
  last_error_log_ = now;
  log::Warn(
      "NVML event wait failed; retrying with backoff. Device health is unchanged; "
      "if this persists, check the driver (dmesg, nvidia-smi)",
      {{"error", api_->ErrorString(r)},
       {"code", static_cast<int>(r)},
       {"consecutive_errors", consecutive},
       {"total_errors", wait_errors_.load()}});
}

HealthMonitor::SetState HealthMonitor::SetUp() {
  nvmlEventSet_t set = nullptr;
  const nvmlReturn_t r = api_->EventSetCreate(&set);
  if (r == NVML_ERROR_NOT_SUPPORTED) {
    log::Warn(
        "NVML event sets are not supported here; XIDs will not be seen, GPUs are only probed "
        "for being lost",
        {{"error", api_->ErrorString(r)}});
    return SetState::kUnsupported;
  }
  if (r != NVML_SUCCESS) {
    ++wait_errors_;
    log::Warn("nvmlEventSetCreate failed; retrying with backoff, GPUs are probed meanwhile",
              {{"error", api_->ErrorString(r)}, {"code", static_cast<int>(r)}});
    return SetState::kNone;
  }
  set_ = set;
  registered_.clear();

  for (const auto& uuid : uuids_) {
    nvmlDevice_t device = nullptr;
    nvmlReturn_t rr = api_->DeviceGetHandleByUUID(uuid.c_str(), &device);
    if (rr == NVML_ERROR_NOT_FOUND) rr = NVML_ERROR_GPU_IS_LOST;  // as in ProbeAll()
    unsigned long long supported = 0;
    if (rr == NVML_SUCCESS) rr = api_->DeviceGetSupportedEventTypes(device, &supported);
    if (rr == NVML_ERROR_GPU_IS_LOST) {
      MarkLost(uuid);
      continue;
    }
    if (rr != NVML_SUCCESS) {
      ++registration_failures_;
      log::Warn("cannot query the health events of a GPU; it is only probed",
                {{"device", uuid}, {"error", api_->ErrorString(rr)}});
      continue;
    }
    const unsigned long long wanted = supported & kWantedEvents;
    if ((wanted & kHealthEvents) == 0) {
      log::Warn(
          "GPU supports neither XID nor double-bit ECC events; it is only probed for being lost",
          {{"device", uuid}, {"supported_events", fmt::format("{:#x}", supported)}});
    }
    if (wanted == 0) continue;
    rr = api_->DeviceRegisterEvents(device, wanted, set_);
    if (rr == NVML_ERROR_GPU_IS_LOST) {
      MarkLost(uuid);
      continue;
    }
    if (rr != NVML_SUCCESS) {
      ++registration_failures_;
      log::Warn("nvmlDeviceRegisterEvents failed; the GPU is only probed",
                {{"device", uuid}, {"error", api_->ErrorString(rr)}});
      continue;
    }
    registered_.emplace(device, uuid);
    log::Debug("watching GPU health events",
               {{"device", uuid}, {"events", fmt::format("{:#x}", wanted)}});
  }
  return SetState::kReady;
}

void HealthMonitor::TearDown() {
  if (set_ == nullptr) return;
  const nvmlReturn_t r = api_->EventSetFree(set_);
  if (r != NVML_SUCCESS) {
    log::Warn("nvmlEventSetFree failed", {{"error", api_->ErrorString(r)}});
  }
  set_ = nullptr;
  registered_.clear();
}

void HealthMonitor::HandleEvent(const nvmlEventData_t& data) {
  ++events_;
  std::vector<std::string> targets;
  if (auto it = registered_.find(data.device); it != registered_.end()) {
    targets.push_back(it->second);
  } else {
    ++unattributed_events_;
    log::Warn("NVML event without a known device; applying it to every GPU",
              {{"event_type", fmt::format("{:#x}", data.eventType)}, {"data", data.eventData}});
    targets = uuids_;
  }

  if ((data.eventType & nvmlEventMigConfigChange) != 0) {
    for (const auto& uuid : targets) {
      log::Info("NVML: MIG configuration changed", {{"device", uuid}});
      listener_.OnMigConfigChanged(uuid);
    }
  }
  if ((data.eventType & nvmlEventTypeGpuUnavailableError) != 0) {
    // The GPU became unreachable: the probes tell lost from a passing blip.
    probe_now_ = true;
  }
  if ((data.eventType & nvmlEventTypeGpuRecoveryAction) != 0) {
    for (const auto& uuid : targets) ApplyRecoveryAction(uuid, data.device, 0);
  }
  const bool xid = (data.eventType & nvmlEventTypeXidCriticalError) != 0;
  const bool ecc = (data.eventType & nvmlEventTypeDoubleBitEccError) != 0;
  if (!xid && !ecc) {
    log::Debug("ignoring NVML event of an unwatched type",
               {{"event_type", fmt::format("{:#x}", data.eventType)}});
    return;
  }
  if (ecc) ++ecc_events_;
  std::vector<HealthEvent> changes;
  {
    MutexLock lock(&mu_);
    if (xid) ++xids_[data.eventData];
    const Clock::TimePoint now = clock_.Now();
    for (const auto& uuid : targets) {
      if (xid) {
        ++xids_by_gpu_[uuid][data.eventData];
        last_xid_by_gpu_[uuid] = data.eventData;
      }
      std::optional<HealthEvent> e =
          xid ? tracker_.OnXid(uuid, data.eventData, now) : tracker_.OnDoubleBitEcc(uuid, now);
      if (e) changes.push_back(std::move(*e));
    }
  }
  for (auto& e : changes) Emit(std::move(e));
  if (xid && !Options().ignored_xids.contains(data.eventData)) {
    for (const auto& uuid : targets) ApplyRecoveryAction(uuid, data.device, data.eventData);
  }
}

void HealthMonitor::ApplyRecoveryAction(const std::string& uuid, nvmlDevice_t device,
                                        unsigned long long xid) {
  nvmlDevice_t handle = device;
  if (registered_.count(handle) == 0 || registered_.at(handle) != uuid) {
    handle = nullptr;
    if (api_->DeviceGetHandleByUUID(uuid.c_str(), &handle) != NVML_SUCCESS) handle = nullptr;
  }
  std::optional<RecoveryAction> nvml_action;
  if (handle != nullptr) nvml_action = ReadRecoveryAction(*api_, handle);
  std::optional<HealthEvent> event;
  {
    MutexLock lock(&mu_);
    if (nvml_action.has_value()) {
      event = tracker_.OnRecoveryAction(uuid, *nvml_action, /*from_nvml=*/true, clock_.Now());
    } else if (xid != 0) {
      event = tracker_.OnRecoveryAction(uuid, XidDocumentedAction(xid), /*from_nvml=*/false,
                                        clock_.Now());
    }
  }
  Emit(std::move(event));
}

void HealthMonitor::ProbeIfDue(const HealthOptions& options) {
  const Clock::TimePoint now = clock_.Now();
  // Against the last probe, not a precomputed deadline, so that a probe
  // interval changed by SetOptions() applies to the probe already pending.
  if (!probe_now_ && now - last_probe_ < options.probe_interval) return;
  probe_now_ = false;
  last_probe_ = now;
  ProbeAll();
}

void HealthMonitor::ProbeAll() {
  for (const auto& uuid : uuids_) {
    ++probes_;
    bool was_lost = false;
    {
      MutexLock lock(&mu_);
      if (const DeviceHealth* d = tracker_.Get(uuid)) was_lost = d->lost;
    }
    nvmlDevice_t device = nullptr;
    nvmlReturn_t r = api_->DeviceGetHandleByUUID(uuid.c_str(), &device);
    std::string_view call = "nvmlDeviceGetHandleByUUID";
    if (r == NVML_SUCCESS) {
      nvmlMemory_t memory{};
      r = api_->DeviceGetMemoryInfo(device, &memory);
      call = "nvmlDeviceGetMemoryInfo";
    }
    bool nvml_action_pending = false;
    {
      MutexLock lock(&mu_);
      if (const DeviceHealth* d = tracker_.Get(uuid)) {
        nvml_action_pending = d->pending_action != RecoveryAction::kNone && d->action_from_nvml;
      }
    }
    if (r == NVML_SUCCESS && nvml_action_pending) {
      // A reset clears NVML's field; only then can the GPU recover.
      if (std::optional<RecoveryAction> a = ReadRecoveryAction(*api_, device)) {
        std::optional<HealthEvent> e;
        {
          MutexLock lock(&mu_);
          e = tracker_.OnRecoveryAction(uuid, *a, /*from_nvml=*/true, clock_.Now());
        }
        Emit(std::move(e));
      }
    }
    // A GPU NVML no longer enumerates has gone as surely as one it calls lost.
    if (r == NVML_ERROR_GPU_IS_LOST ||
        (r == NVML_ERROR_NOT_FOUND && call == "nvmlDeviceGetHandleByUUID")) {
      ++probe_failures_;
      MarkLost(uuid);
      continue;
    }
    const bool ok = r == NVML_SUCCESS;
    int& failures = probe_failure_runs_[uuid];
    if (!ok) {
      ++probe_failures_;
      if (failures++ == 0) {
        log::Warn("GPU probe failed; its health is unchanged until NVML answers normally",
                  {{"device", uuid}, {"call", call}, {"error", api_->ErrorString(r)}});
      }
    } else {
      failures = 0;
    }
    std::optional<HealthEvent> event;
    bool found_again = false;
    {
      MutexLock lock(&mu_);
      event = tracker_.OnProbe(uuid, ok, clock_.Now());
      const DeviceHealth* d = tracker_.Get(uuid);
      found_again = was_lost && d != nullptr && !d->lost;
    }
    // Its old handle and registration died with it: register it afresh.
    if (found_again) rebuild_ = true;
    Emit(std::move(event));
  }
}

}  // namespace gdp::health
