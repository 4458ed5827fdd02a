#include "tests/kubelet_stub/pod_resources_stub.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "podresources/v1/api.grpc.pb.h"

namespace gdp::kubelet_stub {

class PodResourcesStub::Service final : public v1::PodResourcesLister::Service {
 public:
  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* resp) override {
    ++calls_;
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::pair<std::string, std::string>, v1::PodResources*> pods;
    for (const StubContainer& c : containers_) {
      v1::PodResources*& pod = pods[{c.pod_namespace, c.pod}];
      if (pod == nullptr) {
        pod = resp->add_pod_resources();
        pod->set_namespace_(c.pod_namespace);
        pod->set_name(c.pod);
      }
      v1::ContainerResources* cr = nullptr;
      for (auto& existing : *pod->mutable_containers()) {
        if (existing.name() == c.container) cr = &existing;
      }
      if (cr == nullptr) {
        cr = pod->add_containers();
        cr->set_name(c.container);
      }
      v1::ContainerDevices* d = cr->add_devices();
      d->set_resource_name(c.resource_name);
      for (const std::string& id : c.device_ids) d->add_device_ids(id);
    }
    return grpc::Status::OK;
  }

  void Set(std::vector<StubContainer> containers) {
    std::lock_guard<std::mutex> lock(mu_);
    containers_ = std::move(containers);
  }
  int calls() const { return calls_.load(); }

 private:
  std::mutex mu_;
  std::vector<StubContainer> containers_;  // guarded by mu_
  std::atomic<int> calls_{0};
};

PodResourcesStub::PodResourcesStub(std::string socket_path)
    : socket_path_(std::move(socket_path)), service_(std::make_unique<Service>()) {}

PodResourcesStub::~PodResourcesStub() { Stop(); }

absl::Status PodResourcesStub::Start() {
  if (server_ != nullptr)
    return absl::FailedPreconditionError("pod-resources stub already running");
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError("cannot remove " + socket_path_ + ": " + std::strerror(errno));
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket_path_, grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    return absl::UnavailableError("pod-resources stub cannot listen on unix://" + socket_path_);
  }
  return absl::OkStatus();
}

void PodResourcesStub::Stop() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  server_.reset();
  ::unlink(socket_path_.c_str());
}

void PodResourcesStub::SetContainers(std::vector<StubContainer> containers) {
  service_->Set(std::move(containers));
}

int PodResourcesStub::ListCalls() const { return service_->calls(); }

}  // namespace gdp::kubelet_stub
