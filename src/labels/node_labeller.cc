#include "src/labels/node_labeller.h"

#include <ctime>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/common/backoff.h"
#include "src/common/log.h"

namespace gdp::labels {

namespace {

using Clock = std::chrono::steady_clock;

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Errors worth retrying: the API server is away, overloaded or slow.
bool Transient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s) ||
         absl::IsUnknown(s) || absl::IsInternal(s);
}

}  // namespace

LabellerOptions OptionsFromConfig(const config::LabelsConfig& config,
                                  const std::string& node_name) {
  LabellerOptions o;
  o.node_name = node_name;
  o.nfd_feature_file = config.nfd_feature_file;
  o.events = config.events;
  o.resync_interval = config.resync_interval;
  return o;
}

NodeLabeller::NodeLabeller(kube::ApiClient* client, const FileSystem& fs, LabellerOptions options)
    : client_(client), fs_(fs), options_(std::move(options)) {}

NodeLabeller::~NodeLabeller() { Stop(); }

void NodeLabeller::Start() {
  if (thread_.joinable()) return;
  if (!options_.machine_file.empty()) {
    if (absl::StatusOr<std::string> m = fs_.ReadFile(options_.machine_file); m.ok()) {
      machine_ = std::string(absl::StripAsciiWhitespace(*m));
    }
  }
  log::Info("node labeller started",
            {{"node", options_.node_name},
             {"target", options_.nfd_feature_file.empty() ? std::string("node object")
                                                          : options_.nfd_feature_file},
             {"events", options_.events}});
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

void NodeLabeller::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  cv_.notify_all();
  thread_.join();
  thread_ = std::jthread();
}

void NodeLabeller::SetInventory(std::shared_ptr<const nvml::Inventory> inventory) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inventory_ = std::move(inventory);
    ++generation_;
  }
  cv_.notify_all();
}

void NodeLabeller::SetConfig(std::shared_ptr<const config::Config> config) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    config_ = std::move(config);
    ++generation_;
  }
  cv_.notify_all();
}

void NodeLabeller::OnHealthChanged(const health::HealthEvent& event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (event.healthy) {
      unhealthy_.erase(event.uuid);
    } else {
      unhealthy_.insert(event.uuid);
    }
    ++generation_;
    if (options_.events && client_ != nullptr) {
      std::string gpu = event.uuid;
      if (inventory_ != nullptr) {
        if (const nvml::Gpu* g = inventory_->FindByUuid(event.uuid); g != nullptr) {
          gpu = absl::StrCat("GPU ", g->index, " (", g->uuid, ", ", g->name, ")");
        }
      }
      PendingEvent e;
      e.when = std::chrono::system_clock::now();
      if (event.healthy) {
        e = {"GpuRecovered", "Normal", absl::StrCat(gpu, " is healthy again: ", event.reason),
             e.when};
      } else if (absl::StartsWith(event.reason, "XID ")) {
        e = {"GpuXid", "Warning", absl::StrCat(gpu, " is unhealthy: ", event.reason), e.when};
      } else if (absl::StrContains(absl::AsciiStrToLower(event.reason), "lost")) {
        e = {"GpuLost", "Warning", absl::StrCat(gpu, " is lost: ", event.reason), e.when};
      } else {
        e = {"GpuUnhealthy", "Warning", absl::StrCat(gpu, " is unhealthy: ", event.reason), e.when};
      }
      if (events_.size() >= options_.max_queued_events) {
        events_.pop_front();
        ++stats_.events_dropped;
      }
      events_.push_back(std::move(e));
    }
  }
  cv_.notify_all();
}

void NodeLabeller::RecordEvent(std::string reason, std::string type, std::string message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!options_.events || client_ == nullptr) return;
    if (events_.size() >= options_.max_queued_events) {
      events_.pop_front();
      ++stats_.events_dropped;
    }
    events_.push_back(PendingEvent{std::move(reason), std::move(type), std::move(message),
                                   std::chrono::system_clock::now()});
  }
  cv_.notify_all();
}

void NodeLabeller::SetUnhealthy(std::set<std::string> uuids) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    unhealthy_ = std::move(uuids);
    ++generation_;
  }
  cv_.notify_all();
}

Labels NodeLabeller::Applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

LabellerStats NodeLabeller::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

nlohmann::json NodeLabeller::MakeEvent(const std::string& node, const std::string& ns,
                                       const std::string& reason, const std::string& type,
                                       const std::string& message,
                                       std::chrono::system_clock::time_point when) {
  const auto nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  const std::string ts = Rfc3339(when);
  return {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", absl::StrCat(node, ".", absl::Hex(nanos))}, {"namespace", ns}}},
      // The kubelet's own node events use the node's name as its UID, and
      // `kubectl describe node` looks for both.
      {"involvedObject", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node}, {"uid", node}}},
      {"reason", reason},
      {"message", message},
      {"type", type},
      {"source", {{"component", kFieldManager}, {"host", node}}},
      {"reportingComponent", kFieldManager},
      {"reportingInstance", node},
      {"firstTimestamp", ts},
      {"lastTimestamp", ts},
      {"count", 1},
  };
}

absl::Status NodeLabeller::ApplyLabels(const Labels& labels) {
  if (!options_.nfd_feature_file.empty()) {
    return fs_.WriteFileAtomic(options_.nfd_feature_file, FeatureFile(labels));
  }
  nlohmann::json body = {{"apiVersion", "v1"},
                         {"kind", "Node"},
                         {"metadata", {{"name", options_.node_name}, {"labels", labels}}}};
  kube::PatchOptions po;
  po.field_manager = kFieldManager;
  po.force = true;
  return client_
      ->Patch(absl::StrCat("/api/v1/nodes/", options_.node_name), kube::PatchType::kApply, body, po)
      .status();
}

bool NodeLabeller::PostFront() {
  PendingEvent e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (events_.empty()) return true;
    e = events_.front();
  }
  nlohmann::json event =
      MakeEvent(options_.node_name, options_.events_namespace, e.reason, e.type, e.message, e.when);
  absl::Status s =
      client_
          ->Post(absl::StrCat("/api/v1/namespaces/", options_.events_namespace, "/events"), event)
          .status();
  std::lock_guard<std::mutex> lock(mu_);
  if (s.ok()) {
    ++stats_.events_posted;
  } else {
    ++stats_.event_failures;
    if (Transient(s)) {
      log::Warn("cannot record a node event; will retry",
                {{"reason", e.reason}, {"error", s.message()}});
      return false;
    }
    log::Error("node event refused; dropping it", {{"reason", e.reason}, {"error", s.message()}});
    ++stats_.events_dropped;
  }
  // The head may have been pushed out by a full queue meanwhile; drop it only
  // if it is still the one just handled.
  if (!events_.empty() && events_.front().when == e.when && events_.front().reason == e.reason) {
    events_.pop_front();
  }
  return true;
}

void NodeLabeller::Run(const std::stop_token& stop) {
  Backoff label_backoff(options_.backoff_initial, options_.backoff_max);
  Backoff event_backoff(options_.backoff_initial, options_.backoff_max);
  uint64_t applied_generation = 0;
  bool have_applied = false;
  Labels last;
  Clock::time_point next_resync = Clock::now();
  Clock::time_point label_retry_at = Clock::now();
  Clock::time_point event_retry_at = Clock::now();

  while (!stop.stop_requested()) {
    // 1. Labels.
    std::shared_ptr<const nvml::Inventory> inventory;
    std::shared_ptr<const config::Config> config;
    std::set<std::string> unhealthy;
    uint64_t generation = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      inventory = inventory_;
      config = config_;
      unhealthy = unhealthy_;
      generation = generation_;
    }
    const Clock::time_point now = Clock::now();
    const bool due = !have_applied || generation != applied_generation || now >= next_resync;
    if (inventory != nullptr && config != nullptr && due && now >= label_retry_at) {
      std::string pci_class;
      if (!inventory->gpus.empty() && !options_.sysfs_root.empty()) {
        absl::StatusOr<std::string> c =
            fs_.ReadFile(absl::StrCat(options_.sysfs_root, "/bus/pci/devices/",
                                      inventory->gpus.front().pci_bus_id, "/class"));
        if (c.ok()) pci_class = *c;
      }
      Labels desired =
          ComputeLabels(*inventory, *config, NodeFacts{machine_, unhealthy, pci_class});
      absl::Status s = ApplyLabels(desired);
      std::lock_guard<std::mutex> lock(mu_);
      if (s.ok()) {
        ++stats_.applies;
        if (!have_applied || desired != last) {
          log::Info("node labels applied", {{"node", options_.node_name},
                                            {"labels", desired.size()},
                                            {"attempts", label_backoff.attempts() + 1}});
        }
        applied_ = desired;
        last = std::move(desired);
        have_applied = true;
        applied_generation = generation;
        label_backoff.Reset();
        next_resync = Clock::now() + options_.resync_interval;
      } else {
        ++stats_.apply_failures;
        const auto delay = label_backoff.Next();
        log::Warn(
            "cannot apply node labels; retrying",
            {{"node", options_.node_name}, {"error", s.message()}, {"retry_in_ms", delay.count()}});
        label_retry_at = Clock::now() + delay;
      }
    }

    // 2. Events.
    while (!stop.stop_requested() && Clock::now() >= event_retry_at) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (events_.empty()) break;
      }
      if (PostFront()) {
        event_backoff.Reset();
      } else {
        event_retry_at = Clock::now() + event_backoff.Next();
      }
    }

    // 3. Sleep until an input changes, an event arrives, or a deadline.
    std::unique_lock<std::mutex> lock(mu_);
    const bool can_label = inventory_ != nullptr && config_ != nullptr;
    const bool labels_pending = can_label && (!have_applied || generation_ != applied_generation);
    // Without inputs only a change wakes the thread; otherwise the next apply is
    // due now (pending) or at the resync, and never before the backoff allows.
    Clock::time_point wake = Clock::now() + std::chrono::hours(24);
    if (can_label) wake = std::max(labels_pending ? Clock::now() : next_resync, label_retry_at);
    if (!events_.empty()) wake = std::min(wake, event_retry_at);
    const uint64_t seen = generation_;
    const size_t queued = events_.size();
    cv_.wait_until(lock, stop, wake, [&] {
      // A change counts only once the backoff allows acting on it.
      const bool input = generation_ != seen && Clock::now() >= label_retry_at;
      const bool event = events_.size() > queued && Clock::now() >= event_retry_at;
      return input || event;
    });
  }
}

}  // namespace gdp::labels
