// A narrow client for the kubelet's pod-resources API v1 (List): which
// namespace/pod/container holds which device of which extended resource.
//
// The daemon's /allocations endpoint, the doctor and the metrics' pod
// attribution read it through the PodResourcesLister interface, so their tests
// can substitute a fake; GrpcPodResourcesLister is the real client over the
// kubelet's unix socket (default /var/lib/kubelet/pod-resources/kubelet.sock).
//
// Ownership: a GrpcPodResourcesLister owns its gRPC channel. Thread-safety:
// List() may be called from any thread at once (gRPC stubs are thread-safe);
// the value types are plain data.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::podresources {

inline constexpr char kDefaultSocket[] = "/var/lib/kubelet/pod-resources/kubelet.sock";

// One container's devices of one resource, as List reports them.
struct Assignment {
  std::string pod_namespace;
  std::string pod;
  std::string container;
  std::string resource_name;            // e.g. "nvidia.com/gpu"
  std::vector<std::string> device_ids;  // as the plugin advertised them
  bool operator==(const Assignment&) const = default;
};

// Who holds a device.
struct Holder {
  std::string pod_namespace;
  std::string pod;
  std::string container;
  bool operator==(const Holder&) const = default;
};

class PodResourcesLister {
 public:
  virtual ~PodResourcesLister() = default;
  // Every container's devices, in the kubelet's order; containers without
  // devices are left out. Unavailable (naming the socket) when the kubelet does
  // not answer.
  virtual absl::StatusOr<std::vector<Assignment>> List() = 0;
};

class GrpcPodResourcesLister final : public PodResourcesLister {
 public:
  // Connects lazily; `timeout` bounds each List call.
  explicit GrpcPodResourcesLister(std::string socket_path = kDefaultSocket,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~GrpcPodResourcesLister() override;

  absl::StatusOr<std::vector<Assignment>> List() override;
  const std::string& socket_path() const { return socket_path_; }

 private:
  struct Impl;
  const std::string socket_path_;
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
};

// Holders by resource name, then by device ID. A device listed for two
// containers (an init container and its successor) keeps every holder, in
// List order.
using HolderIndex = std::map<std::string, std::map<std::string, std::vector<Holder>>>;
HolderIndex IndexByDevice(const std::vector<Assignment>& assignments);

}  // namespace gdp::podresources
