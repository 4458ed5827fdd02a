#include "src/podresources/podresources.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cerrno>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "podresources/v1/api.grpc.pb.h"
#include "src/common/filesystem.h"

namespace gdp::podresources {

struct GrpcPodResourcesLister::Impl {
  std::mutex mu;                                       // List() may be called from several threads
  std::shared_ptr<v1::PodResourcesLister::Stub> stub;  // holds its channel
};

GrpcPodResourcesLister::GrpcPodResourcesLister(std::string socket_path,
                                               std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout), impl_(std::make_unique<Impl>()) {}

GrpcPodResourcesLister::~GrpcPodResourcesLister() = default;

absl::StatusOr<std::vector<Assignment>> GrpcPodResourcesLister::List() {
  // No socket, no channel: a channel left failing keeps reconnecting in the
  // background (gRPC's backoff timers wake the process several times a second).
  std::shared_ptr<v1::PodResourcesLister::Stub> stub;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    struct stat st {};
    if (::stat(socket_path_.c_str(), &st) != 0) {
      const int err = errno;
      impl_->stub.reset();
      return absl::UnavailableError(
          absl::StrCat("pod-resources List on ", socket_path_, " failed: ", ErrnoString(err),
                       "; is the kubelet running and is its pod-resources directory mounted?"));
    }
    if (impl_->stub == nullptr) {
      impl_->stub = v1::PodResourcesLister::NewStub(
          grpc::CreateChannel("unix://" + socket_path_, grpc::InsecureChannelCredentials()));
    }
    stub = impl_->stub;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::ListPodResourcesRequest req;
  v1::ListPodResourcesResponse resp;
  const grpc::Status status = stub->List(&ctx, req, &resp);
  if (!status.ok()) {
    // Dropped for the same reason; the next call dials afresh.
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stub == stub) impl_->stub.reset();
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
