#include "src/daemon/daemon_metrics.h"

#include <malloc.h>

#include <algorithm>

namespace gdp::daemon {
namespace {

constexpr char kVersion[] = GDP_VERSION;  // the project version, from CMake

using metrics::HistogramValue;
using metrics::MetricFamily;
using metrics::MetricType;

HistogramValue ToHistogram(const plugin::LatencyBuckets& buckets,
                           const std::atomic<uint64_t>& calls,
                           const std::atomic<uint64_t>& latency_us) {
  HistogramValue h;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < plugin::kLatencyBucketsUs.size(); ++i) {
    cumulative += buckets[i].load();
    h.upper_bounds.push_back(static_cast<double>(plugin::kLatencyBucketsUs[i]) / 1e6);
    h.counts.push_back(cumulative);
  }
  // Read after the buckets: Record() bumps the buckets first, so count >= +Inf bucket sums.
  h.count = std::max(calls.load(), cumulative);
  h.sum = static_cast<double>(latency_us.load()) / 1e6;
  return h;
}

}  // namespace

PluginCollector::PluginCollector(plugin::PluginManager& plugins,
                                 const health::HealthMonitor* health, ReloadCounts reloads)
    : plugins_(plugins), health_(health), reloads_(std::move(reloads)) {}

absl::Status PluginCollector::Collect(std::vector<MetricFamily>* out) {
  MetricFamily build{"gdp_build_info",
                     "Always 1; the version label names the running gpu-device-plugin.",
                     MetricType::kGauge,
                     {}};
  build.Add({{"version", kVersion}}, 1);
  out->push_back(std::move(build));

  MetricFamily devices{
      "gdp_plugin_devices", "Devices advertised, by resource and health.", MetricType::kGauge, {}};
  MetricFamily registered{"gdp_plugin_resource_registered",
                          "1 when the resource is registered with the kubelet, else 0.",
                          MetricType::kGauge,
                          {}};
  MetricFamily streams{"gdp_plugin_list_and_watch_streams",
                       "ListAndWatch streams open now, by resource.",
                       MetricType::kGauge,
                       {}};
  MetricFamily alloc{"gdp_plugin_allocate_requests_total",
                     "Allocate calls, by resource.",
                     MetricType::kCounter,
                     {}};
  MetricFamily alloc_err{"gdp_plugin_allocate_errors_total",
                         "Allocate calls answered with an error, by resource.",
                         MetricType::kCounter,
                         {}};
  MetricFamily alloc_dur{"gdp_plugin_allocate_duration_seconds",
                         "Allocate latency, in seconds, by resource.",
                         MetricType::kHistogram,
                         {}};
  MetricFamily pref{"gdp_plugin_preferred_allocation_requests_total",
                    "GetPreferredAllocation calls, by resource.",
                    MetricType::kCounter,
                    {}};
  MetricFamily pref_err{"gdp_plugin_preferred_allocation_errors_total",
                        "GetPreferredAllocation calls answered with an error, by resource.",
                        MetricType::kCounter,
                        {}};
  MetricFamily pref_dur{"gdp_plugin_preferred_allocation_duration_seconds",
                        "GetPreferredAllocation latency, in seconds, by resource.",
                        MetricType::kHistogram,
                        {}};
  for (const plugin::PluginManager::ResourceInfo& r : plugins_.Resources()) {
    const metrics::Labels res = {{"resource", r.resource_name}};
    registered.Add(res, r.registered ? 1 : 0);
    if (r.server == nullptr) continue;
    double healthy = 0, unhealthy = 0;
    for (const plugin::Device& d : r.server->Devices()) (d.healthy ? healthy : unhealthy) += 1;
    devices.Add({{"resource", r.resource_name}, {"health", "healthy"}}, healthy);
    devices.Add({{"resource", r.resource_name}, {"health", "unhealthy"}}, unhealthy);
    const plugin::ServerStats& s = r.server->stats();
    streams.Add(res, static_cast<double>(s.open_streams.load()));
    alloc.Add(res, static_cast<double>(s.allocate_calls.load()));
    alloc_err.Add(res, static_cast<double>(s.allocate_errors.load()));
    alloc_dur.AddHistogram(
        res, ToHistogram(s.allocate_latency_buckets, s.allocate_calls, s.allocate_latency_us));
    pref.Add(res, static_cast<double>(s.preferred_allocation_calls.load()));
    pref_err.Add(res, static_cast<double>(s.preferred_allocation_errors.load()));
    pref_dur.AddHistogram(
        res, ToHistogram(s.preferred_allocation_latency_buckets, s.preferred_allocation_calls,
                         s.preferred_allocation_latency_us));
  }
  for (MetricFamily* f : {&devices, &registered, &streams, &alloc, &alloc_err, &alloc_dur, &pref,
                          &pref_err, &pref_dur}) {
    out->push_back(std::move(*f));
  }

  const plugin::PluginManager::Counters c = plugins_.counters();
  out->push_back(MetricFamily{
      "gdp_plugin_registrations_total",
      "Successful registrations with the kubelet.",
      MetricType::kCounter,
      {}}.Add({}, static_cast<double>(c.registrations)));
  out->push_back(MetricFamily{
      "gdp_plugin_registration_failures_total",
      "Failed registration attempts.",
      MetricType::kCounter,
      {}}.Add({}, static_cast<double>(c.registration_failures)));
  out->push_back(MetricFamily{
      "gdp_plugin_kubelet_restarts_total",
      "Kubelet restarts seen (kubelet.sock created again).",
      MetricType::kCounter,
      {}}.Add({}, static_cast<double>(c.kubelet_restarts)));
  if (health_ != nullptr) {
    const health::HealthStats hs = health_->Stats();
    out->push_back(MetricFamily{
        "gdp_plugin_health_transitions_total",
        "GPU health changes (healthy to unhealthy and back).",
        MetricType::kCounter,
        {}}.Add({}, static_cast<double>(hs.transitions)));
    out->push_back(MetricFamily{
        "gdp_plugin_health_event_wait_errors_total",
        "NVML event waits that failed other than by timeout.",
        MetricType::kCounter,
        {}}.Add({}, static_cast<double>(hs.wait_errors)));
  }
  // The malloc heap over all arenas: a leak grows in_use; fragmentation grows
  // free (memory the allocator holds but no object uses).
  const struct mallinfo2 heap = ::mallinfo2();
  out->push_back(MetricFamily{"gdp_process_heap_bytes",
                              "The daemon's malloc heap, by state: in_use by live allocations, "
                              "free held by the allocator for reuse.",
                              MetricType::kGauge,
                              {}}
                     .Add({{"state", "in_use"}}, static_cast<double>(heap.uordblks + heap.hblkhd))
                     .Add({{"state", "free"}}, static_cast<double>(heap.fordblks)));
  if (reloads_) {
    const auto [ok, failed] = reloads_();
    out->push_back(MetricFamily{"gdp_plugin_config_reloads_total",
                                "Configuration reloads, by result (ok|failed).",
                                MetricType::kCounter,
                                {}}
                       .Add({{"result", "ok"}}, static_cast<double>(ok))
                       .Add({{"result", "failed"}}, static_cast<double>(failed)));
  }
  return absl::OkStatus();
}

std::map<std::string, metrics::GpuHealthInfo> HealthFromMonitor(
    const health::HealthMonitor& monitor) {
  std::map<std::string, metrics::GpuHealthInfo> out;
  const health::HealthStats stats = monitor.Stats();
  for (const auto& [uuid, d] : monitor.Devices()) {
    metrics::GpuHealthInfo& h = out[uuid];
    h.healthy = d.healthy;
    h.reason = d.reason;
    if (auto it = stats.xids_by_gpu.find(uuid); it != stats.xids_by_gpu.end()) h.xids = it->second;
    if (auto it = stats.last_xid_by_gpu.find(uuid); it != stats.last_xid_by_gpu.end()) {
      h.last_xid = it->second;
    }
  }
  return out;
}

}  // namespace gdp::daemon
