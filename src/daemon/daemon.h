// Daemon: owns every component of gpu-device-plugin, starts them in order,
// stops them in reverse, and is the only place that decides the process exits.
//
//   config ─▶ http (/healthz, /readyz) ─▶ NVML (dlopen, init; retried when
//   failOnInitError is false) ─▶ inventory + version checks ─▶ resources ─▶
//   plugin manager (gRPC servers, registration, kubelet watch) ─▶ node labeller
//   (labels and events through the API server, when labels.enabled and the
//   node name is known) ─▶ health monitor ─▶ change watcher ─▶ config watcher
//   (file changes, SIGHUP) ─▶ metrics sampler (/metrics)
//
// A node that changes (docs/lifecycle.md): the change watcher and the health
// monitor report what they notice; the loop waits rescan_settle for more,
// then re-initialises NVML, re-discovers, and applies the difference through
// the same path as a config reload (servers, registrations and streams stay;
// a device that left while a pod holds it stays listed Unhealthy until it is
// released, src/daemon/held_devices.h). When the driver is leaving, NVML and
// every device file are released (MPS daemons stopped) so it can unload; the
// devices stay registered, Unhealthy, /readyz says why, and NVML is tried
// again until the driver is back.
//
// Before anything starts, the doctor's checks (src/doctor) run once and each
// result is logged; they never stop the daemon. GET /allocations serves the
// allocation view (src/daemon/allocations.h) next to /inventory.
//
// Threading: Run() is called on one thread (main) and runs the daemon's event
// loop there; every reaction that changes the set of components (reload, NVML
// retry, re-discovery, driver release, stop) happens on that thread. RequestStop() and
// RequestReload() may be called from any thread (the signal thread). Health changes go straight
// from the monitor's thread to the plugin manager, which is thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/common/clock.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"
#include "src/daemon/node_settings.h"
#include "src/plugin/backend.h"

namespace gdp::nvml {
struct Inventory;
}  // namespace gdp::nvml

namespace gdp::daemon {

struct DaemonOptions {
  std::string config_file;                  // empty: defaults + overrides only
  std::vector<config::Override> overrides;  // flags and environment, highest first
  const FileSystem* fs = &PosixFileSystem::Get();
  Clock* clock = &RealClock::Get();
  // Host paths that are not part of Config (flags of main.cc).
  std::string containerd_config;  // empty: the doctor's search (doctor::KnownContainerdConfigs)
  bool run_doctor = true;         // run and log the doctor's checks at start
  // After a node change is first noticed, how long to wait for more before
  // re-discovering, so a burst (a MIG re-layout is several instance
  // creations) is applied once.
  std::chrono::milliseconds rescan_settle{50};
  // This daemon's binary: a GPU added or removed is first seen by running its
  // `inventory` subcommand (a fresh NVML session in a child process), so the
  // change is advertised before this process's own NVML session is swapped.
  // Empty: the change waits for the swap (up to a second longer).
  std::string discovery_exe;
};

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInitFailed = 1;   // NVML / driver / versions
inline constexpr int kExitBadConfig = 2;    // invalid configuration at start
inline constexpr int kExitServeFailed = 3;  // cannot listen (port taken, plugin dir missing)

class Daemon {
 public:
  explicit Daemon(DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts everything and serves until RequestStop(); returns the exit code.
  int Run();

  // Thread-safe.
  void RequestStop();
  void RequestReload();

 private:
  struct Components;
  enum class Event { kNone, kStop, kReload };

  // Thread-safe: a node change noticed on another thread (the change
  // watcher's, the health monitor's).
  // `new_session`: only a new NVML session shows the change (GPUs added or
  // removed); a MIG re-layout shows in the running one.
  void OnNodeChange(const std::string& reason, bool driver_gone, bool new_session = true);

  // All run on the Run() thread.
  bool StartNvml();
  // Stops what reads NVML while it runs (change watcher, metrics sampler,
  // health thread) and starts it again.
  void StopNvmlUsers();
  void StartNvmlUsers();
  void StartChangeWatcher();
  void StopMetrics();
  // Re-discovers the GPUs and applies the difference: in the running NVML
  // session when it shows the change (a MIG re-layout: nothing stops), else
  // in a new one (the NVML readers stop and start again).
  void Rediscover(const std::string& reason, bool new_session);
  // Makes `found` the inventory (and /inventory's JSON), and logs and records
  // a node event for each difference from the one before; the differences.
  std::vector<std::string> AdoptInventory(std::shared_ptr<const nvml::Inventory> found);
  // Runs options_.discovery_exe's `inventory` (a fresh NVML session in a child)
  // and applies what differs, before this process swaps its own session.
  void AdvertiseFreshDiscovery();
  // Lets go of NVML and every device file so the driver can unload; the
  // devices stay registered, Unhealthy, until NVML comes back.
  // `not_ready` (when not empty) is what /readyz says meanwhile.
  void ReleaseDriver(const std::string& reason, const std::string& not_ready = "");
  // Starts following this node's labels and the named-config ConfigMap
  // (src/daemon/node_settings.h) when the config asks for either.
  void StartNodeSettings();
  // Applies what the node's labels and the ConfigMap say.
  void ApplyDirective(const NodeDirective& directive);
  // Records a node event through the labeller, when there is one.
  void NodeEvent(const std::string& reason, const std::string& type, const std::string& message);
  void StartMetrics();
  // `node_changed`: the inventory changed under the daemon (a device that
  // left while a pod holds it is then kept, Unhealthy).
  void ApplyConfig(std::shared_ptr<const config::Config> next, bool node_changed = false);
  // Runs one MPS control daemon per GPU that `backends` share through MPS
  // (stops them when none is); errors when the control binary is missing.
  absl::Status SyncMps(const config::Config& cfg,
                       const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends);
  // Writes the CDI spec for `backends` when a cdi-* strategy is on; removes
  // ours otherwise.
  absl::Status SyncCdiSpec(
      const config::Config& cfg,
      const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends);
  // Serves `backends` plus the devices that left the node but are still
  // held by pods; false when the plugin manager refused.
  bool ServeWithHeld(const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends,
                     bool log_served, bool node_changed);
  void StopAll();

  DaemonOptions options_;
  std::unique_ptr<Components> c_;
  int exit_code_ = kExitOk;  // set when a fatal condition ends Run()

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool reload_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const config::Config> pending_config_ ABSL_GUARDED_BY(mu_);
  // Node changes noticed and not yet acted on ("" when none); a re-discovery
  // waits until rescan_due_ so a burst is applied once.
  std::string rescan_reason_ ABSL_GUARDED_BY(mu_);
  std::optional<std::chrono::steady_clock::time_point> rescan_due_ ABSL_GUARDED_BY(mu_);
  bool rescan_noticed_ ABSL_GUARDED_BY(mu_) = false;
  bool rescan_new_session_ ABSL_GUARDED_BY(mu_) = false;
  std::string release_reason_ ABSL_GUARDED_BY(mu_);
  std::optional<NodeDirective> pending_directive_ ABSL_GUARDED_BY(mu_);
  // The deploy label says pause: NVML stays released until it says resume.
  // The Run() thread only.
  bool paused_ = false;
};

}  // namespace gdp::daemon
