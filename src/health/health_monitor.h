// HealthMonitor: watches the GPUs of an Inventory through NVML and reports
// every change of their health to a HealthListener.
//
// It owns one thread (std::jthread), started by Start() and joined by Stop()
// or the destructor. On that thread it
//   - creates an NVML event set and registers every GPU for
//     nvmlEventTypeXidCriticalError, plus nvmlEventTypeDoubleBitEccError and
//     nvmlEventMigConfigChange where nvmlDeviceGetSupportedEventTypes says the
//     GPU has them (the latter is passed on to the listener, not judged). A GPU that supports
//     neither, or whose registration fails, is logged and only probed; one whose
//     registration answers NVML_ERROR_GPU_IS_LOST (or that NVML no longer
//     finds by UUID) is marked lost;
//   - waits on the set (nvmlEventSetWait, HealthOptions::wait_timeout at a
//     time, so Stop() takes at most about that long) and feeds each event to a
//     HealthTracker (health_tracker.h holds the rules: ignored XIDs, quiet
//     period, recovery);
//   - after a critical XID, and on nvmlEventTypeGpuRecoveryAction, reads
//     NVML's recovery-action field (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION): a
//     GPU that needs a reset or a reboot stays Unhealthy until the field says
//     none (probes re-read it); a driver without the field gets the XID's
//     documented action instead (health_tracker.h says how that clears);
//   - every probe_interval probes every GPU (nvmlDeviceGetHandleByUUID, then
//     nvmlDeviceGetMemoryInfo): NVML_ERROR_GPU_IS_LOST, or a UUID NVML no
//     longer finds, marks it lost; a normal answer lets it recover. A lost GPU
//     that comes back gets a fresh event set, since its old registration is
//     gone with its old handle.
//
// Error policy. A wait that times out is normal. Any other wait error is
// counted, logged (the first of a run, then at most once per
// error_log_interval), and followed by a backoff; after
// recreate_event_set_after consecutive errors the set is freed and created
// again. Wait errors never change a device's health: only the probes decide
// that (NVML_ERROR_GPU_IS_LOST from the wait triggers an immediate probe).
// If NVML has no event support at all (nvmlEventSetCreate answers
// NVML_ERROR_NOT_SUPPORTED) the monitor only probes.
//
// Events without a device. An XID or ECC event whose device handle is NULL,
// or a handle the monitor did not register, cannot be attributed: NVML uses
// it for errors that concern the whole system. It is applied to every GPU,
// under the same rules as any other (ignored XIDs stay ignored, and the GPUs
// recover after the quiet period).
//
// MIG: events are attributed to the parent GPU (the whole GPU is marked).
//
// Reconfiguration. SetOptions() replaces the options while the monitor runs
// (a config reload) and keeps every GPU's state (HealthTracker::SetOptions
// says how: an Unhealthy GPU stays so and recovers under the new quiet
// period; a newly ignored XID no longer marks a GPU). The thread picks up a
// new probe interval at once (the next probe is due one new interval after
// the last one) and every other option at its next loop, within about
// wait_timeout. Switching `enabled` off stops the thread, frees the event set
// and reports every Unhealthy GPU Healthy (nobody would clear it otherwise);
// switching it on starts the thread again.
//
// Thread-safety: Start(), Stop(), SetOptions() and the destructor are
// serialised by a mutex (meant for one owning thread, the daemon's);
// Devices() and Stats() from any thread. The listener is called one call at a
// time: on the monitor's thread, except for the Healthy events of a
// SetOptions() that disables checking, which come on the caller's thread
// after the monitor's thread has ended. It must not call Start(), Stop() or
// SetOptions().
#pragma once

#include <nvml.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/common/clock.h"
#include "src/common/mutex.h"
#include "src/health/health_options.h"
#include "src/health/health_tracker.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"

namespace gdp::health {

// Receives health changes. Owned by the user; must outlive the monitor's
// thread (until Stop() returns). Called on the monitor's thread.
class HealthListener {
 public:
  virtual ~HealthListener() = default;
  virtual void OnHealthChanged(const HealthEvent& event) = 0;
  // NVML said a GPU's MIG configuration changed (nvmlEventMigConfigChange):
  // its MIG devices are no longer what the inventory says. Not a health
  // change; the owner re-discovers.
  virtual void OnMigConfigChanged(const std::string& /*uuid*/) {}
};

// A snapshot of the monitor's counters, for metrics. All monotonic.
struct HealthStats {
  uint64_t events = 0;               // events nvmlEventSetWait delivered
  uint64_t ecc_events = 0;           // double-bit ECC events among them
  uint64_t unattributed_events = 0;  // events with a NULL or unknown device
  uint64_t wait_errors = 0;          // waits failed other than by timeout, and failed set creations
  uint64_t event_set_recreations = 0;           // sets freed and created again after errors
  uint64_t registration_failures = 0;           // GPUs whose event registration failed
  uint64_t probes = 0;                          // device probes
  uint64_t probe_failures = 0;                  // probes NVML did not answer normally
  uint64_t transitions = 0;                     // HealthEvents delivered to the listener
  std::map<unsigned long long, uint64_t> xids;  // XID events by code, ignored ones included
  // Per GPU UUID (an event without a device counts for every GPU): XID
  // events by code, and the code of the latest one.
  std::map<std::string, std::map<unsigned long long, uint64_t>> xids_by_gpu;
  std::map<std::string, unsigned long long> last_xid_by_gpu;
};

class HealthMonitor {
 public:
  // Watches the GPUs of `inventory` (full GPUs; MIG devices follow their
  // parent). `api` (NVML already initialised), `listener` and `clock` must
  // outlive the monitor.
  HealthMonitor(nvml::NvmlApi& api, const nvml::Inventory& inventory, HealthOptions options,
                HealthListener& listener, Clock& clock = RealClock::Get());
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Starts the thread; setup failures are handled (and retried) there, so
  // this only fails when the monitor is already started. With
  // options.enabled false it logs that health checking is off and starts no
  // thread until SetOptions() enables it.
  absl::Status Start();
  // Stops and joins the thread, freeing the event set. Idempotent.
  void Stop();
  // Asks the thread to stop without waiting for it (its NVML wait may take
  // up to wait_timeout to return); Stop() then joins. Lets the owner stop
  // several NVML waiters at once.
  void RequestStop();

  // Replaces the options, keeping every GPU's state (see "Reconfiguration"
  // above). Before Start() or after Stop() it only stores them (a disable
  // still reports Unhealthy GPUs Healthy). Returns once the change is in
  // effect for `enabled`: the thread has ended or has been started.
  void SetOptions(HealthOptions options);
  HealthOptions Options() const;

  // Watches the GPUs of `inventory` from now on: a GPU still present keeps
  // its state (an Unhealthy one stays so, with its reason and quiet period),
  // a new one starts Healthy, a gone one is forgotten. Only while stopped
  // (the daemon re-initialises NVML in between, which invalidates the event
  // set's handles): FailedPrecondition otherwise.
  // `api` replaces the NVML the monitor was given (the driver came back and
  // its library was loaded afresh); it must outlive the monitor's thread.
  absl::Status SetInventory(nvml::NvmlApi& api, const nvml::Inventory& inventory);

  // The current state of every GPU, by UUID.
  std::map<std::string, DeviceHealth> Devices() const;
  HealthStats Stats() const;

 private:
  enum class SetState { kNone, kReady, kUnsupported };

  // Both with control_mu_ held.
  void StartThread();
  void StopThread();

  void Run(const std::stop_token& stop);
  // Creates the event set and registers every GPU; returns the new state.
  SetState SetUp();
  void TearDown();
  void HandleEvent(const nvmlEventData_t& data);
  // Reads NVML's recovery-action field for the GPU (its event handle
  // `device`, else looked up) and applies it; where the driver lacks the
  // field, the documented action of `xid` (0: none) instead.
  void ApplyRecoveryAction(const std::string& uuid, nvmlDevice_t device, unsigned long long xid);
  void ProbeAll();
  void ProbeIfDue(const HealthOptions& options);
  void OnWaitError(nvmlReturn_t r, int consecutive, const HealthOptions& options);
  // Sleeps for `d`, until a stop is requested, or until SetOptions() has
  // changed the options since the thread's last snapshot of them.
  void SleepFor(const std::stop_token& stop, std::chrono::milliseconds d);

  // Each applies one input to the tracker and delivers the transition, if any.
  void Emit(std::optional<HealthEvent> event);
  void MarkLost(const std::string& uuid);

  nvml::NvmlApi* api_;  // changed by SetInventory() only while no thread runs
  HealthListener& listener_;
  Clock& clock_;
  // The GPUs watched; changed by SetInventory() only while no thread runs.
  std::vector<std::string> uuids_;

  // Serialises Start(), Stop() and SetOptions(); never taken by the monitor's
  // thread (they join it while holding this).
  std::mutex control_mu_;
  bool started_ = false;  // Start() called and Stop() not since; guarded by control_mu_

  mutable Mutex mu_;
  HealthTracker tracker_ ABSL_GUARDED_BY(mu_);
  HealthOptions options_ ABSL_GUARDED_BY(mu_);
  std::map<unsigned long long, uint64_t> xids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<unsigned long long, uint64_t>> xids_by_gpu_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, unsigned long long> last_xid_by_gpu_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> ecc_events_{0};
  std::atomic<uint64_t> unattributed_events_{0};
  std::atomic<uint64_t> wait_errors_{0};
  std::atomic<uint64_t> event_set_recreations_{0};
  std::atomic<uint64_t> registration_failures_{0};
  std::atomic<uint64_t> probes_{0};
  std::atomic<uint64_t> probe_failures_{0};
  std::atomic<uint64_t> transitions_{0};

  // Monitor-thread state.
  nvmlEventSet_t set_ = nullptr;
  std::map<nvmlDevice_t, std::string> registered_;  // handle -> UUID
  std::map<std::string, int> probe_failure_runs_;   // UUID -> consecutive failed probes
  bool rebuild_ = false;
  bool probe_now_ = false;         // probe at the next chance, whatever the interval
  Clock::TimePoint last_probe_{};  // set before the thread starts
  Clock::TimePoint last_error_log_{};

  std::mutex sleep_mu_;
  std::condition_variable_any sleep_cv_;
  // Both guarded by sleep_mu_: bumped by SetOptions(); the value the monitor's
  // thread read with its current options snapshot.
  uint64_t options_generation_ = 0;
  uint64_t seen_generation_ = 0;
  std::jthread thread_;  // last: joined before the members above are destroyed
};

}  // namespace gdp::health
