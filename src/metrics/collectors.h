// The Collectors the daemon's Sampler runs (sampler.h), in this order:
//   PodAttributionCollector ("podresources")  asks the kubelet which
//     containers hold which GPUs and keeps the answer for the GPU collector;
//   GpuCollector ("gpu")  reads NVML (gpu_collector.h) and renders the GPU
//     families with the health and the attribution.
// The plugin's own metrics come from a collector in src/daemon, which knows
// the plugin manager and the health monitor.
//
// Ownership: collectors keep references to what they are given (the NVML api,
// the lister, the other collector); those must outlive them.
// Thread-safety: Collect() and attribution() run on the sampler's thread only;
// SetInventory() may be called from any thread (the node changed: the next
// sample reads the new inventory).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "src/common/mutex.h"
#include "src/metrics/gpu_collector.h"
#include "src/metrics/pod_resources.h"
#include "src/metrics/sampler.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"

namespace gdp::metrics {

class PodAttributionCollector final : public Collector {
 public:
  // `lister` may be null: attribution is switched off (the collector is then
  // not given to the sampler at all by the daemon).
  PodAttributionCollector(PodResourcesLister& lister,
                          std::shared_ptr<const nvml::Inventory> inventory);
  std::string Name() const override { return "podresources"; }
  // On failure the attribution is cleared: stale pod labels would be wrong.
  absl::Status Collect(std::vector<MetricFamily>* out) override;
  const Attribution& attribution() const { return attribution_; }
  void SetInventory(std::shared_ptr<const nvml::Inventory> inventory);

 private:
  std::shared_ptr<const nvml::Inventory> Inventory() const;

  PodResourcesLister& lister_;
  mutable Mutex mu_;
  std::shared_ptr<const nvml::Inventory> inventory_ ABSL_GUARDED_BY(mu_);
  Attribution attribution_;
};

class GpuCollector final : public Collector {
 public:
  struct Options {
    std::string node;
    bool dcgm_compatibility = false;
  };
  using HealthSource = std::function<std::map<std::string, GpuHealthInfo>()>;

  // `pods` and `health` may be null/empty (no attribution, no health metrics).
  GpuCollector(nvml::NvmlApi& api, std::shared_ptr<const nvml::Inventory> inventory,
               Options options, const PodAttributionCollector* pods, HealthSource health);
  std::string Name() const override { return "gpu"; }
  absl::Status Collect(std::vector<MetricFamily>* out) override;
  void SetInventory(std::shared_ptr<const nvml::Inventory> inventory);

 private:
  nvml::NvmlApi& api_;
  mutable Mutex mu_;
  std::shared_ptr<const nvml::Inventory> inventory_ ABSL_GUARDED_BY(mu_);
  const Options options_;
  const PodAttributionCollector* const pods_;
  const HealthSource health_;
};

}  // namespace gdp::metrics
