// Runs the device plugins of one node: one DevicePluginServer and one
// Registrar per advertised resource, and a KubeletWatcher that notices kubelet
// restarts.
//
// Threading: the manager owns one thread (std::jthread). That thread alone
// owns the servers and registrars: it applies resource sets, health changes and
// watcher events (the watcher's callback and the public methods only post work
// to it), and it runs the registration retries with backoff. Public methods are
// thread-safe. Apply waits until its change is made; SetGpuHealth returns at
// once. Registration attempts block the manager's thread for at most the
// per-attempt deadline; Stop cancels an attempt in flight.
//
// Kubelet restarts: when kubelet.sock is (re)created, every server restarts on
// a fresh socket and registers again; when one of our sockets disappears (the
// kubelet deletes every socket at start), that server restarts and registers
// again. Both happen as soon as the event is seen (well within one second).
//
// Apply (config reloads, node changes): a resource still present keeps its
// server, socket, registration and open ListAndWatch streams; its new backend
// is swapped in and, when the device list differs, the streams get the new
// list (the kubelet takes each message as the whole set). A resource no
// longer present is stopped (its socket removed); a new one starts and
// registers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/plugin/backend.h"
#include "src/plugin/device_plugin_server.h"
#include "src/plugin/kubelet_watcher.h"
#include "src/plugin/registrar.h"

namespace gdp::plugin {

class PluginManager {
 public:
  struct Options {
    std::string plugin_dir = "/var/lib/kubelet/device-plugins";
    std::string kubelet_socket = "kubelet.sock";
    std::chrono::milliseconds register_timeout{5000};  // per Register attempt
    // Between failed Register attempts, doubling. Short at first: the kubelet
    // creates kubelet.sock a moment before it listens, and a refused attempt
    // in that window should not cost a quarter second (make bench showed
    // re-registrations of ~220 ms with 250 here).
    std::chrono::milliseconds backoff_initial{20};
    std::chrono::milliseconds backoff_max{10000};
    std::chrono::milliseconds shutdown_deadline{1000};  // per server on stop
  };

  struct Counters {
    uint64_t registrations = 0;          // successful Register calls
    uint64_t registration_failures = 0;  // failed attempts
    uint64_t kubelet_restarts = 0;       // kubelet.sock creations seen
    uint64_t server_restarts = 0;        // servers restarted on a fresh socket
  };

  // What tests and metrics see of one resource.
  struct ResourceInfo {
    std::string resource_name;
    std::string socket_path;
    bool registered = false;
    std::shared_ptr<const DevicePluginServer> server;  // stats, current list
  };

  explicit PluginManager(Options options);
  ~PluginManager();  // Stops.
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  // Starts the thread and the directory watch.
  absl::Status Start();
  // Stops the watcher, then every server (reverse order of their start),
  // removing our sockets. Idempotent.
  void Stop();

  // Makes `backends` the advertised set (see the header comment). Returns once
  // the servers are changed; registration happens right after, with retries.
  // InvalidArgument for a null backend or a resource name given twice;
  // FailedPrecondition when the manager is not running.
  absl::Status Apply(std::vector<std::shared_ptr<const ResourceBackend>> backends);

  // A GPU's health; every device whose GpusBehind lists `uuid` follows it (a
  // device is healthy when all its GPUs are). Remembered across Apply.
  void SetGpuHealth(const std::string& uuid, bool healthy);

  // True when every resource is registered with the current kubelet (also when
  // there are none: nothing is waiting). For /readyz.
  bool AllRegistered() const { return all_registered_.load(); }
  Counters counters() const;
  // A snapshot taken on the manager's thread; empty when not running.
  std::vector<ResourceInfo> Resources();

 private:
  struct Entry;
  using Task = std::function<void(bool cancelled)>;

  void Post(Task task);
  // Posts `fn` and waits for it; false when the manager stopped first.
  bool RunOnThread(std::function<void()> fn);
  void Run(const std::stop_token& stop);
  void OnWatcherEvent(KubeletWatcher::Event event, const std::string& name);

  // The rest runs on the manager's thread only.
  void DoApply(const std::vector<std::shared_ptr<const ResourceBackend>>& backends);
  void DoSetGpuHealth(const std::string& uuid, bool healthy);
  void ApplyHealth(Entry& entry);
  std::map<std::string, bool> HealthFor(const ResourceBackend& backend) const;
  void RestartServer(Entry& entry, const char* reason);
  void AttemptDue(const std::stop_token& stop);
  void Publish();

  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the manager's thread.
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::vector<std::string> start_order_;
  std::map<std::string, bool> gpu_health_;

  std::atomic<bool> all_registered_{true};
  std::atomic<uint64_t> registrations_{0};
  std::atomic<uint64_t> registration_failures_{0};
  std::atomic<uint64_t> kubelet_restarts_{0};
  std::atomic<uint64_t> server_restarts_{0};

  std::unique_ptr<KubeletWatcher> watcher_;
  std::jthread thread_;
};

}  // namespace gdp::plugin
