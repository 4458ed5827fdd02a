#include "src/podresources/podresources.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "podresources/v1/api.grpc.pb.h"

namespace gdp::podresources {

struct GrpcPodResourcesLister::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::PodResourcesLister::Stub> stub;
};

GrpcPodResourcesLister::GrpcPodResourcesLister(std::string socket_path,
                                               std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  impl_->channel =
      grpc::CreateChannel("unix://" + socket_path_, grpc::InsecureChannelCredentials());
  impl_->stub = v1::PodResourcesLister::NewStub(impl_->channel);
}

GrpcPodResourcesLister::~GrpcPodResourcesLister() = default;

absl::StatusOr<std::vector<Assignment>> GrpcPodResourcesLister::List() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::ListPodResourcesRequest req;
  v1::ListPodResourcesResponse resp;
  const grpc::Status status = impl_->stub->List(&ctx, req, &resp);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("pod-resources List on ", socket_path_, " failed: ", status.error_message(),
                     " (gRPC code ", static_cast<int>(status.error_code()),
                     "); is the kubelet running and is its pod-resources directory mounted?"));
  }
  std::vector<Assignment> out;
  for (const auto& pod : resp.pod_resources()) {
    for (const auto& c : pod.containers()) {
      for (const auto& d : c.devices()) {
        out.push_back(Assignment{pod.namespace_(),
                                 pod.name(),
                                 c.name(),
                                 d.resource_name(),
                                 {d.device_ids().begin(), d.device_ids().end()}});
      }
    }
  }
  return out;
}

HolderIndex IndexByDevice(const std::vector<Assignment>& assignments) {
  HolderIndex index;
  for (const Assignment& a : assignments) {
    for (const std::string& id : a.device_ids) {
      index[a.resource_name][id].push_back(Holder{a.pod_namespace, a.pod, a.container});
    }
  }
  return index;
}

}  // namespace gdp::podresources
