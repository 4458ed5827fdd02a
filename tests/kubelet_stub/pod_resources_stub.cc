#include "tests/kubelet_stub/pod_resources_stub.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "podresources/v1/api.grpc.pb.h"

namespace gdp::kubelet_stub {

class PodResourcesStub::Service final : public v1::PodResourcesLister::CallbackService {
 public:
  explicit Service(PodResourcesStub* owner) : owner_(owner) {}
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const v1::ListPodResourcesRequest*,
                                 v1::ListPodResourcesResponse* resp) override {
    owner_->list_count_.fetch_add(1);
    auto* reactor = ctx->DefaultReactor();
    std::lock_guard lock(owner_->mu_);
    if (owner_->error_code_ != 0) {
      reactor->Finish(
          grpc::Status(static_cast<grpc::StatusCode>(owner_->error_code_), owner_->error_message_));
      return reactor;
    }
    v1::PodResources* pod = nullptr;
    v1::ContainerResources* container = nullptr;
    for (const podresources::Assignment& a : owner_->assignments_) {
      if (pod == nullptr || pod->namespace_() != a.pod_namespace || pod->name() != a.pod) {
        pod = resp->add_pod_resources();
        pod->set_namespace_(a.pod_namespace);
        pod->set_name(a.pod);
        container = nullptr;
      }
      if (container == nullptr || container->name() != a.container) {
        container = pod->add_containers();
        container->set_name(a.container);
      }
      v1::ContainerDevices* d = container->add_devices();
      d->set_resource_name(a.resource_name);
      for (const std::string& id : a.device_ids) d->add_device_ids(id);
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  PodResourcesStub* owner_;
};

PodResourcesStub::PodResourcesStub(std::string socket_path)
    : socket_path_(std::move(socket_path)) {}

PodResourcesStub::~PodResourcesStub() { Stop(); }

absl::Status PodResourcesStub::Start() {
  if (server_ != nullptr) return absl::FailedPreconditionError("pod-resources stub running");
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError("cannot remove " + socket_path_ + ": " + std::strerror(errno));
  }
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket_path_, grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    service_.reset();
    return absl::UnavailableError("pod-resources stub cannot listen on unix://" + socket_path_);
  }
  return absl::OkStatus();
}

void PodResourcesStub::Stop() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  server_.reset();
  service_.reset();
  ::unlink(socket_path_.c_str());
}

void PodResourcesStub::SetAssignments(std::vector<podresources::Assignment> assignments) {
  std::lock_guard lock(mu_);
  assignments_ = std::move(assignments);
}

void PodResourcesStub::SetListError(int grpc_code, std::string message) {
  std::lock_guard lock(mu_);
  error_code_ = grpc_code;
  error_message_ = std::move(message);
}

absl::StatusOr<std::vector<podresources::Assignment>> ParseAssignments(const std::string& text) {
  std::vector<podresources::Assignment> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    std::vector<std::string> who =
        fields.empty() ? std::vector<std::string>{} : absl::StrSplit(fields[0], '/');
    if (fields.size() != 3 || who.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no,
                       ": want NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...], got '", line, "'"));
    }
    out.push_back(podresources::Assignment{who[0], who[1], who[2], fields[1],
                                           absl::StrSplit(fields[2], ',', absl::SkipEmpty())});
  }
  return out;
}

}  // namespace gdp::kubelet_stub
