// Pod attribution: which containers hold which GPUs, from the kubelet's
// pod-resources API (v1 List on /var/lib/kubelet/pod-resources/kubelet.sock).
//
// The lister is src/podresources' (tests fake it). Attribute() is the pure mapping from the
// listed device IDs to GPUs of an Inventory: full GPU UUIDs, time-slicing
// replicas (`<UUID>::<n>`), MIG device UUIDs (attributed to the MIG device and
// to its parent GPU) and, for resources in the nvidia.com/ domain, GPU
// indices and `<index>:<gpu instance>` MIG IDs (deviceIDStrategy: index). A GPU held by several
// containers lists each of them once.
//
// Thread-safety: Attribute is pure.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "src/nvml/inventory.h"
#include "src/podresources/podresources.h"

namespace gdp::metrics {

inline constexpr const char* kDefaultPodResourcesSocket = podresources::kDefaultSocket;

// The kubelet's pod-resources client lives in src/podresources; the
// attribution below works on what it lists.
using ContainerDevices = podresources::Assignment;
using PodResourcesLister = podresources::PodResourcesLister;

struct PodRef {
  std::string pod_namespace;
  std::string pod;
  std::string container;
  auto operator<=>(const PodRef&) const = default;
};

// Device (GPU UUID or MIG UUID) -> the containers holding it (sorted, unique).
using Attribution = std::map<std::string, std::set<PodRef>>;

Attribution Attribute(const std::vector<ContainerDevices>& containers,
                      const nvml::Inventory& inventory);

}  // namespace gdp::metrics
