#include "src/mps/agent.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace gdp::mps {
namespace {

using json = nlohmann::json;

json SpecJson(const GpuSpec& g) {
  return {{"index", g.index},
          {"uuid", g.uuid},
          {"pinnedMemoryLimitMiB", g.pinned_memory_limit_mib},
          {"activeThreadPercentage", g.active_thread_percentage}};
}

absl::StatusOr<GpuSpec> SpecOf(const json& j) {
  if (!j.is_object() || !j.contains("uuid") || !j["uuid"].is_string()) {
    return absl::InvalidArgumentError("a GPU entry has no uuid string");
  }
  GpuSpec g;
  g.uuid = j["uuid"].get<std::string>();
  g.index = j.value("index", 0U);
  g.pinned_memory_limit_mib = j.value("pinnedMemoryLimitMiB", uint64_t{0});
  g.active_thread_percentage = j.value("activeThreadPercentage", 0U);
  return g;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Join(const std::string& root, const char* name) { return root + "/" + name; }

}  // namespace

std::string EncodeDesired(const std::vector<GpuSpec>& gpus) {
  json list = json::array();
  for (const GpuSpec& g : gpus) list.push_back(SpecJson(g));
  return json{{"gpus", list}}.dump(2) + "\n";
}

absl::StatusOr<std::vector<GpuSpec>> DecodeDesired(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("gpus") || !j["gpus"].is_array()) {
    return absl::InvalidArgumentError("not a JSON object with a \"gpus\" list");
  }
  std::vector<GpuSpec> out;
  for (const json& e : j["gpus"]) {
    auto g = SpecOf(e);
    if (!g.ok()) return g.status();
    out.push_back(*g);
  }
  return out;
}

std::string EncodeStatus(const AgentStatus& status) {
  json list = json::array();
  for (const GpuHealth& h : status.gpus) {
    json e = SpecJson(h.gpu);
    e["healthy"] = h.healthy;
    if (!h.healthy) e["reason"] = std::string(h.status.message());
    list.push_back(std::move(e));
  }
  return json{{"writtenUnixMs", status.written_unix_ms}, {"gpus", list}}.dump(2) + "\n";
}

absl::StatusOr<AgentStatus> DecodeStatus(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("gpus") || !j["gpus"].is_array()) {
    return absl::InvalidArgumentError("not a JSON object with a \"gpus\" list");
  }
  AgentStatus s;
  s.written_unix_ms = j.value("writtenUnixMs", int64_t{0});
  for (const json& e : j["gpus"]) {
    auto g = SpecOf(e);
    if (!g.ok()) return g.status();
    GpuHealth h;
    h.gpu = *g;
    h.healthy = e.value("healthy", false);
    if (!h.healthy) h.status = absl::UnavailableError(e.value("reason", std::string("unhealthy")));
    s.gpus.push_back(std::move(h));
  }
  return s;
}

// --- Agent --------------------------------------------------------------------

Agent::Agent(std::string root, SupervisorOptions options, const FileSystem& fs)
    : root_(std::move(root)),
      fs_(fs),
      supervisor_(
          std::move(options), [](const GpuHealth&) {}, PosixOs::Get(), fs) {}

void Agent::Tick() {
  absl::StatusOr<std::string> desired = fs_.ReadFile(Join(root_, kDesiredFile));
  if (desired.ok() && *desired != applied_) {
    absl::StatusOr<std::vector<GpuSpec>> gpus = DecodeDesired(*desired);
    if (!gpus.ok()) {
      log::Warn("ignoring the plugin's MPS list; the daemons keep their last one",
                {{"file", Join(root_, kDesiredFile)}, {"error", gpus.status().message()}});
    } else {
      log::Info("applying the plugin's MPS list", {{"gpus", gpus->size()}});
      if (absl::Status s = supervisor_.Apply(*gpus); !s.ok()) {
        log::Warn("MPS is not up on every listed GPU yet", {{"error", s.message()}});
      }
    }
    applied_ = *desired;  // a bad file is not retried until it changes
    WriteStatus(/*force=*/true);
    return;
  }
  WriteStatus(/*force=*/false);
}

void Agent::WriteStatus(bool force) {
  AgentStatus s;
  s.gpus = supervisor_.Health();
  AgentStatus unstamped = s;
  const std::string body = EncodeStatus(unstamped);
  const auto now = std::chrono::steady_clock::now();
  if (!force && body == last_status_ && now - last_write_ < kHeartbeat) return;
  s.written_unix_ms = NowUnixMs();
  if (absl::Status st = fs_.WriteFileAtomic(Join(root_, kStatusFile), EncodeStatus(s)); !st.ok()) {
    log::Warn("cannot write the MPS status for the plugin", {{"error", st.message()}});
    return;
  }
  last_status_ = body;
  last_write_ = now;
}

void Agent::Stop() {
  supervisor_.Stop();
  AgentStatus s;
  s.written_unix_ms = NowUnixMs();
  (void)fs_.WriteFileAtomic(Join(root_, kStatusFile), EncodeStatus(s));
}

// --- AgentClient --------------------------------------------------------------

AgentClient::AgentClient(std::string root, HealthCallback on_health, const FileSystem& fs,
                         std::chrono::milliseconds poll, std::chrono::milliseconds stale_after)
    : root_(std::move(root)),
      on_health_(std::move(on_health)),
      fs_(fs),
      poll_(poll),
      stale_after_(stale_after) {}

AgentClient::~AgentClient() { Detach(); }

absl::Status AgentClient::Apply(const std::vector<GpuSpec>& gpus) {
  if (absl::Status s = fs_.WriteFileAtomic(Join(root_, kDesiredFile), EncodeDesired(gpus));
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot hand the MPS list to the MPS agent: ",
                                               s.message(), "; mount sharing.mps.root read-write"));
  }
  std::lock_guard lock(mu_);
  wanted_ = gpus;
  // GPUs that left the list get no further reports.
  for (auto it = reported_.begin(); it != reported_.end();) {
    const bool kept = std::any_of(gpus.begin(), gpus.end(),
                                  [&](const GpuSpec& g) { return g.uuid == it->first; });
    it = kept ? std::next(it) : reported_.erase(it);
  }
  Poll();
  if (!watcher_.joinable()) {
    watcher_ = std::jthread([this](const std::stop_token& stop) { Watch(stop); });
  }
  return absl::OkStatus();
}

void AgentClient::Stop() {
  if (absl::Status s = fs_.WriteFileAtomic(Join(root_, kDesiredFile), EncodeDesired({})); !s.ok()) {
    log::Warn("cannot tell the MPS agent to quit its daemons", {{"error", s.message()}});
  }
  Detach();
  std::lock_guard lock(mu_);
  wanted_.clear();
  reported_.clear();
}

void AgentClient::Detach() {
  if (!watcher_.joinable()) return;
  watcher_.request_stop();
  wake_.notify_all();
  watcher_.join();
}

std::vector<GpuHealth> AgentClient::Health() const {
  std::lock_guard lock(mu_);
  std::vector<GpuHealth> out;
  for (const auto& [uuid, h] : reported_) out.push_back(h);
  return out;
}

void AgentClient::Watch(const std::stop_token& stop) {
  std::unique_lock lock(mu_);
  while (!stop.stop_requested()) {
    wake_.wait_for(lock, stop, poll_, [] { return false; });
    if (!stop.stop_requested()) Poll();
  }
}

void AgentClient::Poll() {
  absl::StatusOr<AgentStatus> status = absl::NotFoundError("no status yet");
  if (absl::StatusOr<std::string> text = fs_.ReadFile(Join(root_, kStatusFile)); text.ok()) {
    status = DecodeStatus(*text);
  }
  const int64_t age_ms = status.ok() ? NowUnixMs() - status->written_unix_ms : 0;
  for (const GpuSpec& want : wanted_) {
    GpuHealth h;
    h.gpu = want;
    const GpuHealth* found = nullptr;
    if (status.ok()) {
      for (const GpuHealth& g : status->gpus) {
        if (g.gpu == want) found = &g;
      }
    }
    if (!status.ok() || found == nullptr) {
      h.status = absl::UnavailableError(absl::StrCat(
          "waiting for the MPS agent (gpu-device-plugin mps-agent, the chart's MPS DaemonSet) to "
          "start the daemon of GPU ",
          want.index, " (", want.uuid, ") with its limits; is it running on this node?"));
    } else if (age_ms > stale_after_.count()) {
      h.status = absl::UnavailableError(
          absl::StrCat("the MPS agent has not reported for ", age_ms / 1000,
                       " s; is the chart's MPS DaemonSet running on this node?"));
    } else {
      h = *found;
    }
    auto it = reported_.find(want.uuid);
    const bool changed = it == reported_.end() || it->second.healthy != h.healthy ||
                         it->second.status.message() != h.status.message() ||
                         !(it->second.gpu == h.gpu);
    if (!changed) continue;
    reported_[want.uuid] = h;
    on_health_(h);
  }
}

}  // namespace gdp::mps
