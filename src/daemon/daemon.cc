#include "src/daemon/daemon.h"

#include <chrono>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/backoff.h"
#include "src/common/log.h"
#include "src/config/config_watcher.h"
#include "src/health/health_monitor.h"
#include "src/health/health_options.h"
#include "src/metrics/http_server.h"
#include "src/nvml/dl_nvml.h"
#include "src/nvml/inventory.h"
#include "src/plugin/plugin_manager.h"
#include "src/resources/resources.h"

namespace gdp::daemon {
namespace {

using std::chrono::milliseconds;

// nvidia-smi topo -m style names.
const char* PathName(nvml::PathKind p) {
  switch (p) {
    case nvml::PathKind::kSelf:
      return "X";
    case nvml::PathKind::kNvLink:
      return "NV";
    case nvml::PathKind::kPcieSwitch:
      return "PIX";
    case nvml::PathKind::kPcieMultiSwitch:
      return "PXB";
    case nvml::PathKind::kHostBridge:
      return "PHB";
    case nvml::PathKind::kNumaNode:
      return "NODE";
    case nvml::PathKind::kSystem:
      return "SYS";
  }
  return "SYS";
}

// Forwards GPU health changes from the monitor's thread to the plugin manager
// (which only queues them, so the monitor never waits on gRPC).
class HealthBridge final : public health::HealthListener {
 public:
  explicit HealthBridge(plugin::PluginManager& plugins) : plugins_(plugins) {}
  void OnHealthChanged(const health::HealthEvent& event) override {
    plugins_.SetGpuHealth(event.uuid, event.healthy);
  }

 private:
  plugin::PluginManager& plugins_;
};

// Settings that select what the process is bound to; a reload that changes
// them is logged and they take effect at the next start.
std::vector<std::string> RestartOnlyChanges(const config::Config& a, const config::Config& b) {
  std::vector<std::string> changed;
  if (a.driver_root != b.driver_root) changed.emplace_back("flags.nvidiaDriverRoot");
  if (a.container_driver_root != b.container_driver_root) {
    changed.emplace_back("flags.containerDriverRoot");
  }
  if (a.nvml_library != b.nvml_library) changed.emplace_back("flags.nvmlLibrary");
  if (a.fail_on_init_error != b.fail_on_init_error) changed.emplace_back("flags.failOnInitError");
  if (a.plugin_directory != b.plugin_directory)
    changed.emplace_back("flags.plugin.pluginDirectory");
  if (a.metrics_bind_address != b.metrics_bind_address) changed.emplace_back("metrics.bindAddress");
  if (a.metrics_port != b.metrics_port) changed.emplace_back("metrics.port");
  return changed;
}

bool SameHealth(const config::HealthConfig& a, const config::HealthConfig& b) {
  return a.enabled == b.enabled && a.ignored_xids == b.ignored_xids &&
         a.recovery_quiet_period == b.recovery_quiet_period && a.probe_interval == b.probe_interval;
}

// The inventory as JSON, for operators (GET /inventory) and tests.
std::string InventoryJson(const nvml::Inventory& inv) {
  nlohmann::json gpus = nlohmann::json::array();
  for (const nvml::Gpu& g : inv.gpus) {
    nlohmann::json migs = nlohmann::json::array();
    for (const nvml::MigDevice& m : g.mig_devices) {
      migs.push_back({{"index", m.index},
                      {"uuid", m.uuid},
                      {"gpuInstanceId", m.gpu_instance_id},
                      {"computeInstanceId", m.compute_instance_id},
                      {"profile", m.profile},
                      {"memoryBytes", m.memory_bytes},
                      {"multiprocessors", m.multiprocessor_count}});
    }
    gpus.push_back(
        {{"index", g.index},
         {"minor", g.minor},
         {"uuid", g.uuid},
         {"name", g.name},
         {"brand", g.brand},
         {"architecture", g.architecture},
         {"computeCapability", absl::StrCat(g.cuda_compute_major, ".", g.cuda_compute_minor)},
         {"memoryBytes", g.memory_bytes},
         {"pciBusId", g.pci_bus_id},
         {"numaNode", g.numa_node},
         {"migEnabled", g.mig_enabled},
         {"migDevices", migs}});
  }
  nlohmann::json links = nlohmann::json::array();
  for (const auto& row : inv.links) {
    nlohmann::json r = nlohmann::json::array();
    for (const nvml::Link& l : row)
      r.push_back(l.nvlinks > 0 ? absl::StrCat("NV", l.nvlinks) : PathName(l.path));
    links.push_back(r);
  }
  return nlohmann::json{{"driverVersion", inv.driver_version},
                        {"nvmlVersion", inv.nvml_version},
                        {"cudaDriverVersion", inv.CudaDriverVersionString()},
                        {"gpus", gpus},
                        {"links", links}}
             .dump(2) +
         "\n";
}

void ApplyLogSettings(const config::Config& c) {
  log::Level level = log::Level::kInfo;
  if (log::ParseLevel(c.log_level, &level)) log::SetLevel(level);
  log::SetFormat(c.log_format == "json" ? log::Format::kJson : log::Format::kText);
}

}  // namespace

struct Daemon::Components {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<metrics::HttpServer> http;
  std::unique_ptr<nvml::DlNvml> nvml;
  bool nvml_up = false;
  std::shared_ptr<const nvml::Inventory> inventory;
  std::unique_ptr<plugin::PluginManager> plugins;
  std::unique_ptr<HealthBridge> bridge;
  std::unique_ptr<health::HealthMonitor> health;
  std::unique_ptr<config::ConfigWatcher> watcher;
  std::string inventory_json ABSL_GUARDED_BY(mu);  // empty until NVML is up

  // Why the daemon is not ready; read by /readyz on an HTTP worker.
  std::mutex mu;
  std::string not_ready ABSL_GUARDED_BY(mu) = "starting";

  void SetNotReady(std::string reason) {
    std::lock_guard<std::mutex> lock(mu);
    not_ready = std::move(reason);
  }
  std::string NotReady() {
    std::lock_guard<std::mutex> lock(mu);
    if (!not_ready.empty()) return not_ready;
    if (plugins != nullptr && !plugins->AllRegistered()) {
      return "not every resource is registered with the kubelet yet";
    }
    return "";
  }
};

Daemon::Daemon(DaemonOptions options)
    : options_(std::move(options)), c_(std::make_unique<Components>()) {}

Daemon::~Daemon() { StopAll(); }

void Daemon::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

void Daemon::RequestReload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reload_requested_ = true;
  }
  cv_.notify_all();
}

int Daemon::Run() {
  // 1. Configuration.
  absl::StatusOr<config::Config> loaded =
      config::LoadConfig(*options_.fs, options_.config_file, options_.overrides);
  if (!loaded.ok()) {
    log::Error("invalid configuration; fix the errors below and start again",
               {{"config_file", options_.config_file.empty() ? "(none)" : options_.config_file},
                {"errors", loaded.status().message()}});
    return kExitBadConfig;
  }
  c_->config = std::make_shared<const config::Config>(*std::move(loaded));
  const config::Config& cfg = *c_->config;
  ApplyLogSettings(cfg);
  log::Info("starting gpu-device-plugin",
            {{"config_file", options_.config_file.empty() ? "(none)" : options_.config_file},
             {"driver_root", cfg.driver_root},
             {"plugin_directory", cfg.plugin_directory},
             {"resource", cfg.resource_name}});

  // 2. HTTP: liveness and readiness first, so a failing start is visible.
  c_->http = std::make_unique<metrics::HttpServer>(cfg.metrics_bind_address, cfg.metrics_port);
  c_->http->Handle("/healthz", [] { return metrics::HttpResponse{200, "text/plain", "ok\n"}; });
  Components* comps = c_.get();
  c_->http->Handle("/readyz", [comps] {
    const std::string reason = comps->NotReady();
    if (reason.empty()) return metrics::HttpResponse{200, "text/plain", "ready\n"};
    return metrics::HttpResponse{503, "text/plain", "not ready: " + reason + "\n"};
  });
  c_->http->Handle("/inventory", [comps] {
    std::lock_guard<std::mutex> lock(comps->mu);
    if (comps->inventory_json.empty()) {
      return metrics::HttpResponse{503, "text/plain", "NVML is not initialised yet\n"};
    }
    return metrics::HttpResponse{200, "application/json", comps->inventory_json};
  });
  if (absl::Status s = c_->http->Start(); !s.ok()) {
    log::Error("cannot serve the HTTP endpoint", {{"error", s.message()}});
    return kExitServeFailed;
  }

  // 3. The plugin manager watches the kubelet from the start; it has nothing
  // to serve until NVML is up.
  plugin::PluginManager::Options pm;
  pm.plugin_dir = cfg.plugin_directory;
  c_->plugins = std::make_unique<plugin::PluginManager>(pm);
  if (absl::Status s = c_->plugins->Start(); !s.ok()) {
    log::Error("cannot watch the kubelet's plugin directory",
               {{"plugin_directory", cfg.plugin_directory}, {"error", s.message()}});
    StopAll();
    return kExitServeFailed;
  }

  // 4. NVML, retried with backoff when failOnInitError is false.
  Backoff nvml_backoff(milliseconds(1000), milliseconds(60000));
  auto next_nvml_try = std::chrono::steady_clock::now();
  if (!StartNvml()) {
    if (cfg.fail_on_init_error || exit_code_ != kExitOk) {
      StopAll();
      return exit_code_ != kExitOk ? exit_code_ : kExitInitFailed;
    }
    next_nvml_try += nvml_backoff.Next();
  }

  // 5. Reloads: on file change (the watcher) and on SIGHUP (RequestReload).
  if (!options_.config_file.empty()) {
    config::ConfigWatcher::Options wo;
    wo.config_file = options_.config_file;
    wo.overrides = options_.overrides;
    wo.handle_sighup = false;  // main.cc's signal thread calls RequestReload()
    c_->watcher = std::make_unique<config::ConfigWatcher>(
        *options_.fs, wo, c_->config, [this](std::shared_ptr<const config::Config> next) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            pending_config_ = std::move(next);
          }
          cv_.notify_all();
        });
    if (absl::Status s = c_->watcher->Start(); !s.ok()) {
      log::Warn("config file changes will not be noticed; SIGHUP still reloads",
                {{"error", s.message()}});
    }
  }

  // 6. The event loop.
  for (;;) {
    std::shared_ptr<const config::Config> next;
    bool reload = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [this] { return stop_requested_ || reload_requested_ || pending_config_; };
      if (c_->nvml_up) {
        cv_.wait(lock, ready);
      } else {
        cv_.wait_until(lock, next_nvml_try, ready);
      }
      if (stop_requested_) break;
      reload = std::exchange(reload_requested_, false);
      next = std::move(pending_config_);
      pending_config_.reset();
    }
    if (reload) {
      if (c_->watcher != nullptr) {
        log::Info("SIGHUP: reloading the configuration", {{"config_file", options_.config_file}});
        c_->watcher->Trigger();
      } else {
        log::Info("SIGHUP ignored: no config file was given");
      }
    }
    if (next != nullptr) ApplyConfig(std::move(next));
    if (!c_->nvml_up && std::chrono::steady_clock::now() >= next_nvml_try) {
      if (!StartNvml()) {
        if (exit_code_ != kExitOk) break;
        next_nvml_try = std::chrono::steady_clock::now() + nvml_backoff.Next();
      }
    }
  }
  log::Info("stopping");
  StopAll();
  log::Info("stopped");
  return exit_code_;
}

bool Daemon::StartNvml() {
  const config::Config& cfg = *c_->config;
  const std::string root = cfg.EffectiveDriverRoot();
  auto fail = [&](const absl::Status& s) {
    c_->SetNotReady(absl::StrCat("NVML: ", s.message()));
    if (cfg.fail_on_init_error) {
      log::Error("cannot initialise NVML", {{"error", s.message()}});
    } else {
      log::Warn("cannot initialise NVML; running without devices and retrying",
                {{"error", s.message()}});
    }
    return false;
  };

  if (c_->nvml == nullptr) {
    absl::StatusOr<std::string> path = nvml::FindNvmlLibrary(*options_.fs, root, cfg.nvml_library);
    if (!path.ok()) return fail(path.status());
    absl::StatusOr<std::unique_ptr<nvml::DlNvml>> lib = nvml::DlNvml::Open(*path);
    if (!lib.ok()) return fail(lib.status());
    c_->nvml = *std::move(lib);
  }
  if (absl::Status s = nvml::NvmlStatus(*c_->nvml, c_->nvml->Init(), "nvmlInit"); !s.ok()) {
    return fail(absl::Status(
        s.code(), absl::StrCat(s.message(),
                               "; is the NVIDIA driver loaded on the host, and does the container "
                               "see its device nodes (driver root ",
                               root, ")?")));
  }
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> inventory =
      nvml::DiscoverInventory(*c_->nvml, nvml::DiscoveryOptions{});
  if (!inventory.ok()) {
    c_->nvml->Shutdown();
    return fail(inventory.status());
  }
  c_->inventory = *std::move(inventory);
  const nvml::Inventory& inv = *c_->inventory;
  if (absl::Status s = nvml::CheckMinimumVersions(inv); !s.ok()) {
    if (cfg.require_minimum_versions) {
      log::Error("unsupported driver",
                 {{"error", s.message()},
                  {"hint", "set flags.requireMinimumVersions: false to run anyway"}});
      c_->SetNotReady(std::string(s.message()));
      exit_code_ = kExitInitFailed;
      return false;
    }
    log::Warn("driver older than supported; continuing because requireMinimumVersions is false",
              {{"error", s.message()}});
  }
  c_->nvml_up = true;
  {
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->inventory_json = InventoryJson(inv);
  }
  log::Info("NVML initialised", {{"driver", inv.driver_version},
                                 {"cuda_driver", inv.CudaDriverVersionString()},
                                 {"gpus", inv.gpus.size()}});
  for (const nvml::Gpu& g : inv.gpus) {
    log::Info("found GPU", {{"index", g.index},
                            {"uuid", g.uuid},
                            {"name", g.name},
                            {"memory_mib", g.memory_bytes >> 20},
                            {"pci_bus_id", g.pci_bus_id},
                            {"numa_node", g.numa_node},
                            {"mig", g.mig_enabled}});
  }

  // Resources, then health (so the first health change has a device to reach).
  ApplyConfig(nullptr);
  c_->bridge = std::make_unique<HealthBridge>(*c_->plugins);
  c_->health = std::make_unique<health::HealthMonitor>(
      *c_->nvml, inv, health::FromConfig(cfg.health), *c_->bridge, *options_.clock);
  if (absl::Status s = c_->health->Start(); !s.ok()) {
    log::Warn("health monitoring did not start", {{"error", s.message()}});
  }
  return true;
}

// Applies `next` (nullptr: re-apply the current config, e.g. after NVML came up).
void Daemon::ApplyConfig(std::shared_ptr<const config::Config> next) {
  std::shared_ptr<const config::Config> prev = c_->config;
  if (next != nullptr) {
    for (const std::string& field : RestartOnlyChanges(*prev, *next)) {
      log::Warn("config change takes effect at the next restart", {{"field", field}});
    }
    c_->config = std::move(next);
    ApplyLogSettings(*c_->config);
    log::Info("configuration reloaded", {{"config_file", options_.config_file}});
  }
  if (!c_->nvml_up) return;
  const config::Config& cfg = *c_->config;

  absl::StatusOr<std::vector<std::shared_ptr<const plugin::ResourceBackend>>> backends =
      resources::BuildResources(*c_->inventory, cfg, *options_.fs);
  if (!backends.ok()) {
    log::Error("cannot build the resources to advertise; keeping the previous ones",
               {{"error", backends.status().message()}});
    if (next != nullptr) c_->config = prev;
    return;
  }
  std::vector<std::string> names;
  for (const auto& b : *backends) names.push_back(b->ResourceName());
  if (absl::Status s = c_->plugins->Apply(*backends); !s.ok()) {
    log::Error("cannot serve the resources", {{"error", s.message()}});
    return;
  }
  c_->SetNotReady(backends->empty() ? "NVML reports no GPUs on this node" : "");
  log::Info("serving resources", {{"resources", absl::StrJoin(names, ",")}});

  if (next != nullptr && c_->health != nullptr && !SameHealth(prev->health, cfg.health)) {
    c_->health->SetOptions(health::FromConfig(cfg.health));
  }
}

void Daemon::StopAll() {
  if (c_ == nullptr) return;
  if (c_->watcher) c_->watcher->Stop();
  if (c_->health) c_->health->Stop();
  if (c_->plugins) c_->plugins->Stop();
  if (c_->nvml && c_->nvml_up) {
    c_->nvml->Shutdown();
    c_->nvml_up = false;
  }
  if (c_->http) c_->http->Stop();
}

}  // namespace gdp::daemon
