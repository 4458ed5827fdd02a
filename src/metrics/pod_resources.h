// Pod attribution: which containers hold which GPUs, from the kubelet's
// pod-resources API (v1 List on /var/lib/kubelet/pod-resources/kubelet.sock).
//
// PodResourcesLister is the seam (tests fake it); GrpcPodResourcesLister is the
// gRPC client over the kubelet's unix socket, one channel for its lifetime,
// each List bounded by a deadline. Attribute() is the pure mapping from the
// listed device IDs to GPUs of an Inventory: full GPU UUIDs, time-slicing
// replicas (`<UUID>::<n>`), MIG device UUIDs (attributed to the MIG device and
// to its parent GPU) and, for resources in the nvidia.com/ domain, GPU
// indices and `<index>:<gpu instance>` MIG IDs (deviceIDStrategy: index). A GPU held by several
// containers lists each of them once.
//
// Thread-safety: GrpcPodResourcesLister::List may be called from any thread
// (gRPC stubs are thread-safe); Attribute is pure.
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

namespace gdp::metrics {

inline constexpr char kDefaultPodResourcesSocket[] = "/var/lib/kubelet/pod-resources/kubelet.sock";

// One container's devices of one resource, as List reports them.
struct ContainerDevices {
  std::string pod_namespace;
  std::string pod;
  std::string container;
  std::string resource_name;
  std::vector<std::string> device_ids;
};

class PodResourcesLister {
 public:
  virtual ~PodResourcesLister() = default;
  virtual absl::StatusOr<std::vector<ContainerDevices>> List() = 0;
};

class GrpcPodResourcesLister final : public PodResourcesLister {
 public:
  // `socket_path` is a filesystem path (no unix:// prefix).
  GrpcPodResourcesLister(std::string socket_path, std::chrono::milliseconds timeout);
  ~GrpcPodResourcesLister() override;
  // Unavailable (naming the socket and what to check) when the kubelet does
  // not answer within the timeout.
  absl::StatusOr<std::vector<ContainerDevices>> List() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

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
