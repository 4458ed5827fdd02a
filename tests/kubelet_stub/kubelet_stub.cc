#include "tests/kubelet_stub/kubelet_stub.h"

#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace gdp::kubelet_stub {

class KubeletStub::Service final : public v1beta1::Registration::CallbackService {
 public:
  explicit Service(KubeletStub* owner) : owner_(owner) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1beta1::RegisterRequest* req,
                                     v1beta1::Empty*) override {
    grpc::Status status = owner_->response();
    if (status.ok()) owner_->Record(*req);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

 private:
  KubeletStub* owner_;
};

KubeletStub::KubeletStub(std::string dir, std::string socket_name)
    : dir_(std::move(dir)), socket_name_(std::move(socket_name)) {}

KubeletStub::~KubeletStub() { Stop(); }

absl::Status KubeletStub::Start() {
  if (server_ != nullptr) return absl::FailedPreconditionError("kubelet stub already running");
  const std::string path = socket_path();
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError("cannot remove " + path + ": " + std::strerror(errno));
  }
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    service_.reset();
    return absl::UnavailableError("kubelet stub cannot listen on unix://" + path);
  }
  return absl::OkStatus();
}

void KubeletStub::Stop(StopMode mode) {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
    service_.reset();
    ::unlink(socket_path().c_str());
  }
  if (mode == StopMode::kRemoveAllSockets) {
    // What a (re)starting kubelet does to the plugin directory.
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return;
    std::vector<std::string> sockets;
    while (dirent* ent = ::readdir(d)) {
      const std::string path = dir_ + "/" + ent->d_name;
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) sockets.push_back(path);
    }
    ::closedir(d);
    for (const std::string& p : sockets) ::unlink(p.c_str());
  }
}

void KubeletStub::SetRegisterResponse(grpc::Status status) {
  std::lock_guard lock(mu_);
  register_response_ = std::move(status);
}

grpc::Status KubeletStub::response() const {
  std::lock_guard lock(mu_);
  return register_response_;
}

void KubeletStub::Record(const v1beta1::RegisterRequest& req) {
  {
    std::lock_guard lock(mu_);
    requests_.push_back(req);
  }
  cv_.notify_all();
}

std::vector<v1beta1::RegisterRequest> KubeletStub::Registrations() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t KubeletStub::RegistrationCount(const std::string& resource) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& r : requests_) n += r.resource_name() == resource ? 1 : 0;
  return n;
}

bool KubeletStub::WaitForRegistration(const std::string& resource, Deadline deadline,
                                      size_t count) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] {
    size_t n = 0;
    for (const auto& r : requests_) n += r.resource_name() == resource ? 1 : 0;
    return n >= count;
  });
}

bool KubeletStub::WaitForTotal(size_t count, Deadline deadline) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return requests_.size() >= count; });
}

v1beta1::RegisterRequest KubeletStub::LastRegistration(const std::string& resource) const {
  std::lock_guard lock(mu_);
  for (auto it = requests_.rbegin(); it != requests_.rend(); ++it) {
    if (it->resource_name() == resource) return *it;
  }
  return {};
}

WatchStream::WatchStream(v1beta1::DevicePlugin::Stub* stub) {
  reader_ = stub->ListAndWatch(&ctx_, v1beta1::Empty());
  thread_ = std::thread([this] { Read(); });
}

WatchStream::~WatchStream() {
  ctx_.TryCancel();
  thread_.join();
}

void WatchStream::Read() {
  v1beta1::ListAndWatchResponse resp;
  while (reader_->Read(&resp)) {
    {
      std::lock_guard lock(mu_);
      updates_.push_back(resp);
    }
    cv_.notify_all();
  }
  grpc::Status status = reader_->Finish();
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    status_ = std::move(status);
  }
  cv_.notify_all();
}

std::vector<v1beta1::ListAndWatchResponse> WatchStream::Updates() const {
  std::lock_guard lock(mu_);
  return updates_;
}

size_t WatchStream::UpdateCount() const {
  std::lock_guard lock(mu_);
  return updates_.size();
}

bool WatchStream::WaitFor(const std::function<bool(const v1beta1::ListAndWatchResponse&)>& pred,
                          Deadline deadline) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] {
    for (const auto& u : updates_) {
      if (pred(u)) return true;
    }
    return false;
  });
}

bool WatchStream::WaitForCount(size_t count, Deadline deadline) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return updates_.size() >= count; });
}

void WatchStream::Cancel() { ctx_.TryCancel(); }

bool WatchStream::WaitFinished(Deadline deadline) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return finished_; });
}

bool WatchStream::finished() const {
  std::lock_guard lock(mu_);
  return finished_;
}

grpc::Status WatchStream::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

PluginClient::PluginClient(const std::string& socket_path)
    : channel_(grpc::CreateChannel("unix://" + socket_path, grpc::InsecureChannelCredentials())),
      stub_(v1beta1::DevicePlugin::NewStub(channel_)) {}

bool PluginClient::WaitConnected(Deadline deadline) {
  const auto system_deadline = std::chrono::system_clock::now() +
                               std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                   deadline - std::chrono::steady_clock::now());
  return channel_->WaitForConnected(system_deadline);
}

namespace {
void SetTimeout(grpc::ClientContext* ctx, std::chrono::milliseconds timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}
}  // namespace

grpc::Status PluginClient::GetOptions(v1beta1::DevicePluginOptions* out,
                                      std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout);
  return stub_->GetDevicePluginOptions(&ctx, v1beta1::Empty(), out);
}

grpc::Status PluginClient::Allocate(const v1beta1::AllocateRequest& req,
                                    v1beta1::AllocateResponse* out,
                                    std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout);
  return stub_->Allocate(&ctx, req, out);
}

grpc::Status PluginClient::GetPreferredAllocation(const v1beta1::PreferredAllocationRequest& req,
                                                  v1beta1::PreferredAllocationResponse* out,
                                                  std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout);
  return stub_->GetPreferredAllocation(&ctx, req, out);
}

grpc::Status PluginClient::PreStartContainer(const v1beta1::PreStartContainerRequest& req,
                                             std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout);
  v1beta1::PreStartContainerResponse resp;
  return stub_->PreStartContainer(&ctx, req, &resp);
}

std::unique_ptr<WatchStream> PluginClient::Watch() {
  return std::make_unique<WatchStream>(stub_.get());
}

v1beta1::AllocateRequest PluginClient::AllocateRequestFor(
    const std::vector<std::vector<std::string>>& containers) {
  v1beta1::AllocateRequest req;
  for (const auto& ids : containers) {
    auto* c = req.add_container_requests();
    for (const auto& id : ids) c->add_devices_ids(id);
  }
  return req;
}

}  // namespace gdp::kubelet_stub
