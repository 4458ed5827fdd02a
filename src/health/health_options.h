// HealthOptions: every knob of the health component (HealthTracker and
// HealthMonitor), with its default. A plain value; copy it freely.
//
// FromConfig() maps the user-facing config::HealthConfig onto it. It is
// header-only and reads only the struct, so using it does not link the config
// parser.
#pragma once

#include <chrono>
#include <set>

#include "src/config/config.h"

namespace gdp::health {

struct HealthOptions {
  // false: the monitor starts no thread and every device stays Healthy.
  bool enabled = true;

  // XIDs that are application faults, not device faults: logged at info and
  // otherwise ignored. Default: NVIDIA's device plugin's list.
  std::set<unsigned long long> ignored_xids = {13, 31, 43, 45, 68, 109};

  // How long a device made Unhealthy by a critical XID or a double-bit ECC
  // error must stay quiet (no further critical event, and NVML answering
  // normally for it) before it is Healthy again. Zero: it never recovers
  // without a restart of the plugin.
  std::chrono::milliseconds quiet_period{std::chrono::minutes(5)};

  // How often every device is probed (nvmlDeviceGetHandleByUUID +
  // nvmlDeviceGetMemoryInfo) to notice lost devices and recoveries.
  std::chrono::milliseconds probe_interval{5000};

  // The timeout of one nvmlEventSetWait call. Stop() returns within about
  // this long, because NVML's wait cannot be interrupted. Each timeout wakes
  // the thread once: 1 s keeps an idle node's cost low (NVIDIA's plugin
  // waits 5 s) and a shutdown or reload prompt.
  std::chrono::milliseconds wait_timeout{1000};

  // Backoff after an event-wait error (other than a timeout), doubling from
  // initial up to max, reset by the next successful wait.
  std::chrono::milliseconds wait_error_backoff_initial{100};
  std::chrono::milliseconds wait_error_backoff_max{std::chrono::seconds(10)};

  // After this many consecutive event-wait errors the event set is freed and
  // created again, with every device registered afresh.
  int recreate_event_set_after = 5;

  // Repeated event-wait errors are logged at most once per this interval
  // (the first of a run always is); the counters see all of them.
  std::chrono::milliseconds error_log_interval{std::chrono::minutes(1)};
};

inline HealthOptions FromConfig(const config::HealthConfig& config) {
  HealthOptions options;
  options.enabled = config.enabled;
  options.ignored_xids = {config.ignored_xids.begin(), config.ignored_xids.end()};
  options.quiet_period = config.recovery_quiet_period;
  options.probe_interval = config.probe_interval;
  return options;
}

}  // namespace gdp::health
