#include "src/plugin/device_plugin_server.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <thread>
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

// State that outlives one grpc::Server: devices, health overlay, statistics.
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

  // The list ListAndWatch sends now.
  ListPtr List() const {
    std::lock_guard lock(mu_);
    return list_;
  }

  void SetHealth(const std::map<std::string, bool>& health);
  void SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                   const std::map<std::string, bool>& health);

  // Called with the list, under the state's lock, now and whenever the list
  // changes (the running server's; empty while stopped). Once SetWaker({})
  // returns, the old one is never called again.
  void SetWaker(std::function<void(ListPtr)> wake) {
    std::lock_guard lock(mu_);
    wake_ = std::move(wake);
    if (wake_) wake_(list_);
  }

  ServerStats stats;

 private:
  // Recomputes devices_ and list_ from the backend and the overlay; true when changed.
  bool RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  std::shared_ptr<const ResourceBackend> backend_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> overlay_ ABSL_GUARDED_BY(mu_);  // device ID -> healthy
  std::vector<Device> devices_ ABSL_GUARDED_BY(mu_);
  ListPtr list_ ABSL_GUARDED_BY(mu_);
  std::function<void(ListPtr)> wake_ ABSL_GUARDED_BY(mu_);
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

void ServerState::SetHealth(const std::map<std::string, bool>& health) {
  std::lock_guard lock(mu_);
  for (const auto& [id, healthy] : health) overlay_[id] = healthy;
  if (RebuildLocked() && wake_) wake_(list_);
}

void ServerState::SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                              const std::map<std::string, bool>& health) {
  std::lock_guard lock(mu_);
  backend_ = std::move(backend);
  // Forget the health of devices the new backend no longer lists, so a
  // device that comes back starts from what it is told, not from old news.
  std::set<std::string> ids;
  for (const Device& d : backend_->Devices()) ids.insert(d.id);
  std::erase_if(overlay_, [&ids](const auto& kv) { return ids.count(kv.first) == 0; });
  for (const auto& [id, healthy] : health) overlay_[id] = healthy;
  if (RebuildLocked() && wake_) wake_(list_);
}

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

grpc::Status HandlePreferredAllocation(ServerState& state,
                                       const v1beta1::PreferredAllocationRequest& req,
                                       v1beta1::PreferredAllocationResponse* resp) {
  const auto start = std::chrono::steady_clock::now();
  const std::shared_ptr<const ResourceBackend> backend = state.backend();
  absl::Status status;
  for (const auto& creq : req.container_requests()) {
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
  Record(start, status, state.stats.preferred_allocation_calls,
         state.stats.preferred_allocation_errors, state.stats.preferred_allocation_latency_us,
         state.stats.preferred_allocation_latency_buckets, "GetPreferredAllocation");
  if (!status.ok()) resp->Clear();
  return ToGrpcStatus(status);
}

grpc::Status HandleAllocate(ServerState& state, const v1beta1::AllocateRequest& req,
                            v1beta1::AllocateResponse* resp) {
  const auto start = std::chrono::steady_clock::now();
  const std::shared_ptr<const ResourceBackend> backend = state.backend();
  absl::Status status;
  if (req.container_requests().empty()) {
    status = absl::InvalidArgumentError("Allocate for " + backend->ResourceName() +
                                        ": the request has no container_requests");
  }
  for (const auto& creq : req.container_requests()) {
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
  Record(start, status, state.stats.allocate_calls, state.stats.allocate_errors,
         state.stats.allocate_latency_us, state.stats.allocate_latency_buckets, "Allocate");
  if (!status.ok()) resp->Clear();
  return ToGrpcStatus(status);
}

// What the completion queue hands back: each pending operation's tag.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Proceed(bool ok) = 0;
};

class StreamCall;

// The gRPC service of one grpc::Server (a service registers only once).
class DevicePluginService final : public v1beta1::DevicePlugin::AsyncService {};

// One running server's event loop: a completion queue and the one thread that
// serves it (`gdp-grpc`), which blocks in Next() until an operation completes.
// Operations start on that thread (a request armed, an answer sent) or, for a
// stream's next list, on the thread that changed the list: the async API lets
// any thread start an operation, and completions come only through Next(), so
// nothing runs inline under a lock. The streams and the flags below are under
// mu_; the state's lock comes first where both are held (its waker takes mu_).
class Loop {
 public:
  Loop(std::shared_ptr<ServerState> state, DevicePluginService* service,
       std::unique_ptr<grpc::ServerCompletionQueue> cq)
      : state_(std::move(state)), service_(service), cq_(std::move(cq)) {}
  ~Loop() { Stop(); }

  // Arms one request of each method, follows the state's list and starts the thread.
  void Start();
  // Ends every stream (status OK) after its newest list is out, and refuses
  // new ones (UNAVAILABLE). Any thread.
  void Close();
  // After grpc::Server::Shutdown: shuts the queue down and joins the thread,
  // which deletes every call as its last operation completes. Idempotent.
  void Stop();

  ServerState& state() { return *state_; }
  DevicePluginService* service() { return service_; }
  grpc::ServerCompletionQueue* cq() { return cq_.get(); }
  std::mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  // Under mu().
  bool stopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; }
  bool closing() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closing_; }
  const ListPtr& latest() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return latest_; }
  void Add(StreamCall* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { streams_.insert(s); }
  void Remove(StreamCall* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { streams_.erase(s); }

 private:
  // The list changed (ServerState's waker, under the state's lock).
  void Offer(ListPtr list);
  void PumpAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run();

  const std::shared_ptr<ServerState> state_;
  DevicePluginService* const service_;
  const std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
  std::mutex mu_;
  ListPtr latest_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // the queue is shut down: arm nothing more
  std::set<StreamCall*> streams_ ABSL_GUARDED_BY(mu_);
};

// One unary method: arms the next request when one arrives, answers with
// `handle`, and is deleted when the answer is out.
template <class Req, class Resp>
class UnaryCall final : public Tag {
 public:
  using Request = void (DevicePluginService::*)(grpc::ServerContext*, Req*,
                                                grpc::ServerAsyncResponseWriter<Resp>*,
                                                grpc::CompletionQueue*,
                                                grpc::ServerCompletionQueue*, void*);
  using Handle = grpc::Status (*)(ServerState& state, const Req& req, Resp* resp);

  // Under the loop's lock, before the queue is shut down.
  static void Arm(Loop* loop, Request request, Handle handle) {
    auto* call = new UnaryCall(loop, request, handle);
    (loop->service()->*request)(&call->ctx_, &call->req_, &call->responder_, loop->cq(), loop->cq(),
                                static_cast<Tag*>(call));
  }

  void Proceed(bool ok) override {
    if (answered_ || !ok) {  // the answer is out, or the server is shutting down
      delete this;
      return;
    }
    {
      std::lock_guard lock(loop_->mu());
      if (!loop_->stopped()) Arm(loop_, request_, handle_);
    }
    answered_ = true;
    const grpc::Status status = handle_(loop_->state(), req_, &resp_);
    responder_.Finish(resp_, status, static_cast<Tag*>(this));
  }

 private:
  UnaryCall(Loop* loop, Request request, Handle handle)
      : loop_(loop), request_(request), handle_(handle), responder_(&ctx_) {}

  Loop* const loop_;
  const Request request_;
  const Handle handle_;
  grpc::ServerContext ctx_;
  Req req_;
  Resp resp_;
  grpc::ServerAsyncResponseWriter<Resp> responder_;
  bool answered_ = false;
};

// One ListAndWatch stream: the whole list when it opens and after every
// change, at most one write outstanding; a change during a write sends only
// the newest list when the write completes. Deleted once gRPC says the call is
// over (AsyncNotifyWhenDone) and none of its operations is outstanding. Its
// fields are under the loop's lock.
class StreamCall final {
 public:
  // Under the loop's lock, before the queue is shut down.
  static void Arm(Loop* loop) {
    auto* call = new StreamCall(loop);
    call->ctx_.AsyncNotifyWhenDone(static_cast<Tag*>(&call->done_op_));
    loop->service()->RequestListAndWatch(&call->ctx_, &call->req_, &call->writer_, loop->cq(),
                                         loop->cq(), static_cast<Tag*>(&call->requested_));
  }

  // Sends the newest list, or ends the stream when the loop is closing and
  // the newest list is out. Under the loop's lock, on any thread.
  void Pump() {
    if (!open_ || writing_ || finished_ || done_) return;
    const ListPtr& latest = loop_->latest();
    if (latest != sent_) {
      sent_ = latest;
      writing_ = true;
      loop_->state().stats.list_and_watch_sends.fetch_add(1);
      writer_.Write(*sent_, static_cast<Tag*>(&written_));
    } else if (loop_->closing()) {
      Finish(grpc::Status::OK);
    }
  }

 private:
  struct Op final : Tag {
    Op(StreamCall* c, void (StreamCall::*f)(bool)) : call(c), fn(f) {}
    void Proceed(bool ok) override {
      StreamCall* c = call;  // `this` may go with the call
      std::unique_lock lock(c->loop_->mu());
      (c->*fn)(ok);
      if (c->Over()) {
        c->loop_->Remove(c);
        if (c->open_) c->loop_->state().stats.open_streams.fetch_sub(1);
        lock.unlock();
        delete c;
      }
    }
    StreamCall* call;
    void (StreamCall::*fn)(bool);
  };

  explicit StreamCall(Loop* loop) : loop_(loop), writer_(&ctx_) {}

  void OnRequested(bool ok) {
    if (!ok) {  // the server is shutting down; no call, so no done notification either
      gone_ = true;
      return;
    }
    if (!loop_->stopped()) Arm(loop_);
    open_ = true;
    loop_->Add(this);
    loop_->state().stats.open_streams.fetch_add(1);
    if (loop_->closing()) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "device plugin is stopping"));
      return;
    }
    Pump();
  }
  void OnWritten(bool ok) {
    writing_ = false;
    if (ok) Pump();  // else the call is over: its done notification follows
  }
  void OnFinished(bool) { finishing_ = false; }
  void OnDone(bool) { done_ = true; }
  void Finish(const grpc::Status& status) {
    finishing_ = true;
    finished_ = true;
    writer_.Finish(status, static_cast<Tag*>(&finished_op_));
  }
  // Nothing more will come for this call.
  bool Over() const { return gone_ || (done_ && !writing_ && !finishing_); }

  Loop* const loop_;
  grpc::ServerContext ctx_;
  v1beta1::Empty req_;
  grpc::ServerAsyncWriter<v1beta1::ListAndWatchResponse> writer_;
  Op requested_{this, &StreamCall::OnRequested};
  Op written_{this, &StreamCall::OnWritten};
  Op finished_op_{this, &StreamCall::OnFinished};
  Op done_op_{this, &StreamCall::OnDone};
  ListPtr sent_;
  bool open_ = false;       // the request arrived
  bool gone_ = false;       // the request never arrived (shutdown)
  bool writing_ = false;    // a Write is outstanding
  bool finishing_ = false;  // Finish is outstanding
  bool finished_ = false;   // Finish was called (never twice)
  bool done_ = false;       // gRPC says the call is over
};

void Loop::Offer(ListPtr list) {
  std::lock_guard lock(mu_);
  latest_ = std::move(list);
  PumpAllLocked();
}

void Loop::PumpAllLocked() {
  for (StreamCall* s : streams_) s->Pump();
}

void Loop::Close() {
  std::lock_guard lock(mu_);
  closing_ = true;
  PumpAllLocked();
}

void Loop::Start() {
  using S = DevicePluginService;
  // Follow the list first: the streams armed below send it when they open.
  state_->SetWaker([this](ListPtr list) { Offer(std::move(list)); });
  std::lock_guard lock(mu_);
  UnaryCall<v1beta1::Empty, v1beta1::DevicePluginOptions>::Arm(
      this, &S::RequestGetDevicePluginOptions,
      [](ServerState&, const v1beta1::Empty&, v1beta1::DevicePluginOptions* resp) {
        resp->set_pre_start_required(false);
        resp->set_get_preferred_allocation_available(true);
        return grpc::Status::OK;
      });
  UnaryCall<v1beta1::PreferredAllocationRequest, v1beta1::PreferredAllocationResponse>::Arm(
      this, &S::RequestGetPreferredAllocation, &HandlePreferredAllocation);
  UnaryCall<v1beta1::AllocateRequest, v1beta1::AllocateResponse>::Arm(this, &S::RequestAllocate,
                                                                      &HandleAllocate);
  UnaryCall<v1beta1::PreStartContainerRequest, v1beta1::PreStartContainerResponse>::Arm(
      this, &S::RequestPreStartContainer,
      [](ServerState&, const v1beta1::PreStartContainerRequest&,
         v1beta1::PreStartContainerResponse*) { return grpc::Status::OK; });
  StreamCall::Arm(this);
  thread_ = std::thread([this] { Run(); });
}

void Loop::Stop() {
  if (!thread_.joinable()) return;
  state_->SetWaker({});
  {
    std::lock_guard lock(mu_);
    stopped_ = true;  // no request is armed after this, so none meets a shut-down queue
    cq_->Shutdown();
  }
  thread_.join();
}

void Loop::Run() {
  ::pthread_setname_np(::pthread_self(), "gdp-grpc");  // as top -H and perf show it
  void* tag = nullptr;
  bool ok = false;
  // Every tag handed to gRPC is a Tag*, so it comes back as one.
  while (cq_->Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
}

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
  auto service = std::make_unique<detail::DevicePluginService>();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("unix://" + socket_path_, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  // The async API on a queue of our own: one thread serves it, however many
  // cores the node has (the callback API starts up to 16 polling threads).
  std::unique_ptr<grpc::ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    cq->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
    }
    const bool dir_ok = ::access(options_.plugin_dir.c_str(), W_OK) == 0;
    return absl::UnavailableError(
        "cannot serve the device plugin for " + resource_name_ + " on unix://" + socket_path_ +
        (dir_ok ? std::string(": bind failed")
                : ": the plugin directory is missing or not writable; is it mounted?"));
  }
  loop_ = std::make_unique<detail::Loop>(state_, service.get(), std::move(cq));
  loop_->Start();
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
  loop_->Close();
  server_->Shutdown(std::chrono::system_clock::now() + options_.shutdown_deadline);
  server_->Wait();
  loop_->Stop();  // every call's last event is in; the thread has deleted them
  server_.reset();
  loop_.reset();  // the queue, after the server
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
