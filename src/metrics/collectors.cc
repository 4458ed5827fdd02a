#include "src/metrics/collectors.h"

#include <set>

namespace gdp::metrics {

PodAttributionCollector::PodAttributionCollector(PodResourcesLister& lister,
                                                 std::shared_ptr<const nvml::Inventory> inventory)
    : lister_(lister), inventory_(std::move(inventory)) {}

void PodAttributionCollector::SetInventory(std::shared_ptr<const nvml::Inventory> inventory) {
  MutexLock lock(&mu_);
  inventory_ = std::move(inventory);
}

std::shared_ptr<const nvml::Inventory> PodAttributionCollector::Inventory() const {
  MutexLock lock(&mu_);
  return inventory_;
}

absl::Status PodAttributionCollector::Collect(std::vector<MetricFamily>* out) {
  absl::StatusOr<std::vector<ContainerDevices>> listed = lister_.List();
  if (!listed.ok()) {
    attribution_.clear();
    return listed.status();
  }
  attribution_ = Attribute(*listed, *Inventory());
  std::set<PodRef> holders;
  for (const auto& [uuid, refs] : attribution_) holders.insert(refs.begin(), refs.end());
  MetricFamily f{"gdp_pod_resources_gpu_containers",
                 "Containers that hold at least one GPU of this node, per the kubelet's "
                 "pod-resources API.",
                 MetricType::kGauge,
                 {}};
  f.Add({}, static_cast<double>(holders.size()));
  out->push_back(std::move(f));
  return absl::OkStatus();
}

GpuCollector::GpuCollector(nvml::NvmlApi& api, std::shared_ptr<const nvml::Inventory> inventory,
                           Options options, const PodAttributionCollector* pods,
                           HealthSource health)
    : api_(api),
      inventory_(std::move(inventory)),
      options_(std::move(options)),
      pods_(pods),
      health_(std::move(health)) {}

void GpuCollector::SetInventory(std::shared_ptr<const nvml::Inventory> inventory) {
  MutexLock lock(&mu_);
  inventory_ = std::move(inventory);
}

absl::Status GpuCollector::Collect(std::vector<MetricFamily>* out) {
  std::shared_ptr<const nvml::Inventory> inventory;
  {
    MutexLock lock(&mu_);
    inventory = inventory_;
  }
  GpuMetricsInput in;
  in.inventory = inventory.get();
  in.readings = ReadGpus(api_, *inventory);
  if (health_) in.health = health_();
  if (pods_ != nullptr) in.attribution = pods_->attribution();
  in.node = options_.node;
  in.dcgm_compatibility = options_.dcgm_compatibility;
  AppendGpuFamilies(in, out);
  return absl::OkStatus();
}

}  // namespace gdp::metrics
