// MPS control daemons that outlive the plugin. A daemon started by the plugin
// is a child of the plugin's container and ends with it, taking the MPS
// server of every running client with it. With sharing.mps.agent, the
// daemons run in `gpu-device-plugin mps-agent` instead, a DaemonSet of its
// own (the chart's), and the two talk through two files in the MPS root:
//
//   <root>/desired.json  the plugin's: the GPUs to share and their limits
//                        (written atomically by AgentClient::Apply/Stop)
//   <root>/status.json   the agent's: each GPU's daemon health, rewritten when
//                        it changes and at least every kHeartbeat
//
// The agent (Agent::Tick, once a second) gives the desired list to its
// Supervisor, which leaves daemons whose limits are unchanged, restarts those
// whose limits changed (or whose daemon holds other limits than it was given:
// checked each health round, not trusted), and quits those of GPUs no longer
// listed. A plugin that restarts writes the same list: nothing changes, and
// no client loses its server. The plugin's AgentClient reports each GPU as
// the agent's status says, Unhealthy until the agent has started it, and
// every GPU Unhealthy when the status is older than `stale_after`.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/mps/controller.h"
#include "src/mps/supervisor.h"

namespace gdp::mps {

inline constexpr char kDesiredFile[] = "desired.json";
inline constexpr char kStatusFile[] = "status.json";
inline constexpr std::chrono::seconds kHeartbeat{10};

std::string EncodeDesired(const std::vector<GpuSpec>& gpus);
absl::StatusOr<std::vector<GpuSpec>> DecodeDesired(std::string_view text);

struct AgentStatus {
  int64_t written_unix_ms = 0;
  std::vector<GpuHealth> gpus;
};
std::string EncodeStatus(const AgentStatus& status);
absl::StatusOr<AgentStatus> DecodeStatus(std::string_view text);

// The agent's side: one Tick() a second from its main loop (not thread-safe;
// one owner).
class Agent {
 public:
  Agent(std::string root, SupervisorOptions options, const FileSystem& fs);
  // Reads the desired list and applies it when it changed; writes the status
  // when it changed or the heartbeat is due. Errors are logged, never fatal.
  void Tick();
  // Quits every daemon (the agent's pod is going away: they would end with it).
  void Stop();

 private:
  void WriteStatus(bool force);

  const std::string root_;
  const FileSystem& fs_;
  Supervisor supervisor_;
  std::string applied_;  // the desired file's text last applied
  std::string last_status_;
  std::chrono::steady_clock::time_point last_write_;
};

// The plugin's side.
class AgentClient : public Controller {
 public:
  AgentClient(std::string root, HealthCallback on_health, const FileSystem& fs,
              std::chrono::milliseconds poll = std::chrono::milliseconds(1000),
              std::chrono::milliseconds stale_after = std::chrono::seconds(30));
  ~AgentClient() override;
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Writes the desired list; health follows from the agent's status.
  absl::Status Apply(const std::vector<GpuSpec>& gpus) override;
  // Writes an empty list (the agent quits every daemon) and stops watching.
  void Stop() override;
  // Stops watching; the daemons keep running under the agent.
  void Detach() override;
  std::vector<GpuHealth> Health() const override;

 private:
  void Watch(const std::stop_token& stop);
  void Poll();  // needs mu_

  const std::string root_;
  const HealthCallback on_health_;
  const FileSystem& fs_;
  const std::chrono::milliseconds poll_;
  const std::chrono::milliseconds stale_after_;

  mutable std::mutex mu_;
  std::vector<GpuSpec> wanted_;                // guarded by mu_
  std::map<std::string, GpuHealth> reported_;  // guarded by mu_: the last report per UUID
  std::condition_variable_any wake_;
  std::jthread watcher_;
};

}  // namespace gdp::mps
