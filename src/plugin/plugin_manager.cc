#include "src/plugin/plugin_manager.h"

#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <future>
#include <set>
#include <utility>

#include "src/common/backoff.h"
#include "src/common/log.h"

namespace gdp::plugin {

using SteadyClock = std::chrono::steady_clock;

struct PluginManager::Entry {
  std::shared_ptr<const ResourceBackend> backend;
  std::shared_ptr<DevicePluginServer> server;
  std::unique_ptr<Registrar> registrar;
  bool registered = false;
  SteadyClock::time_point next_attempt{};
  Backoff start_backoff{std::chrono::milliseconds(250), std::chrono::milliseconds(10000)};
  // Identity of the socket file our running server created.
  bool have_socket_id = false;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  timespec socket_ctime{};
  // Identity of kubelet.sock when the last successful registration began.
  bool have_kubelet_id = false;
  dev_t kubelet_dev = 0;
  ino_t kubelet_ino = 0;
  timespec kubelet_ctime{};
};

namespace {

// What a resource that leaves the node advertises last: nothing.
class EmptyBackend final : public ResourceBackend {
 public:
  explicit EmptyBackend(std::string name) : name_(std::move(name)) {}
  const std::string& ResourceName() const override { return name_; }
  const std::vector<Device>& Devices() const override { return devices_; }
  absl::StatusOr<ContainerAllocation> Allocate(const std::vector<std::string>&) const override {
    return absl::InvalidArgumentError(name_ + " is no longer advertised on this node");
  }
  absl::StatusOr<std::vector<std::string>> PreferredAllocation(const std::vector<std::string>&,
                                                               const std::vector<std::string>&,
                                                               int) const override {
    return absl::InvalidArgumentError(name_ + " is no longer advertised on this node");
  }
  std::vector<std::string> GpusBehind(const std::string&) const override { return {}; }

 private:
  std::string name_;
  std::vector<Device> devices_;
};

bool SameSocket(const struct stat& st, dev_t dev, ino_t ino, const timespec& ctime) {
  return S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino &&
         st.st_ctim.tv_sec == ctime.tv_sec && st.st_ctim.tv_nsec == ctime.tv_nsec;
}

}  // namespace

PluginManager::PluginManager(Options options) : options_(std::move(options)) {}

PluginManager::~PluginManager() { Stop(); }

absl::Status PluginManager::Start() {
  {
    std::lock_guard lock(mu_);
    if (running_) return absl::FailedPreconditionError("plugin manager already running");
    running_ = true;
  }
  thread_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
  watcher_ = std::make_unique<KubeletWatcher>(
      options_.plugin_dir, options_.kubelet_socket,
      [this](KubeletWatcher::Event event, const std::string& name) {
        OnWatcherEvent(event, name);
      });
  if (absl::Status s = watcher_->Start(); !s.ok()) {
    Stop();
    return s;
  }
  return absl::OkStatus();
}

void PluginManager::Stop() {
  if (watcher_ != nullptr) {
    watcher_->Stop();
    watcher_.reset();
  }
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  std::lock_guard lock(mu_);
  running_ = false;
}

void PluginManager::Post(Task task) {
  {
    std::lock_guard lock(mu_);
    if (running_) {
      tasks_.push_back(std::move(task));
      task = nullptr;
    }
  }
  cv_.notify_all();
  if (task) task(/*cancelled=*/true);
}

bool PluginManager::RunOnThread(std::function<void()> fn) {
  std::promise<bool> done;
  std::future<bool> result = done.get_future();
  Post([&fn, &done](bool cancelled) {
    if (!cancelled) fn();
    done.set_value(!cancelled);
  });
  return result.get();
}

absl::Status PluginManager::Apply(std::vector<std::shared_ptr<const ResourceBackend>> backends) {
  std::set<std::string> names;
  for (const auto& b : backends) {
    if (b == nullptr) return absl::InvalidArgumentError("Apply: a resource backend is null");
    if (!names.insert(b->ResourceName()).second) {
      return absl::InvalidArgumentError(
          "Apply: resource " + b->ResourceName() +
          " is given twice; each resource name needs exactly one backend");
    }
  }
  if (!RunOnThread([this, &backends] { DoApply(backends); })) {
    return absl::FailedPreconditionError("Apply: the plugin manager is not running");
  }
  return absl::OkStatus();
}

void PluginManager::SetGpuHealth(const std::string& uuid, bool healthy) {
  Post([this, uuid, healthy](bool cancelled) {
    if (!cancelled) DoSetGpuHealth(uuid, healthy);
  });
}

PluginManager::Counters PluginManager::counters() const {
  return Counters{registrations_.load(), registration_failures_.load(), kubelet_restarts_.load(),
                  server_restarts_.load()};
}

std::vector<PluginManager::ResourceInfo> PluginManager::Resources() {
  std::vector<ResourceInfo> out;
  RunOnThread([this, &out] {
    for (const auto& [name, e] : entries_) {
      out.push_back(ResourceInfo{name, e->server->socket_path(), e->registered, e->server});
    }
  });
  return out;
}

void PluginManager::OnWatcherEvent(KubeletWatcher::Event event, const std::string& name) {
  Post([this, event, name](bool cancelled) {
    if (cancelled) return;
    if (event == KubeletWatcher::Event::kKubeletSocketCreated) {
      kubelet_restarts_.fetch_add(1);
      const std::string kubelet = options_.plugin_dir + "/" + name;
      log::Info("kubelet socket created: serving and registering again",
                {{"socket", kubelet}, {"resources", entries_.size()}});
      struct stat st {};
      const bool have = ::stat(kubelet.c_str(), &st) == 0;
      for (auto& [resource, e] : entries_) {
        // A retry may already have registered with this very kubelet; a
        // restart now would only cut the stream it just opened.
        if (e->registered && e->have_kubelet_id && have &&
            SameSocket(st, e->kubelet_dev, e->kubelet_ino, e->kubelet_ctime)) {
          continue;
        }
        RestartServer(*e, "kubelet restarted");
      }
      return;
    }
    for (auto& [resource, e] : entries_) {
      if (e->server->socket_name() != name) continue;
      struct stat st {};
      if (e->have_socket_id && ::stat(e->server->socket_path().c_str(), &st) == 0 &&
          SameSocket(st, e->socket_dev, e->socket_ino, e->socket_ctime)) {
        continue;  // the event is about a socket we replaced ourselves
      }
      RestartServer(*e, "socket removed");
    }
  });
}

void PluginManager::Run(const std::stop_token& stop) {
  ::pthread_setname_np(::pthread_self(), "gdp-plugin-mgr");
  while (!stop.stop_requested()) {
    std::deque<Task> tasks;
    {
      std::unique_lock lock(mu_);
      std::optional<SteadyClock::time_point> deadline;
      for (const auto& [name, e] : entries_) {
        if (!e->registered && (!deadline || e->next_attempt < *deadline))
          deadline = e->next_attempt;
      }
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !tasks_.empty(); };
      if (deadline) {
        cv_.wait_until(lock, stop, *deadline, ready);
      } else {
        cv_.wait(lock, stop, ready);
      }
      tasks.swap(tasks_);
    }
    if (stop.stop_requested()) {
      for (Task& t : tasks) t(/*cancelled=*/true);
      break;
    }
    for (Task& t : tasks) t(/*cancelled=*/false);
    Publish();
    AttemptDue(stop);
    Publish();
  }
  // Answer whatever is still queued, then stop the servers, newest first.
  std::deque<Task> rest;
  {
    std::lock_guard lock(mu_);
    running_ = false;
    rest.swap(tasks_);
  }
  for (Task& t : rest) t(/*cancelled=*/true);
  for (auto it = start_order_.rbegin(); it != start_order_.rend(); ++it) {
    auto found = entries_.find(*it);
    if (found != entries_.end()) found->second->server->Stop();
  }
  entries_.clear();
  start_order_.clear();
  Publish();
}

void PluginManager::DoApply(const std::vector<std::shared_ptr<const ResourceBackend>>& backends) {
  std::set<std::string> wanted;
  for (const auto& b : backends) wanted.insert(b->ResourceName());
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (wanted.count(it->first) == 0) {
      log::Info("resource no longer advertised: its streams get an empty list, then end",
                {{"resource", it->first}});
      it->second->server->SwapBackend(std::make_shared<EmptyBackend>(it->first));
      it->second->server->Stop();
      start_order_.erase(std::remove(start_order_.begin(), start_order_.end(), it->first),
                         start_order_.end());
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  const auto now = SteadyClock::now();
  for (const auto& b : backends) {
    const std::string& name = b->ResourceName();
    auto it = entries_.find(name);
    if (it != entries_.end()) {
      Entry& e = *it->second;
      if (e.backend == b) continue;
      // The kubelet takes each ListAndWatch message as the resource's whole
      // device set, so a changed list is one more message on the open
      // streams: the socket, the registration and the streams stay.
      const bool same = e.backend->Devices() == b->Devices();
      e.backend = b;
      e.server->SwapBackend(b, HealthFor(*b));
      log::Info(same ? "resource unchanged; kept its registration"
                     : "resource devices changed; sent the new list on the open streams",
                {{"resource", name}, {"devices", b->Devices().size()}});
      continue;
    }
    auto e = std::make_unique<Entry>();
    e->backend = b;
    e->server = std::make_shared<DevicePluginServer>(
        b, DevicePluginServer::Options{options_.plugin_dir, options_.shutdown_deadline});
    e->registrar = std::make_unique<Registrar>(
        name, e->server->socket_name(),
        Registrar::Options{options_.plugin_dir, options_.kubelet_socket, options_.register_timeout,
                           options_.backoff_initial, options_.backoff_max});
    e->next_attempt = now;
    ApplyHealth(*e);
    log::Info("resource added", {{"resource", name}, {"devices", b->Devices().size()}});
    entries_.emplace(name, std::move(e));
    start_order_.push_back(name);
  }
}

void PluginManager::DoSetGpuHealth(const std::string& uuid, bool healthy) {
  auto [it, inserted] = gpu_health_.try_emplace(uuid, healthy);
  if (!inserted && it->second == healthy) return;
  it->second = healthy;
  for (auto& [name, e] : entries_) ApplyHealth(*e);
}

std::map<std::string, bool> PluginManager::HealthFor(const ResourceBackend& backend) const {
  std::map<std::string, bool> health;
  for (const Device& d : backend.Devices()) {
    bool healthy = true;
    for (const std::string& gpu : backend.GpusBehind(d.id)) {
      auto it = gpu_health_.find(gpu);
      if (it != gpu_health_.end() && !it->second) healthy = false;
    }
    health[d.id] = healthy;
  }
  return health;
}

void PluginManager::ApplyHealth(Entry& e) { e.server->SetHealth(HealthFor(*e.backend)); }

void PluginManager::RestartServer(Entry& e, const char* reason) {
  if (e.server->running()) {
    e.server->Stop();
    server_restarts_.fetch_add(1);
  }
  log::Info("restarting device plugin server",
            {{"resource", e.server->resource_name()}, {"reason", reason}});
  e.have_socket_id = false;
  e.registered = false;
  e.registrar->Reset();
  e.start_backoff.Reset();
  e.next_attempt = SteadyClock::now();
}

void PluginManager::AttemptDue(const std::stop_token& stop) {
  for (const std::string& name : start_order_) {
    if (stop.stop_requested()) return;
    Entry& e = *entries_.at(name);
    if (e.registered || SteadyClock::now() < e.next_attempt) continue;
    if (!e.server->running()) {
      if (absl::Status s = e.server->Start(); !s.ok()) {
        const auto delay = e.start_backoff.Next();
        log::Warn("cannot start device plugin server, will retry",
                  {{"resource", name},
                   {"error", std::string(s.message())},
                   {"retry_in_ms", delay.count()}});
        e.next_attempt = SteadyClock::now() + delay;
        continue;
      }
      e.start_backoff.Reset();
      struct stat st {};
      if (::stat(e.server->socket_path().c_str(), &st) == 0) {
        e.have_socket_id = true;
        e.socket_dev = st.st_dev;
        e.socket_ino = st.st_ino;
        e.socket_ctime = st.st_ctim;
      }
    }
    struct stat kst {};
    e.have_kubelet_id = ::stat(e.registrar->kubelet_socket_path().c_str(), &kst) == 0;
    e.kubelet_dev = kst.st_dev;
    e.kubelet_ino = kst.st_ino;
    e.kubelet_ctime = kst.st_ctim;
    if (e.registrar->TryRegister(stop).ok()) {
      e.registered = true;
      registrations_.fetch_add(1);
    } else {
      registration_failures_.fetch_add(1);
      e.next_attempt = SteadyClock::now() + e.registrar->NextDelay();
    }
  }
}

void PluginManager::Publish() {
  bool all = true;
  for (const auto& [name, e] : entries_) all = all && e->registered;
  all_registered_.store(all);
}

}  // namespace gdp::plugin
