// The plugin's own metrics (the "plugin" collector of the daemon's Sampler):
// devices by resource and health, registration state, Allocate and
// GetPreferredAllocation counts and latency histograms, registrations and
// kubelet restarts seen, health transitions, config reloads and build info.
// Also the health source the GPU collector reads (HealthFromMonitor).
//
// Ownership: PluginCollector references the PluginManager and, when given,
// the HealthMonitor and the reload counters; all must outlive it (the daemon
// stops the sampler before any of them).
// Thread-safety: Collect runs on the sampler's thread; everything it reads is
// thread-safe (PluginManager::Resources, HealthMonitor::Stats, atomics).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

#include "src/health/health_monitor.h"
#include "src/metrics/gpu_collector.h"
#include "src/metrics/sampler.h"
#include "src/plugin/plugin_manager.h"

namespace gdp::daemon {

class PluginCollector final : public metrics::Collector {
 public:
  // reloads() answers {succeeded, failed} so far; may be empty (no config file).
  using ReloadCounts = std::function<std::pair<uint64_t, uint64_t>()>;

  PluginCollector(plugin::PluginManager& plugins, const health::HealthMonitor* health,
                  ReloadCounts reloads);
  std::string Name() const override { return "plugin"; }
  absl::Status Collect(std::vector<metrics::MetricFamily>* out) override;

 private:
  plugin::PluginManager& plugins_;
  const health::HealthMonitor* const health_;
  const ReloadCounts reloads_;
};

// The GPU collector's view of the monitor: health, reason and XIDs per GPU.
std::map<std::string, metrics::GpuHealthInfo> HealthFromMonitor(
    const health::HealthMonitor& monitor);

}  // namespace gdp::daemon
