#include "src/plugin/device_plugin_server.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "src/common/filesystem.h"
#include "src/common/log.h"

namespace gdp::plugin {

std::string SocketNameFor(std::string_view resource_name) {
  std::string base;
  const auto slash = resource_name.find('/');
  if (slash == std::string_view::npos) {
    base = std::string(resource_name);
  } else {
    std::string_view domain = resource_name.substr(0, slash);
    domain = domain.substr(0, domain.find('.'));
    base = std::string(domain) + "-" + std::string(resource_name.substr(slash + 1));
  }
  for (char& c : base) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) c = '-';
  }
  return base + ".sock";
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering (both follow
  // google.rpc.Code), so the cast keeps INVALID_ARGUMENT as INVALID_ARGUMENT.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace detail {

using ListPtr = std::shared_ptr<const v1beta1::ListAndWatchResponse>;

class ListAndWatchReactor;

// State that outlives one grpc::Server: devices, health overlay, open streams.
class ServerState {
 public:
  explicit ServerState(std::shared_ptr<const ResourceBackend> backend)
      : backend_(std::move(backend)) {
    std::lock_guard lock(mu_);
    RebuildLocked();
  }

  std::shared_ptr<const ResourceBackend> backend() const {
    std::lock_guard lock(mu_);
    return backend_;
  }

  std::vector<Device> Devices() const {
    std::lock_guard lock(mu_);
    return devices_;
  }

  void SetHealth(const std::map<std::string, bool>& health);
  void SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                   const std::map<std::string, bool>& health);

  // A new stream: registered and handed the current list, or refused when the
  // server is closing (returns nullptr then).
  ListPtr Attach(ListAndWatchReactor* reactor);
  void Detach(ListAndWatchReactor* reactor);
  // Accept streams again (Start) / end every stream and refuse new ones (Stop).
  void Open();
  void CloseAll();

  ServerStats stats;

 private:
  // Recomputes devices_ from the backend and the overlay; true when changed.
  bool RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BroadcastLocked(std::vector<ListAndWatchReactor*>* to_start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartWrites(const std::vector<ListAndWatchReactor*>& to_start);

  mutable std::mutex mu_;
  std::shared_ptr<const ResourceBackend> backend_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> overlay_ ABSL_GUARDED_BY(mu_);  // device ID -> healthy
  std::vector<Device> devices_ ABSL_GUARDED_BY(mu_);
  ListPtr list_ ABSL_GUARDED_BY(mu_);
  std::set<ListAndWatchReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = true;
};

// One ListAndWatch stream. At most one write is outstanding; `latest_` is the
// newest list, `sent_` the last one handed to gRPC. Finish is called exactly
// once, and only while no write is outstanding, so the reactor (deleted in
// OnDone) stays alive for whoever set `writing_`: that thread may call
// StartWrite after dropping every lock. gRPC may run OnWriteDone inline inside
// StartWrite, so no lock is ever held across StartWrite or Finish.
class ListAndWatchReactor final : public grpc::ServerWriteReactor<v1beta1::ListAndWatchResponse> {
 public:
  explicit ListAndWatchReactor(std::shared_ptr<ServerState> state) : state_(std::move(state)) {
    state_->stats.open_streams.fetch_add(1);
    ListPtr first = state_->Attach(this);
    if (first == nullptr) {
      {
        std::lock_guard lock(mu_);
        finished_ = true;
      }
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "device plugin is stopping"));
      return;
    }
    // Attach set latest_ and writing_ for us (see Offer).
    state_->stats.list_and_watch_sends.fetch_add(1);  // before: the peer may see it at once
    StartWrite(first.get());
  }

  // Called with the state's mutex held. Records `list` as the newest; returns
  // true when the caller must call KickWrite() after dropping its locks.
  bool Offer(ListPtr list) {
    std::lock_guard lock(mu_);
    latest_ = std::move(list);
    if (writing_ || closing_) return false;
    writing_ = true;
    sent_ = latest_;
    return true;
  }

  // Only after Offer returned true.
  void KickWrite() {
    ListPtr msg;
    {
      std::lock_guard lock(mu_);
      msg = sent_;
    }
    state_->stats.list_and_watch_sends.fetch_add(1);
    StartWrite(msg.get());
  }

  // Called with the state's mutex held; true when the caller must call
  // FinishNow() after dropping its locks.
  bool RequestClose(grpc::Status status) {
    std::lock_guard lock(mu_);
    closing_ = true;
    if (writing_ || finished_) return false;
    finished_ = true;
    status_ = std::move(status);
    return true;
  }

  void FinishNow() {
    grpc::Status status;
    {
      std::lock_guard lock(mu_);
      status = status_;
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    ListPtr next;
    bool finish = false;
    grpc::Status status;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) closing_ = true;
      if (closing_ && ok && status_.ok() && !finished_ && latest_ != sent_) {
        // The server is closing the stream: its last list goes out first
        // (a resource that leaves sends an empty list, so the kubelet drops
        // its capacity rather than waiting for the stream to time out).
        writing_ = true;
        sent_ = latest_;
        next = sent_;
      } else if (closing_) {
        if (!finished_) {
          finished_ = true;
          finish = true;
          status = status_;
        }
      } else if (latest_ != sent_) {
        writing_ = true;
        sent_ = latest_;
        next = sent_;
      }
    }
    if (finish) {
      Finish(status);
    } else if (next != nullptr) {
      state_->stats.list_and_watch_sends.fetch_add(1);
      StartWrite(next.get());
    }
  }

  void OnCancel() override {
    bool finish = false;
    {
      std::lock_guard lock(mu_);
      closing_ = true;
      status_ = grpc::Status::CANCELLED;
      if (!writing_ && !finished_) {
        finished_ = true;
        finish = true;
      }
    }
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      // gRPC orders OnDone after everything else inside its (uninstrumented)
      // library; taking our mutex makes that order visible to TSan too.
      std::lock_guard lock(mu_);
    }
    state_->Detach(this);
    state_->stats.open_streams.fetch_sub(1);
    delete this;
  }

 private:
  friend class ServerState;
  const std::shared_ptr<ServerState> state_;
  std::mutex mu_;
  ListPtr latest_ ABSL_GUARDED_BY(mu_);
  ListPtr sent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

bool ServerState::RebuildLocked() {
  std::vector<Device> devices = backend_->Devices();
  for (Device& d : devices) {
    auto it = overlay_.find(d.id);
    if (it != overlay_.end()) d.healthy = d.healthy && it->second;
  }
  if (list_ != nullptr && devices == devices_) return false;
  devices_ = std::move(devices);
  auto list = std::make_shared<v1beta1::ListAndWatchResponse>();
  for (const Device& d : devices_) {
    v1beta1::Device* out = list->add_devices();
    out->set_id(d.id);
    out->set_health(d.healthy ? "Healthy" : "Unhealthy");
    if (d.numa_node.has_value()) out->mutable_topology()->add_nodes()->set_id(*d.numa_node);
  }
  list_ = std::move(list);
  return true;
}

void ServerState::BroadcastLocked(std::vector<ListAndWatchReactor*>* to_start) {
  for (ListAndWatchReactor* r : streams_) {
    if (r->Offer(list_)) to_start->push_back(r);
  }
}

void ServerState::StartWrites(const std::vector<ListAndWatchReactor*>& to_start) {
  for (ListAndWatchReactor* r : to_start) r->KickWrite();
}

void ServerState::SetHealth(const std::map<std::string, bool>& health) {
  std::vector<ListAndWatchReactor*> to_start;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, healthy] : health) overlay_[id] = healthy;
    if (!RebuildLocked()) return;
    BroadcastLocked(&to_start);
  }
  StartWrites(to_start);
}

void ServerState::SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                              const std::map<std::string, bool>& health) {
  std::vector<ListAndWatchReactor*> to_start;
  {
    std::lock_guard lock(mu_);
    backend_ = std::move(backend);
    // Forget the health of devices the new backend no longer lists, so a
    // device that comes back starts from what it is told, not from old news.
    std::set<std::string> ids;
    for (const Device& d : backend_->Devices()) ids.insert(d.id);
    std::erase_if(overlay_, [&ids](const auto& kv) { return ids.count(kv.first) == 0; });
    for (const auto& [id, healthy] : health) overlay_[id] = healthy;
    if (!RebuildLocked()) return;
    BroadcastLocked(&to_start);
  }
  StartWrites(to_start);
}

ListPtr ServerState::Attach(ListAndWatchReactor* reactor) {
  std::lock_guard lock(mu_);
  if (closing_) return nullptr;
  streams_.insert(reactor);
  // The reactor is not yet visible to gRPC callbacks: set its state directly.
  const bool start = reactor->Offer(list_);
  (void)start;  // always true for a fresh reactor
  return list_;
}

void ServerState::Detach(ListAndWatchReactor* reactor) {
  std::lock_guard lock(mu_);
  streams_.erase(reactor);
}

void ServerState::Open() {
  std::lock_guard lock(mu_);
  closing_ = false;
}

void ServerState::CloseAll() {
  std::vector<ListAndWatchReactor*> to_finish;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    for (ListAndWatchReactor* r : streams_) {
      if (r->RequestClose(grpc::Status::OK)) to_finish.push_back(r);
    }
  }
  for (ListAndWatchReactor* r : to_finish) r->FinishNow();
}

// The gRPC service; one per grpc::Server (a service registers only once).
class DevicePluginService final : public v1beta1::DevicePlugin::CallbackService {
 public:
  explicit DevicePluginService(std::shared_ptr<ServerState> state) : state_(std::move(state)) {}

  grpc::ServerUnaryReactor* GetDevicePluginOptions(grpc::CallbackServerContext* ctx,
                                                   const v1beta1::Empty*,
                                                   v1beta1::DevicePluginOptions* resp) override {
    resp->set_pre_start_required(false);
    resp->set_get_preferred_allocation_available(true);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<v1beta1::ListAndWatchResponse>* ListAndWatch(
      grpc::CallbackServerContext*, const v1beta1::Empty*) override {
    return new ListAndWatchReactor(state_);
  }

  grpc::ServerUnaryReactor* GetPreferredAllocation(
      grpc::CallbackServerContext* ctx, const v1beta1::PreferredAllocationRequest* req,
      v1beta1::PreferredAllocationResponse* resp) override {
    const auto start = std::chrono::steady_clock::now();
    const std::shared_ptr<const ResourceBackend> backend = state_->backend();
    absl::Status status;
    for (const auto& creq : req->container_requests()) {
      std::vector<std::string> available(creq.available_deviceids().begin(),
                                         creq.available_deviceids().end());
      std::vector<std::string> must(creq.must_include_deviceids().begin(),
                                    creq.must_include_deviceids().end());
      auto chosen = backend->PreferredAllocation(available, must, creq.allocation_size());
      if (!chosen.ok()) {
        status = chosen.status();
        break;
      }
      auto* out = resp->add_container_responses();
      for (auto& id : *chosen) out->add_deviceids(std::move(id));
    }
    Record(start, status, state_->stats.preferred_allocation_calls,
           state_->stats.preferred_allocation_errors, state_->stats.preferred_allocation_latency_us,
           state_->stats.preferred_allocation_latency_buckets, "GetPreferredAllocation");
    if (!status.ok()) resp->Clear();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }

  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* ctx,
                                     const v1beta1::AllocateRequest* req,
                                     v1beta1::AllocateResponse* resp) override {
    const auto start = std::chrono::steady_clock::now();
    const std::shared_ptr<const ResourceBackend> backend = state_->backend();
    absl::Status status;
    if (req->container_requests().empty()) {
      status = absl::InvalidArgumentError("Allocate for " + backend->ResourceName() +
                                          ": the request has no container_requests");
    }
    for (const auto& creq : req->container_requests()) {
      std::vector<std::string> ids(creq.devices_ids().begin(), creq.devices_ids().end());
      auto alloc = backend->Allocate(ids);
      if (!alloc.ok()) {
        status = alloc.status();
        break;
      }
      auto* out = resp->add_container_responses();
      for (const auto& [k, v] : alloc->envs) (*out->mutable_envs())[k] = v;
      for (const auto& [k, v] : alloc->annotations) (*out->mutable_annotations())[k] = v;
      for (const Mount& m : alloc->mounts) {
        auto* pm = out->add_mounts();
        pm->set_container_path(m.container_path);
        pm->set_host_path(m.host_path);
        pm->set_read_only(m.read_only);
      }
      for (const DeviceSpec& d : alloc->devices) {
        auto* pd = out->add_devices();
        pd->set_container_path(d.container_path);
        pd->set_host_path(d.host_path);
        pd->set_permissions(d.permissions);
      }
      for (const std::string& name : alloc->cdi_devices) out->add_cdi_devices()->set_name(name);
    }
    Record(start, status, state_->stats.allocate_calls, state_->stats.allocate_errors,
           state_->stats.allocate_latency_us, state_->stats.allocate_latency_buckets, "Allocate");
    if (!status.ok()) resp->Clear();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }

  grpc::ServerUnaryReactor* PreStartContainer(grpc::CallbackServerContext* ctx,
                                              const v1beta1::PreStartContainerRequest*,
                                              v1beta1::PreStartContainerResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  void Record(std::chrono::steady_clock::time_point start, const absl::Status& status,
              std::atomic<uint64_t>& calls, std::atomic<uint64_t>& errors,
              std::atomic<uint64_t>& latency_us, LatencyBuckets& buckets, const char* rpc) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
      if (static_cast<uint64_t>(us) <= kLatencyBucketsUs[i]) {
        buckets[i].fetch_add(1);
        break;
      }
    }
    latency_us.fetch_add(static_cast<uint64_t>(us));
    calls.fetch_add(1);
    if (!status.ok()) {
      errors.fetch_add(1);
      log::Warn("request refused", {{"rpc", rpc}, {"error", status.ToString()}});
    }
  }

  const std::shared_ptr<ServerState> state_;
};

}  // namespace detail

DevicePluginServer::DevicePluginServer(std::shared_ptr<const ResourceBackend> backend,
                                       Options options)
    : resource_name_(backend->ResourceName()),
      socket_name_(SocketNameFor(resource_name_)),
      socket_path_(options.plugin_dir + "/" + socket_name_),
      options_(std::move(options)),
      state_(std::make_shared<detail::ServerState>(std::move(backend))) {}

DevicePluginServer::~DevicePluginServer() { Stop(); }

absl::Status DevicePluginServer::Start() {
  std::lock_guard lock(mu_);
  if (server_ != nullptr) {
    return absl::FailedPreconditionError("device plugin server for " + resource_name_ +
                                         " is already running");
  }
  // sockaddr_un.sun_path holds 108 bytes including the NUL.
  if (socket_path_.size() >= 108) {
    return absl::InvalidArgumentError(
        "socket path " + socket_path_ + " is " + std::to_string(socket_path_.size()) +
        " bytes; unix sockets allow at most 107: use a shorter plugin directory");
  }
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    return absl::UnavailableError("cannot remove stale socket " + socket_path_ + ": " +
                                  ErrnoString(err) + "; is the plugin directory writable?");
  }
  auto service = std::make_unique<detail::DevicePluginService>(state_);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("unix://" + socket_path_, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  state_->Open();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    state_->CloseAll();
    const bool dir_ok = ::access(options_.plugin_dir.c_str(), W_OK) == 0;
    return absl::UnavailableError(
        "cannot serve the device plugin for " + resource_name_ + " on unix://" + socket_path_ +
        (dir_ok ? std::string(": bind failed")
                : ": the plugin directory is missing or not writable; is it mounted?"));
  }
  service_ = std::move(service);
  server_ = std::move(server);
  log::Info("device plugin serving", {{"resource", resource_name_}, {"socket", socket_path_}});
  return absl::OkStatus();
}

void DevicePluginServer::Stop() {
  std::lock_guard lock(mu_);
  if (server_ == nullptr) return;
  // End the streams first: Shutdown would otherwise wait the whole deadline
  // for streams that never end by themselves.
  state_->CloseAll();
  server_->Shutdown(std::chrono::system_clock::now() + options_.shutdown_deadline);
  server_->Wait();
  server_.reset();
  service_.reset();
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    log::Warn("cannot remove socket", {{"socket", socket_path_}, {"error", ErrnoString(err)}});
  }
  log::Info("device plugin stopped", {{"resource", resource_name_}});
}

bool DevicePluginServer::running() const {
  std::lock_guard lock(mu_);
  return server_ != nullptr;
}

void DevicePluginServer::SetHealth(const std::map<std::string, bool>& health) {
  state_->SetHealth(health);
}

void DevicePluginServer::SetUnhealthy(const std::vector<std::string>& device_ids) {
  std::map<std::string, bool> health;
  for (const std::string& id : device_ids) health[id] = false;
  state_->SetHealth(health);
}

void DevicePluginServer::SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                                     const std::map<std::string, bool>& health) {
  state_->SwapBackend(std::move(backend), health);
}

std::shared_ptr<const ResourceBackend> DevicePluginServer::backend() const {
  return state_->backend();
}

std::vector<Device> DevicePluginServer::Devices() const { return state_->Devices(); }

const ServerStats& DevicePluginServer::stats() const { return state_->stats; }

}  // namespace gdp::plugin
