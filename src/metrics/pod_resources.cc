#include "src/metrics/pod_resources.h"

#include <grpcpp/grpcpp.h>

#include <cctype>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "podresources/v1/api.grpc.pb.h"

namespace gdp::metrics {

struct GrpcPodResourcesLister::Impl {
  std::string socket_path;
  std::chrono::milliseconds timeout;
  std::unique_ptr<v1::PodResourcesLister::Stub> stub;
};

GrpcPodResourcesLister::GrpcPodResourcesLister(std::string socket_path,
                                               std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->socket_path = std::move(socket_path);
  impl_->timeout = timeout;
  impl_->stub = v1::PodResourcesLister::NewStub(
      grpc::CreateChannel("unix://" + impl_->socket_path, grpc::InsecureChannelCredentials()));
}

GrpcPodResourcesLister::~GrpcPodResourcesLister() = default;

absl::StatusOr<std::vector<ContainerDevices>> GrpcPodResourcesLister::List() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + impl_->timeout);
  v1::ListPodResourcesRequest req;
  v1::ListPodResourcesResponse resp;
  const grpc::Status status = impl_->stub->List(&ctx, req, &resp);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("pod-resources List on ", impl_->socket_path,
                     " failed: ", status.error_message(), " (gRPC code ", status.error_code(),
                     "); is the kubelet running and the pod-resources directory mounted?"));
  }
  std::vector<ContainerDevices> out;
  for (const auto& pod : resp.pod_resources()) {
    for (const auto& c : pod.containers()) {
      for (const auto& d : c.devices()) {
        ContainerDevices cd;
        cd.pod_namespace = pod.namespace_();
        cd.pod = pod.name();
        cd.container = c.name();
        cd.resource_name = d.resource_name();
        cd.device_ids.assign(d.device_ids().begin(), d.device_ids().end());
        out.push_back(std::move(cd));
      }
    }
  }
  return out;
}

namespace {

// "<UUID>::<n>" (a time-slicing or MPS replica) -> "<UUID>".
std::string StripReplica(const std::string& id) {
  const auto pos = id.find("::");
  return pos == std::string::npos ? id : id.substr(0, pos);
}

}  // namespace

Attribution Attribute(const std::vector<ContainerDevices>& containers,
                      const nvml::Inventory& inventory) {
  // Every ID a device may be listed under -> the devices (GPU and, for MIG,
  // the MIG device too) it stands for.
  std::map<std::string, std::vector<std::string>> by_uuid;
  for (const nvml::Gpu& g : inventory.gpus) {
    by_uuid[g.uuid].push_back(g.uuid);
    for (const nvml::MigDevice& m : g.mig_devices) {
      by_uuid[m.uuid] = {m.uuid, g.uuid};
    }
  }
  Attribution out;
  for (const ContainerDevices& c : containers) {
    const PodRef ref{c.pod_namespace, c.pod, c.container};
    const bool nvidia = absl::StartsWith(c.resource_name, "nvidia.com/");
    for (const std::string& raw : c.device_ids) {
      const std::string id = StripReplica(raw);
      if (auto it = by_uuid.find(id); it != by_uuid.end()) {
        for (const std::string& dev : it->second) out[dev].insert(ref);
        continue;
      }
      if (!nvidia) continue;
      // deviceIDStrategy index: "<gpu index>" or, for MIG, "<gpu index>:<gpu instance id>".
      const auto colon = id.find(':');
      unsigned index = 0, gi = 0;
      const bool is_mig = colon != std::string::npos;
      if (!absl::SimpleAtoi(id.substr(0, colon), &index)) continue;
      if (is_mig && !absl::SimpleAtoi(id.substr(colon + 1), &gi)) continue;
      for (const nvml::Gpu& g : inventory.gpus) {
        if (g.index != index) continue;
        out[g.uuid].insert(ref);
        if (!is_mig) continue;
        for (const nvml::MigDevice& m : g.mig_devices) {
          if (m.gpu_instance_id == gi) out[m.uuid].insert(ref);
        }
      }
    }
  }
  return out;
}

}  // namespace gdp::metrics
