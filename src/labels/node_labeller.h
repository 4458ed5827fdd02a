// NodeLabeller: keeps this node's GPU labels (labels.h) on its Node object and
// records node events for GPU health transitions, so that `kubectl get nodes
// -L nvidia.com/gpu.product` and `kubectl describe node` tell the story.
//
// Labels are applied with server-side apply (PATCH application/apply-patch+yaml
// on /api/v1/nodes/<node>, field manager "gpu-device-plugin", force): the API
// server removes the labels this manager set before and leaves out now, and
// never touches labels other managers own. force takes over a key we set that
// another manager (e.g. a GFD deployed alongside) also set. With
// nfd_feature_file the labels go to that Node Feature Discovery feature file
// instead (written atomically).
//
// Its thread (std::jthread) applies the labels whenever the inputs change
// (inventory, config, GPU health) and again every resync_interval; a failed
// apply is retried with exponential backoff (src/common/backoff.h) while the
// API server is away. Events are queued (at most max_queued_events; the
// oldest are dropped, and counted) and posted from the same thread, so the
// health monitor's thread never waits on HTTP; an event the API server
// refuses for good (403, 422) is logged and dropped, one it cannot take now
// (unreachable, 5xx, 429) is retried with backoff.
//
// Ownership: the ApiClient and FileSystem are not owned and must outlive the
// labeller. Thread-safety: every public function may be called from any
// thread; Start() and Stop() from one owning thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"
#include "src/health/health_tracker.h"
#include "src/kube/api_client.h"
#include "src/labels/labels.h"
#include "src/nvml/inventory.h"

namespace gdp::labels {

inline constexpr const char* kFieldManager = "gpu-device-plugin";

struct LabellerOptions {
  std::string node_name;         // required
  std::string nfd_feature_file;  // non-empty: write this file instead of patching the Node
  bool events = true;            // post node events for health transitions
  std::chrono::milliseconds resync_interval{std::chrono::minutes(5)};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(60)};
  size_t max_queued_events = 64;
  // Read once at Start() for the gpu.machine label; empty or unreadable: no label.
  std::string machine_file = "/sys/class/dmi/id/product_name";
  // Where the first GPU's PCI class is read for gpu.mode
  // (<sysfs_root>/bus/pci/devices/<bus id>/class); unreadable: unknown.
  std::string sysfs_root = "/sys";
  std::string events_namespace = "default";  // where the kubelet records node events too
};

struct LabellerStats {
  uint64_t applies = 0;         // successful label applies (or feature-file writes)
  uint64_t apply_failures = 0;  // failed ones (each retried)
  uint64_t events_posted = 0;
  uint64_t event_failures = 0;  // failed posts (retried or dropped)
  uint64_t events_dropped = 0;  // refused for good, or pushed out of a full queue
};

class NodeLabeller {
 public:
  // `client` may be null only when nothing goes to the API server (a feature
  // file and events off).
  NodeLabeller(kube::ApiClient* client, const FileSystem& fs, LabellerOptions options);
  ~NodeLabeller();
  NodeLabeller(const NodeLabeller&) = delete;
  NodeLabeller& operator=(const NodeLabeller&) = delete;

  void Start();
  // Stops and joins the thread (promptly, even in a backoff or a request's
  // timeout at most). Queued events are dropped. Idempotent.
  void Stop();

  // Inputs. Each wakes the thread when it changes the labels.
  void SetInventory(std::shared_ptr<const nvml::Inventory> inventory);
  void SetConfig(std::shared_ptr<const config::Config> config);
  // A GPU's health changed: updates gpu.unhealthy-count and queues a node
  // event (GpuXid / GpuUnhealthy / GpuLost as Warning, GpuRecovered as Normal).
  void OnHealthChanged(const health::HealthEvent& event);
  // Queues a node event of the daemon's own (a node change, a config the
  // node's label names that does not exist); nothing when events are off.
  void RecordEvent(std::string reason, std::string type, std::string message);
  // Replaces the set of Unhealthy GPUs without recording events (a labeller
  // created while some GPUs are already Unhealthy, e.g. after a reload).
  void SetUnhealthy(std::set<std::string> uuids);

  // The labels last applied successfully (empty before the first).
  Labels Applied() const;
  LabellerStats Stats() const;

  // The Event object for a health transition (exposed for tests).
  static nlohmann::json MakeEvent(const std::string& node, const std::string& ns,
                                  const std::string& reason, const std::string& type,
                                  const std::string& message,
                                  std::chrono::system_clock::time_point when);

 private:
  struct PendingEvent {
    std::string reason, type, message;
    std::chrono::system_clock::time_point when;
  };

  void Run(const std::stop_token& stop);
  absl::Status ApplyLabels(const Labels& labels);
  // Posts the queue's head; false when it should be retried later.
  bool PostFront();

  kube::ApiClient* client_;
  const FileSystem& fs_;
  const LabellerOptions options_;
  std::string machine_;  // read at Start()

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::shared_ptr<const nvml::Inventory> inventory_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const config::Config> config_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unhealthy_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by every input change
  std::deque<PendingEvent> events_ ABSL_GUARDED_BY(mu_);
  Labels applied_ ABSL_GUARDED_BY(mu_);
  LabellerStats stats_ ABSL_GUARDED_BY(mu_);

  std::jthread thread_;
};

// Reads what the labeller needs from the config; node_name empty means the
// labeller must not run (the caller logs why).
LabellerOptions OptionsFromConfig(const config::LabelsConfig& config, const std::string& node_name);

}  // namespace gdp::labels
