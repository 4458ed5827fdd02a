#include "src/daemon/daemon.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <shared_mutex>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/cdi/cdi.h"
#include "src/common/backoff.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "src/config/config_watcher.h"
#include "src/daemon/allocations.h"
#include "src/daemon/daemon_metrics.h"
#include "src/daemon/discovery_child.h"
#include "src/daemon/held_devices.h"
#include "src/doctor/doctor.h"
#include "src/driver/driver_files.h"
#include "src/health/health_monitor.h"
#include "src/health/health_options.h"
#include "src/kube/openssl_api_client.h"
#include "src/labels/node_labeller.h"
#include "src/metrics/collectors.h"
#include "src/metrics/exposition.h"
#include "src/metrics/http_server.h"
#include "src/metrics/kube_authorizer.h"
#include "src/metrics/pod_resources.h"
#include "src/metrics/sampler.h"
#include "src/mps/agent.h"
#include "src/mps/supervisor.h"
#include "src/nvml/change_watcher.h"
#include "src/nvml/dl_nvml.h"
#include "src/nvml/inventory.h"
#include "src/plugin/plugin_manager.h"
#include "src/podresources/podresources.h"
#include "src/resources/resources.h"

namespace gdp::daemon {
namespace {

using std::chrono::milliseconds;

nvml::DiscoveryOptions Discovery(const config::Config& cfg) {
  return nvml::DiscoveryOptions{.sysfs_root = cfg.sysfs_root};
}

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
// and the node labeller (both only queue them, so the monitor never waits on
// gRPC or the API server). The labeller comes and goes with reloads, hence
// the mutex.
// A GPU is healthy when NVML health says so and, for a GPU shared through
// MPS, its MPS control daemon is up with its limits; the bridge combines both
// sources per GPU and tells the plugin manager (and the labeller, of NVML
// health changes). Called from the health monitor's thread and the MPS
// supervisor's; every call is quick.
class HealthBridge final : public health::HealthListener {
 public:
  HealthBridge(plugin::PluginManager& plugins, std::function<void(const std::string&)> on_mig)
      : plugins_(plugins), on_mig_(std::move(on_mig)) {}
  void OnHealthChanged(const health::HealthEvent& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    Set(&nvml_unhealthy_, event.uuid, event.healthy);
    if (labeller_ != nullptr) labeller_->OnHealthChanged(event);
  }
  void OnMigConfigChanged(const std::string& uuid) override { on_mig_(uuid); }
  void OnMpsHealth(const mps::GpuHealth& h) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!h.healthy) {
      log::Warn("MPS daemon not healthy; the GPU's replicas are Unhealthy until it is restarted",
                {{"gpu", h.gpu.uuid}, {"error", h.status.message()}});
    } else if (mps_unhealthy_.count(h.gpu.uuid) != 0) {
      log::Info("MPS daemon healthy again", {{"gpu", h.gpu.uuid}});
    }
    Set(&mps_unhealthy_, h.gpu.uuid, h.healthy);
  }
  void SetLabeller(labels::NodeLabeller* labeller) {
    std::lock_guard<std::mutex> lock(mu_);
    labeller_ = labeller;
  }
  // The driver went away (every GPU Unhealthy) or came back.
  void SetDriverAvailable(bool available, const std::vector<std::string>& uuids) {
    std::lock_guard<std::mutex> lock(mu_);
    driver_down_ = !available;
    for (const std::string& uuid : uuids) Push(uuid);
  }
  // GPUs the driver unbound: Unhealthy until a re-discovery drops them.
  void SetUnbound(const std::vector<std::string>& uuids) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& uuid : uuids) {
      log::Warn("the driver unbound a GPU: Unhealthy until it is gone from the list",
                {{"gpu", uuid}});
      Set(&unbound_, uuid, false);
    }
  }
  // The monitor now watches another set of GPUs: take its view as the NVML
  // health of every GPU (after a re-discovery).
  void Resync(const std::map<std::string, health::DeviceHealth>& devices) {
    std::lock_guard<std::mutex> lock(mu_);
    unbound_.clear();
    std::set<std::string> unhealthy;
    for (const auto& [uuid, h] : devices) {
      if (!h.healthy) unhealthy.insert(uuid);
    }
    nvml_unhealthy_ = std::move(unhealthy);
    for (const auto& [uuid, h] : devices) Push(uuid);
  }

 private:
  void Set(std::set<std::string>* unhealthy, const std::string& uuid, bool healthy)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (healthy) {
      unhealthy->erase(uuid);
    } else {
      unhealthy->insert(uuid);
    }
    Push(uuid);
  }
  void Push(const std::string& uuid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    plugins_.SetGpuHealth(uuid, !driver_down_ && nvml_unhealthy_.count(uuid) == 0 &&
                                    mps_unhealthy_.count(uuid) == 0 && unbound_.count(uuid) == 0);
  }

  plugin::PluginManager& plugins_;
  const std::function<void(const std::string&)> on_mig_;
  std::mutex mu_;
  labels::NodeLabeller* labeller_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::set<std::string> nvml_unhealthy_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> mps_unhealthy_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unbound_ ABSL_GUARDED_BY(mu_);
  bool driver_down_ ABSL_GUARDED_BY(mu_) = false;
};

// A collector that reads NVML only while `gate` is held shared.
class GatedCollector final : public metrics::Collector {
 public:
  GatedCollector(metrics::Collector& inner, std::shared_mutex& gate) : inner_(inner), gate_(gate) {}
  std::string Name() const override { return inner_.Name(); }
  absl::Status Collect(std::vector<metrics::MetricFamily>* out) override {
    std::shared_lock<std::shared_mutex> lock(gate_);
    return inner_.Collect(out);
  }

 private:
  metrics::Collector& inner_;
  std::shared_mutex& gate_;
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
  if (a.metrics_tls_cert_file != b.metrics_tls_cert_file ||
      a.metrics_tls_key_file != b.metrics_tls_key_file) {
    changed.emplace_back("metrics.tls");  // the files' contents are reloaded; their paths not
  }
  if (a.metrics_auth_enabled != b.metrics_auth_enabled ||
      a.metrics_auth_cache_ttl != b.metrics_auth_cache_ttl) {
    changed.emplace_back("metrics.auth");
  }
  if (a.metrics_sample_interval != b.metrics_sample_interval) {
    changed.emplace_back("metrics.sampleInterval");
  }
  if (a.metrics_pod_resources_socket != b.metrics_pod_resources_socket) {
    changed.emplace_back("metrics.podResourcesSocket");
  }
  if (a.metrics_dcgm_compatibility != b.metrics_dcgm_compatibility) {
    changed.emplace_back("metrics.dcgmCompatibility");
  }
  if (a.node_name != b.node_name) changed.emplace_back("flags.nodeName");
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

// Each field of NVIDIA's format that the config gives and this plugin does
// not act on, once: at start, and at a reload for the ones `before` lacked.
void LogNotActedOn(const config::Config& cfg, const config::Config* before) {
  for (const std::string& entry : cfg.not_acted_on) {
    if (before != nullptr && std::find(before->not_acted_on.begin(), before->not_acted_on.end(),
                                       entry) != before->not_acted_on.end()) {
      continue;
    }
    const size_t colon = entry.find(": ");
    log::Warn("config field accepted but not acted on",
              {{"field", entry.substr(0, colon)},
               {"why", colon == std::string::npos ? "" : entry.substr(colon + 2)}});
  }
}

// The doctor's checks, each logged once (OK as info, WARN and FAIL as warnings:
// the daemon carries on; a kubelet that is not up yet, for one, comes later).
void LogDoctorReport(const config::Config& cfg, const DaemonOptions& o) {
  doctor::Options d = doctor::Options::FromConfig(cfg);
  d.containerd_config = o.containerd_config;
  doctor::Environment env;
  env.fs = o.fs;
  const doctor::Report report = doctor::RunChecks(d, env);
  for (const doctor::CheckResult& c : report.checks) {
    if (c.severity == doctor::Severity::kOk) {
      log::Info("doctor", {{"check", c.name}, {"status", "OK"}, {"detail", c.detail}});
    } else {
      log::Warn("doctor", {{"check", c.name},
                           {"status", doctor::ToString(c.severity)},
                           {"detail", c.detail},
                           {"fix", c.fix}});
    }
  }
  log::Info("doctor summary", {{"ok", report.Count(doctor::Severity::kOk)},
                               {"warn", report.Count(doctor::Severity::kWarn)},
                               {"fail", report.Count(doctor::Severity::kFail)}});
}

void ApplyLogSettings(const config::Config& c) {
  log::Level level = log::Level::kInfo;
  if (log::ParseLevel(c.log_level, &level)) log::SetLevel(level);
  log::SetFormat(c.log_format == "json" ? log::Format::kJson : log::Format::kText);
}

}  // namespace

struct Daemon::Components {
  std::shared_ptr<const config::Config> config;
  // metrics.auth: who may read the guarded paths, asked of the API server
  // (declared before `http`, whose worker uses them, so they outlive it).
  std::unique_ptr<kube::ApiClient> auth_kube;
  std::unique_ptr<metrics::KubeAuthorizer> authorizer;
  std::unique_ptr<metrics::HttpServer> http;
  std::unique_ptr<nvml::DlNvml> nvml;
  bool nvml_up = false;
  std::shared_ptr<const nvml::Inventory> inventory;
  std::unique_ptr<plugin::PluginManager> plugins;
  std::unique_ptr<HealthBridge> bridge;
  // MPS control daemons, while some GPU is shared through MPS; its options.
  std::unique_ptr<mps::Controller> mps;  // a Supervisor, or an AgentClient with sharing.mps.agent
  mps::SupervisorOptions mps_options;
  bool mps_agent = false;
  std::unique_ptr<health::HealthMonitor> health;
  // Notices GPUs, MIG layouts and the driver changing; recreated with each
  // inventory.
  std::unique_ptr<nvml::ChangeWatcher> changes;
  // This node's labels and the named-config ConfigMap, followed live.
  std::unique_ptr<kube::ApiClient> settings_kube;
  std::unique_ptr<NodeSettings> settings;
  std::optional<config::NamedConfigChoice> named_choice;  // the one applied
  std::string named_error;                                // the last one reported
  std::string nvml_library_path;                          // the libnvidia-ml.so.1 loaded
  std::optional<FileInfo> nvml_library_identity;          // that file when it was loaded
  std::string released_reason;  // why NVML was let go; "" while up or never
  std::string last_nvml_error;  // the last failed start's error, logged once
  // What the plugin servers advertise, and the devices among it that left the
  // node but are held by pods (src/daemon/held_devices.h).
  Advertised advertised;
  std::map<std::string, std::vector<HeldDevice>> held;
  // The resources the inventory and config give, before held devices.
  std::vector<std::shared_ptr<const plugin::ResourceBackend>> backends;
  // Node labels and events (labels.enabled with a node name); recreated when
  // the labels block changes.
  std::unique_ptr<kube::ApiClient> kube;
  std::unique_ptr<labels::NodeLabeller> labeller;
  config::LabelsConfig labeller_config;
  bool warned_no_node_name = false;
  std::unique_ptr<config::ConfigWatcher> watcher;
  // /metrics: the sampler renders into the store; scrapes only read it.
  metrics::SnapshotStore metrics_store;
  std::unique_ptr<podresources::GrpcPodResourcesLister> pod_lister;  // for /metrics
  std::unique_ptr<metrics::PodAttributionCollector> pod_collector;
  std::unique_ptr<metrics::GpuCollector> gpu_collector;
  // Held shared while the sampler reads NVML, exclusively while NVML is
  // re-initialised (a node change), so no read crosses a re-init.
  std::shared_mutex nvml_gate;
  std::unique_ptr<metrics::Collector> gated_gpu_collector;
  std::unique_ptr<PluginCollector> plugin_collector;
  std::unique_ptr<metrics::Sampler> sampler;
  std::unique_ptr<podresources::PodResourcesLister> pod_resources;  // for /allocations
  // `plugins` once it runs, for HTTP workers (which start before it exists).
  plugin::PluginManager* serving ABSL_GUARDED_BY(mu) = nullptr;
  std::string inventory_json ABSL_GUARDED_BY(mu);  // empty until NVML is up

  // Why the daemon is not ready; read by /readyz on an HTTP worker.
  std::mutex mu;
  std::string not_ready ABSL_GUARDED_BY(mu) = "starting";
  // The config the node asks for could not be applied (the running one is
  // kept); "" when it is running.
  std::string config_problem ABSL_GUARDED_BY(mu);

  // Starts, updates, restarts or stops the labeller to match `config`. Runs
  // on the daemon's thread, with NVML up.
  void SyncLabeller(const FileSystem& fs) {
    const config::LabelsConfig& lc = config->labels;
    const std::string& node_name = config->node_name;
    // NFD's feature file needs neither the API server nor the node's name.
    const bool to_file = !lc.nfd_feature_file.empty();
    const bool want = lc.enabled && (to_file || !node_name.empty());
    if (lc.enabled && !to_file && node_name.empty() && !warned_no_node_name) {
      warned_no_node_name = true;
      log::Warn("node labels and events are off: this node's name is unknown",
                {{"hint", "set NODE_NAME (the chart passes spec.nodeName) or flags.nodeName"}});
    }
    if (labeller != nullptr && (!want || !(lc == labeller_config))) {
      if (bridge) bridge->SetLabeller(nullptr);
      labeller->Stop();
      labeller.reset();
      kube.reset();
      log::Info("node labeller stopped");
    }
    if (!want) return;
    if (labeller != nullptr) {
      labeller->SetInventory(inventory);
      labeller->SetConfig(config);
      return;
    }
    if (!to_file || (lc.events && !node_name.empty())) {
      absl::StatusOr<kube::RestConfig> rest =
          kube::LoadRestConfig(fs, kube::ProcessEnv(), lc.kubeconfig);
      if (rest.ok()) {
        log::Info("API server", {{"server", rest->server}, {"from", rest->source}});
        kube = std::make_unique<kube::OpenSslApiClient>(*std::move(rest), &fs);
      } else if (!to_file) {
        log::Error("node labels and events are off: no API server to talk to",
                   {{"error", rest.status().message()}});
        return;
      } else {
        log::Warn(
            "node events are off: no API server to talk to; the labels go to NFD's "
            "feature file",
            {{"error", rest.status().message()}, {"file", lc.nfd_feature_file}});
      }
    }
    labeller = std::make_unique<labels::NodeLabeller>(kube.get(), fs,
                                                      labels::OptionsFromConfig(lc, node_name));
    labeller_config = lc;
    labeller->SetInventory(inventory);
    labeller->SetConfig(config);
    if (health != nullptr) {
      std::set<std::string> unhealthy;
      for (const auto& [uuid, h] : health->Devices()) {
        if (!h.healthy) unhealthy.insert(uuid);
      }
      labeller->SetUnhealthy(std::move(unhealthy));
    }
    labeller->Start();
    if (bridge) bridge->SetLabeller(labeller.get());
  }

  void SetConfigProblem(std::string problem) {
    std::lock_guard<std::mutex> lock(mu);
    config_problem = std::move(problem);
  }
  void SetNotReady(std::string reason) {
    std::lock_guard<std::mutex> lock(mu);
    not_ready = std::move(reason);
  }
  std::string NotReady() {
    std::lock_guard<std::mutex> lock(mu);
    if (!not_ready.empty()) return not_ready;
    if (!config_problem.empty()) return config_problem;
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

void Daemon::OnNodeChange(const std::string& reason, bool driver_gone, bool new_session) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!driver_gone && new_session) rescan_new_session_ = true;
    std::string& pending = driver_gone ? release_reason_ : rescan_reason_;
    if (pending.empty()) {
      pending = reason;
    } else if (pending.find(reason) == std::string::npos && pending.size() < 4096) {
      absl::StrAppend(&pending, "; ", reason);
    }
    if (!driver_gone && !rescan_due_.has_value()) {
      rescan_due_ = std::chrono::steady_clock::now() + options_.rescan_settle;
    }
    rescan_noticed_ = true;
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
             {"container_driver_root", cfg.EffectiveDriverRoot()},
             {"plugin_directory", cfg.plugin_directory},
             {"resource", cfg.resource_name},
             // NVIDIA's plugin defaults to false; ours to true (docs/configuration.md).
             {"pass_device_specs", cfg.pass_device_specs}});
  LogNotActedOn(cfg, nullptr);

  if (options_.run_doctor) LogDoctorReport(cfg, options_);

  // 2. HTTP: liveness and readiness first, so a failing start is visible.
  c_->http = std::make_unique<metrics::HttpServer>(cfg.metrics_bind_address, cfg.metrics_port);
  c_->http->Handle("/healthz", [] { return metrics::HttpResponse{200, "text/plain", "ok\n"}; });
  Components* comps = c_.get();
  c_->http->Handle("/readyz", [comps] {
    const std::string reason = comps->NotReady();
    if (reason.empty()) return metrics::HttpResponse{200, "text/plain", "ready\n"};
    return metrics::HttpResponse{503, "text/plain", "not ready: " + reason + "\n"};
  });
  // The paths that tell who runs what are guarded (metrics.auth); /allocations
  // asks the kubelet, so it runs on the server's worker thread.
  const metrics::Route guarded{.guarded = true};
  c_->http->Handle(
      "/inventory",
      [comps] {
        std::lock_guard<std::mutex> lock(comps->mu);
        if (comps->inventory_json.empty()) {
          return metrics::HttpResponse{503, "text/plain", "NVML is not initialised yet\n"};
        }
        return metrics::HttpResponse{200, "application/json", comps->inventory_json};
      },
      guarded);
  c_->http->Handle(
      "/metrics",
      [comps] {
        // The last sample, rendered once by the sampler: no NVML, no kubelet here.
        return metrics::HttpResponse{200, metrics::kContentType, *comps->metrics_store.Get()};
      },
      guarded);
  const std::string& pod_socket = cfg.metrics_pod_resources_socket;
  if (!pod_socket.empty()) {
    c_->pod_resources =
        std::make_unique<podresources::GrpcPodResourcesLister>(pod_socket, std::chrono::seconds(2));
  }
  c_->http->Handle(
      "/allocations",
      [comps, socket = pod_socket] {
        // Resources() is a snapshot from the plugin manager's thread; List is one
        // unix-socket call with a 2 s deadline.
        plugin::PluginManager* plugins = nullptr;
        {
          std::lock_guard<std::mutex> lock(comps->mu);
          plugins = comps->serving;
        }
        std::vector<ResourceView> views;
        if (plugins != nullptr) {
          for (const plugin::PluginManager::ResourceInfo& r : plugins->Resources()) {
            ResourceView view{r.resource_name, {}};
            if (r.server != nullptr) {
              const std::shared_ptr<const plugin::ResourceBackend> backend = r.server->backend();
              for (const plugin::Device& d : r.server->Devices()) {
                view.devices.push_back(DeviceView{d.id, backend->GpusBehind(d.id), d.healthy});
              }
            }
            views.push_back(std::move(view));
          }
        }
        return metrics::HttpResponse{
            200, "application/json",
            AllocationsJson(views,
                            comps->pod_resources != nullptr
                                ? comps->pod_resources->List()
                                : absl::UnavailableError("pod attribution is off "
                                                         "(metrics.podResourcesSocket is empty)"),
                            socket)};
      },
      metrics::Route{.blocking = true, .guarded = true});
  if (cfg.metrics_auth_enabled) {
    absl::StatusOr<kube::RestConfig> rest =
        kube::LoadRestConfig(*options_.fs, kube::ProcessEnv(), cfg.labels.kubeconfig);
    if (!rest.ok()) {
      log::Error("metrics.auth is on but there is no API server to check callers with",
                 {{"error", rest.status().message()},
                  {"fix",
                   "run in a pod with a service-account token, or set labels.kubeconfig; or "
                   "turn metrics.auth off"}});
      return kExitBadConfig;
    }
    // A scrape waits for its review: a short deadline, so an API server that
    // does not answer costs a scrape 5 s, not the client's 15.
    rest->timeout = std::chrono::seconds(5);
    c_->auth_kube = std::make_unique<kube::OpenSslApiClient>(*std::move(rest), options_.fs);
    c_->authorizer = std::make_unique<metrics::KubeAuthorizer>(
        *c_->auth_kube, RealClock::Get(),
        metrics::KubeAuthorizer::Options{
            cfg.metrics_auth_cache_ttl,
            std::min<std::chrono::seconds>(cfg.metrics_auth_cache_ttl, std::chrono::seconds(10))});
    c_->http->UseAuthorizer(c_->authorizer.get());
  }
  if (!cfg.metrics_tls_cert_file.empty()) {
    if (absl::Status s = c_->http->UseTls(cfg.metrics_tls_cert_file, cfg.metrics_tls_key_file);
        !s.ok()) {
      log::Error("cannot serve the HTTP endpoint with TLS",
                 {{"error", s.message()},
                  {"fix", "check metrics.tls.certFile and metrics.tls.keyFile (PEM files)"}});
      return kExitServeFailed;
    }
  }
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
  {
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->serving = c_->plugins.get();
  }

  // 3b. This node's labels and named configs: the first directive is waited
  // for (briefly), so the plugin starts with the config its node asks for
  // rather than switching to it a moment later.
  StartNodeSettings();
  if (c_->settings != nullptr) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::optional<NodeDirective> first;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, until, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_requested_ || pending_directive_.has_value();
      });
      first = std::exchange(pending_directive_, std::nullopt);
    }
    if (first.has_value()) {
      ApplyDirective(*first);
    } else {
      log::Warn(
          "no answer from the API server about this node yet; starting with the local "
          "config and following the node's labels once it answers");
    }
  }

  // 4. NVML, retried with backoff when failOnInitError is false.
  Backoff nvml_backoff(milliseconds(1000), milliseconds(60000));
  auto next_nvml_try = std::chrono::steady_clock::now();
  if (paused_) {
    log::Info("paused by the node's deploy label: NVML is not loaded until it says true");
  } else if (!StartNvml()) {
    if (cfg.fail_on_init_error || exit_code_ != kExitOk) {
      StopAll();
      return exit_code_ != kExitOk ? exit_code_ : kExitInitFailed;
    }
    next_nvml_try += nvml_backoff.Next();
  }

  // 5. Reloads: on file change (the watcher) and on SIGHUP (RequestReload).
  if (!options_.config_file.empty() && c_->config->node_config.config_map.empty()) {
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

  if (c_->nvml_up) StartMetrics();

  // 6. The event loop.
  using SteadyClock = std::chrono::steady_clock;
  std::optional<SteadyClock::time_point> held_recheck;
  for (;;) {
    std::shared_ptr<const config::Config> next;
    bool reload = false;
    std::string rescan;
    bool rescan_new_session = false;
    std::string release;
    std::optional<NodeDirective> directive;
    {
      std::unique_lock<std::mutex> lock(mu_);
      std::optional<SteadyClock::time_point> deadline;
      auto earliest = [&deadline](std::optional<SteadyClock::time_point> t) {
        if (t.has_value() && (!deadline.has_value() || *t < *deadline)) deadline = t;
      };
      if (!c_->nvml_up && !paused_) earliest(next_nvml_try);
      if (c_->nvml_up) earliest(rescan_due_);
      if (!c_->held.empty()) earliest(held_recheck);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_requested_ || reload_requested_ || pending_config_ || rescan_noticed_;
      };
      if (deadline.has_value()) {
        cv_.wait_until(lock, *deadline, ready);
      } else {
        cv_.wait(lock, ready);
      }
      if (stop_requested_) break;
      rescan_noticed_ = false;
      reload = std::exchange(reload_requested_, false);
      next = std::move(pending_config_);
      pending_config_.reset();
      release = std::exchange(release_reason_, std::string());
      directive = std::exchange(pending_directive_, std::nullopt);
      if (rescan_due_.has_value() && SteadyClock::now() >= *rescan_due_) {
        rescan = std::exchange(rescan_reason_, std::string());
        rescan_new_session = std::exchange(rescan_new_session_, false);
        rescan_due_.reset();
      }
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
    if (directive.has_value()) {
      const bool was_paused = paused_;
      ApplyDirective(*directive);
      if (was_paused && !paused_) {
        nvml_backoff.Reset();
        next_nvml_try = SteadyClock::now();
      }
    }
    if (!release.empty() && c_->nvml_up) {
      ReleaseDriver(release);
      // Try again soon, and no less often than the periodic check.
      const auto max = std::max(c_->config->rescan_interval, milliseconds(1000));
      nvml_backoff = Backoff(milliseconds(500), max);
      next_nvml_try = SteadyClock::now() + nvml_backoff.Next();
    } else if (!rescan.empty() && c_->nvml_up) {
      Rediscover(rescan, rescan_new_session);
    }
    if (!c_->nvml_up && !paused_ && SteadyClock::now() >= next_nvml_try) {
      if (!StartNvml()) {
        if (exit_code_ != kExitOk) break;
        next_nvml_try = SteadyClock::now() + nvml_backoff.Next();
      } else {
        StartMetrics();
      }
    }
    // Devices held by pods after leaving the node: ask the kubelet again.
    if (c_->held.empty()) {
      held_recheck.reset();
    } else if (!held_recheck.has_value()) {
      held_recheck = SteadyClock::now() + milliseconds(2000);
    } else if (SteadyClock::now() >= *held_recheck) {
      held_recheck = SteadyClock::now() + milliseconds(2000);
      if (c_->nvml_up) ServeWithHeld(c_->backends, /*log_served=*/false, /*node_changed=*/false);
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
    const std::string error(s.message());
    if (!c_->released_reason.empty()) {
      // The driver left while we ran: say so first, then what the last try saw.
      c_->SetNotReady(absl::StrCat("the NVIDIA driver is unavailable (", c_->released_reason,
                                   "); its GPUs are advertised Unhealthy until it is back; "
                                   "last try: ",
                                   error));
    } else {
      c_->SetNotReady(absl::StrCat("NVML: ", error));
    }
    if (error != c_->last_nvml_error) {  // retries repeat it: once per new error
      c_->last_nvml_error = error;
      if (cfg.fail_on_init_error && c_->released_reason.empty()) {
        log::Error("cannot initialise NVML", {{"error", error}});
      } else {
        log::Warn("cannot initialise NVML; running without devices and retrying",
                  {{"error", error}});
      }
    }
    return false;
  };

  if (c_->nvml == nullptr) {
    absl::StatusOr<std::string> path = nvml::FindNvmlLibrary(*options_.fs, root, cfg.nvml_library);
    if (!path.ok()) return fail(path.status());
    absl::StatusOr<std::unique_ptr<nvml::DlNvml>> lib = nvml::DlNvml::Open(*path);
    if (!lib.ok()) return fail(lib.status());
    c_->nvml = *std::move(lib);
    c_->nvml_library_path = *path;
    c_->nvml_library_identity.reset();
    if (absl::StatusOr<FileInfo> st = options_.fs->Stat(*path); st.ok()) {
      c_->nvml_library_identity = *st;
    }
  }
  if (absl::Status s = nvml::NvmlStatus(*c_->nvml, c_->nvml->Init(), "nvmlInit"); !s.ok()) {
    // Unloaded, so that a driver coming back (maybe another version, another
    // library file) is loaded afresh, and nothing of the old one is held.
    c_->nvml.reset();
    return fail(absl::Status(
        s.code(), absl::StrCat(s.message(),
                               "; is the NVIDIA driver loaded on the host, and does the container "
                               "see its device nodes (driver root ",
                               root, ")?")));
  }
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> inventory =
      nvml::DiscoverInventory(*c_->nvml, Discovery(*c_->config));
  if (!inventory.ok()) {
    c_->nvml->Shutdown();
    c_->nvml.reset();
    return fail(inventory.status());
  }
  const std::shared_ptr<const nvml::Inventory> before = c_->inventory;
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
  c_->released_reason.clear();
  c_->last_nvml_error.clear();
  {
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->inventory_json = InventoryJson(inv);
  }
  log::Info(before == nullptr ? "NVML initialised" : "NVML initialised again: the driver is back",
            {{"driver", inv.driver_version},
             {"cuda_driver", inv.CudaDriverVersionString()},
             {"gpus", inv.gpus.size()}});
  if (before != nullptr) {
    for (const std::string& change : nvml::InventoryChanges(*before, inv)) {
      log::Info("changed while the driver was away", {{"change", change}});
      NodeEvent("GpuNodeChanged", "Normal", change);
    }
    if (before->driver_version != inv.driver_version) {
      log::Warn(
          "the driver version changed; running pods keep their devices, and containers "
          "started before the change still use the old driver's files until they restart",
          {{"was", before->driver_version}, {"now", inv.driver_version}});
    }
  }
  for (const nvml::Gpu& g : inv.gpus) {
    log::Info("found GPU", {{"index", g.index},
                            {"uuid", g.uuid},
                            {"name", g.name},
                            {"memory_mib", g.memory_bytes >> 20},
                            {"pci_bus_id", g.pci_bus_id},
                            {"numa_node", g.numa_node},
                            {"mig", g.mig_enabled}});
  }

  // Resources and labels, then health (so the first health change has a
  // device and a labeller to reach).
  if (c_->bridge == nullptr) {
    c_->bridge = std::make_unique<HealthBridge>(*c_->plugins, [this](const std::string& uuid) {
      OnNodeChange(absl::StrCat("NVML: MIG configuration of GPU ", uuid, " changed"),
                   /*driver_gone=*/false, /*new_session=*/false);
    });
  }
  std::vector<std::string> uuids;
  for (const nvml::Gpu& g : inv.gpus) uuids.push_back(g.uuid);
  if (c_->health == nullptr) {
    c_->health = std::make_unique<health::HealthMonitor>(
        *c_->nvml, inv, health::FromConfig(cfg.health), *c_->bridge, *options_.clock);
  } else {
    // The driver is back: same monitor, same state for the GPUs still here.
    if (absl::Status s = c_->health->SetInventory(*c_->nvml, inv); !s.ok()) {
      log::Warn("health monitor kept its old GPUs", {{"error", s.message()}});
    }
    c_->bridge->Resync(c_->health->Devices());
  }
  c_->bridge->SetDriverAvailable(true, uuids);
  ApplyConfig(nullptr, /*node_changed=*/before != nullptr);
  if (absl::Status s = c_->health->Start(); !s.ok()) {
    log::Warn("health monitoring did not start", {{"error", s.message()}});
  }
  StartChangeWatcher();
  return true;
}

void Daemon::StartChangeWatcher() {
  const config::Config& cfg = *c_->config;
  nvml::ChangeWatcherOptions o;
  o.interval = cfg.rescan_interval;
  o.library_path = c_->nvml_library_path;
  o.library_identity = c_->nvml_library_identity;
  o.dev_dir = JoinRoot(cfg.EffectiveDriverRoot(), "/dev");
  HealthBridge* bridge = c_->bridge.get();
  c_->changes = std::make_unique<nvml::ChangeWatcher>(
      *c_->nvml, *options_.fs, c_->inventory, o, [this, bridge](const nvml::NodeChange& change) {
        // A GPU the driver unbound is gone now: out of allocatable at once,
        // before the re-discovery that drops it.
        if (!change.unbound.empty()) bridge->SetUnbound(change.unbound);
        OnNodeChange(change.reason, change.kind == nvml::NodeChange::Kind::kDriverGone,
                     change.new_session);
      });
  if (absl::Status s = c_->changes->Start(); !s.ok()) {
    log::Warn("node changes will not be noticed", {{"error", s.message()}});
  }
}

void Daemon::StopMetrics() {
  if (c_->sampler) c_->sampler->Stop();
  c_->sampler.reset();
  c_->plugin_collector.reset();
  c_->gated_gpu_collector.reset();
  c_->gpu_collector.reset();
  c_->pod_collector.reset();
  c_->pod_lister.reset();
}

void Daemon::StopNvmlUsers() {
  // Both NVML waiters at once: each may sit in a wait of up to a second. The
  // metrics sampler keeps running; the NVML gate keeps it out of a re-init.
  if (c_->changes) c_->changes->RequestStop();
  if (c_->health) c_->health->RequestStop();
  if (c_->changes) c_->changes->Stop();
  c_->changes.reset();
  if (c_->health) c_->health->Stop();
}

void Daemon::StartNvmlUsers() {
  if (absl::Status s = c_->health->Start(); !s.ok()) {
    log::Warn("health monitoring did not start", {{"error", s.message()}});
  }
  StartChangeWatcher();
  // The collectors read the new inventory from their next sample on.
  if (c_->gpu_collector != nullptr) c_->gpu_collector->SetInventory(c_->inventory);
  if (c_->pod_collector != nullptr) c_->pod_collector->SetInventory(c_->inventory);
}

namespace {

// The same full GPUs at the same indices (MIG devices may differ).
bool SameGpus(const nvml::Inventory& a, const nvml::Inventory& b) {
  if (a.gpus.size() != b.gpus.size()) return false;
  for (size_t i = 0; i < a.gpus.size(); ++i) {
    if (a.gpus[i].uuid != b.gpus[i].uuid || a.gpus[i].index != b.gpus[i].index) return false;
  }
  return true;
}

}  // namespace

void Daemon::Rediscover(const std::string& reason, bool new_session) {
  const auto start = std::chrono::steady_clock::now();
  log::Info("node change noticed: discovering the GPUs again", {{"reason", reason}});
  auto took_ms = [&start] {
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
        .count();
  };
  if (!new_session) {
    // A MIG re-layout shows in the running session: nothing needs to stop.
    absl::StatusOr<std::shared_ptr<const nvml::Inventory>> found =
        nvml::DiscoverInventory(*c_->nvml, Discovery(*c_->config));
    if (found.ok() && SameGpus(*c_->inventory, **found)) {
      const std::vector<std::string> changes = AdoptInventory(*std::move(found));
      if (c_->changes != nullptr) c_->changes->SetInventory(c_->inventory);
      if (!changes.empty()) {
        ApplyConfig(nullptr, /*node_changed=*/true);
        if (c_->gpu_collector != nullptr) c_->gpu_collector->SetInventory(c_->inventory);
        if (c_->pod_collector != nullptr) c_->pod_collector->SetInventory(c_->inventory);
      }
      log::Info(changes.empty() ? "GPUs discovered again: nothing changed"
                                : "GPUs discovered again: the difference is applied",
                {{"changes", changes.size()},
                 {"gpus", c_->inventory->gpus.size()},
                 {"session", "running"},
                 {"took_ms", took_ms()}});
      return;
    }
    log::Info("the running NVML session does not show the change as expected; starting a new one",
              {{"discovery",
                found.ok() ? std::string("other GPUs") : std::string(found.status().message())}});
  }
  AdvertiseFreshDiscovery();
  StopNvmlUsers();
  // A fresh NVML session: a GPU added since the last one is only enumerated
  // by a new session, and every old handle goes with the old one. The
  // sampler waits at the gate meanwhile.
  std::unique_lock<std::shared_mutex> gate(c_->nvml_gate);
  c_->nvml->Shutdown();
  const nvmlReturn_t r = c_->nvml->Init();
  if (r != NVML_SUCCESS) {
    gate.unlock();
    ReleaseDriver(absl::StrCat("nvmlInit answers ", nvml::ReturnCodeName(r),
                               " while discovering the GPUs again"));
    return;
  }
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> found =
      nvml::DiscoverInventory(*c_->nvml, Discovery(*c_->config));
  if (found.ok()) {
    // Before the gate opens: the sampler's next read is of the new session.
    if (c_->gpu_collector != nullptr) c_->gpu_collector->SetInventory(*found);
    if (c_->pod_collector != nullptr) c_->pod_collector->SetInventory(*found);
  }
  gate.unlock();
  if (!found.ok()) {
    // Mid-change (a MIG instance being created): keep what is served, look
    // again shortly.
    log::Warn("cannot discover the GPUs again; keeping the current devices and retrying",
              {{"error", found.status().message()}});
    StartNvmlUsers();
    std::lock_guard<std::mutex> lock(mu_);
    if (rescan_reason_.empty()) rescan_reason_ = reason;
    rescan_new_session_ = true;
    rescan_due_ = std::chrono::steady_clock::now() + milliseconds(1000);
    return;
  }
  const std::vector<std::string> changes = AdoptInventory(*std::move(found));
  if (absl::Status s = c_->health->SetInventory(*c_->nvml, *c_->inventory); !s.ok()) {
    log::Warn("health monitor kept its old GPUs", {{"error", s.message()}});
  }
  c_->bridge->Resync(c_->health->Devices());
  if (!changes.empty()) ApplyConfig(nullptr, /*node_changed=*/true);
  StartNvmlUsers();
  log::Info(changes.empty() ? "GPUs discovered again: nothing changed"
                            : "GPUs discovered again: the difference is applied",
            {{"changes", changes.size()},
             {"gpus", c_->inventory->gpus.size()},
             {"session", "new"},
             {"took_ms", took_ms()}});
}

std::vector<std::string> Daemon::AdoptInventory(std::shared_ptr<const nvml::Inventory> found) {
  std::vector<std::string> changes = nvml::InventoryChanges(*c_->inventory, *found);
  c_->inventory = std::move(found);
  {
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->inventory_json = InventoryJson(*c_->inventory);
  }
  for (const std::string& change : changes) {
    log::Info("node change", {{"change", change}});
    NodeEvent("GpuNodeChanged", "Normal", change);
  }
  return changes;
}

void Daemon::AdvertiseFreshDiscovery() {
  if (options_.discovery_exe.empty() || c_->nvml_library_path.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> found =
      DiscoverInChild(DiscoveryChildOptions{options_.discovery_exe, c_->nvml_library_path});
  if (!found.ok()) {
    log::Warn(
        "could not discover the GPUs in a child process; the change waits for this "
        "process's new NVML session",
        {{"error", found.status().message()}});
    return;
  }
  // A driver the daemon would refuse is for the in-process path to report.
  if (!nvml::CheckMinimumVersions(**found).ok()) return;
  if (**found == *c_->inventory) return;
  const std::vector<std::string> changes = AdoptInventory(*std::move(found));
  ApplyConfig(nullptr, /*node_changed=*/true);
  log::Info(
      "GPUs discovered in a child process: the difference is advertised; this process's NVML "
      "session follows",
      {{"changes", changes.size()},
       {"gpus", c_->inventory->gpus.size()},
       {"took_ms",
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
            .count()}});
}

void Daemon::ReleaseDriver(const std::string& reason, const std::string& not_ready) {
  log::Warn(
      "the driver is going away: releasing NVML and every device file so it can unload; "
      "the GPUs stay registered, Unhealthy, until it is back",
      {{"reason", reason}});
  StopNvmlUsers();
  StopMetrics();             // its collectors hold the NVML that goes away
  if (c_->mps != nullptr) {  // MPS control daemons hold the device files too
    c_->mps->Stop();
    c_->mps.reset();
  }
  std::vector<std::string> uuids;
  for (const nvml::Gpu& g : c_->inventory->gpus) uuids.push_back(g.uuid);
  c_->bridge->SetDriverAvailable(false, uuids);
  c_->nvml->Shutdown();
  c_->nvml.reset();  // dlclose: the next start loads whatever driver is there then
  c_->nvml_up = false;
  c_->released_reason = reason;
  {
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->inventory_json.clear();
  }
  c_->SetNotReady(not_ready.empty()
                      ? absl::StrCat("the NVIDIA driver is unavailable (", reason,
                                     "); its GPUs are advertised Unhealthy until it is back")
                      : not_ready);
}

void Daemon::StartNodeSettings() {
  const config::Config& cfg = *c_->config;
  const bool want = !cfg.deploy_label.empty() || !cfg.node_config.config_map.empty();
  if (!want) return;
  if (cfg.node_name.empty()) {
    if (!cfg.node_config.config_map.empty()) {
      log::Error("named configs are off: this node's name is unknown",
                 {{"hint", "set NODE_NAME (the chart passes spec.nodeName) or flags.nodeName"}});
    }
    return;
  }
  absl::StatusOr<kube::RestConfig> rest =
      kube::LoadRestConfig(*options_.fs, kube::ProcessEnv(), cfg.labels.kubeconfig);
  if (!rest.ok()) {
    (cfg.node_config.config_map.empty() ? log::Info : log::Error)(
        "not following this node's labels (deploy label, named configs): no API server",
        {{"error", rest.status().message()}});
    return;
  }
  c_->settings_kube = std::make_unique<kube::OpenSslApiClient>(*std::move(rest), options_.fs);
  NodeSettingsOptions o;
  o.node_name = cfg.node_name;
  o.deploy_label = cfg.deploy_label;
  o.named = cfg.node_config;
  c_->settings =
      std::make_unique<NodeSettings>(*c_->settings_kube, o, [this](const NodeDirective& d) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          pending_directive_ = d;
          rescan_noticed_ = true;
        }
        cv_.notify_all();
      });
  c_->settings->Start();
  log::Info(
      "following this node's labels",
      {{"deploy_label", cfg.deploy_label.empty() ? "(off)" : cfg.deploy_label},
       {"config_map", cfg.node_config.config_map.empty() ? "(off)" : cfg.node_config.config_map},
       {"config_label", cfg.node_config.label}});
}

void Daemon::NodeEvent(const std::string& reason, const std::string& type,
                       const std::string& message) {
  if (c_->labeller != nullptr) c_->labeller->RecordEvent(reason, type, message);
}

void Daemon::ApplyDirective(const NodeDirective& d) {
  const config::Config& cfg = *c_->config;
  // The config first, so that a resume starts with the config asked for.
  if (d.named_configs) {
    if (!d.config_error.empty()) {
      if (d.config_error != c_->named_error) {
        log::Error("named config not applied; keeping the running config",
                   {{"error", d.config_error}});
        NodeEvent("GpuPluginConfigInvalid", "Warning", d.config_error);
        c_->named_error = d.config_error;
      }
      c_->SetConfigProblem(d.config_error);
    } else if (d.choice.has_value() && d.choice != c_->named_choice) {
      const config::NamedConfigChoice& choice = *d.choice;
      const std::string name = choice.name.empty() ? "(built-in defaults)" : choice.name;
      absl::StatusOr<config::Config> parsed = config::ParseConfig(choice.yaml, options_.overrides);
      if (!parsed.ok()) {
        const std::string problem =
            absl::StrCat("named config ", name, " (", choice.why,
                         ") is invalid; keeping the running config: ", parsed.status().message());
        if (problem != c_->named_error) {
          log::Error("named config not applied; keeping the running config",
                     {{"config", name}, {"errors", parsed.status().message()}});
          NodeEvent("GpuPluginConfigInvalid", "Warning", problem);
          c_->named_error = problem;
        }
        c_->SetConfigProblem(problem);
      } else {
        // Where configs come from is the DaemonSet's business, not a named config's.
        parsed->node_config = cfg.node_config;
        parsed->deploy_label = cfg.deploy_label;
        log::Info("applying the named config this node asks for",
                  {{"config", name}, {"why", choice.why}});
        c_->named_choice = choice;
        c_->named_error.clear();
        c_->SetConfigProblem("");
        auto next = std::make_shared<const config::Config>(*std::move(parsed));
        if (!(*next == *c_->config)) ApplyConfig(std::move(next));
        NodeEvent("GpuPluginConfigApplied", "Normal",
                  absl::StrCat("gpu-device-plugin runs config ", name, " (", choice.why, ")"));
      }
    } else if (d.choice.has_value()) {
      c_->named_error.clear();
      c_->SetConfigProblem("");
    }
  }
  if (d.paused && !paused_) {
    paused_ = true;
    const std::string why = absl::StrCat("node label ", cfg.deploy_label, "=", d.pause_value);
    const std::string not_ready =
        absl::StrCat("paused by ", why,
                     ": NVML and the device files are released and the GPUs advertised "
                     "Unhealthy until the label is true");
    if (c_->nvml_up) {
      ReleaseDriver(why, not_ready);
    } else {
      c_->SetNotReady(not_ready);
    }
    log::Warn("paused by the node's deploy label", {{"label", why}});
  } else if (!d.paused && paused_) {
    paused_ = false;
    log::Info("the node's deploy label no longer pauses the plugin: loading NVML again",
              {{"label", cfg.deploy_label}});
    c_->SetNotReady("resuming: loading NVML");
  }
}

// Starts sampling for /metrics; NVML is up and the watcher (if any) exists, and
// neither changes until StopAll, which stops the sampler first.
void Daemon::StartMetrics() {
  const config::Config& cfg = *c_->config;
  std::vector<metrics::Collector*> collectors;
  if (!cfg.metrics_pod_resources_socket.empty()) {
    c_->pod_lister = std::make_unique<podresources::GrpcPodResourcesLister>(
        cfg.metrics_pod_resources_socket, std::chrono::seconds(2));
    c_->pod_collector =
        std::make_unique<metrics::PodAttributionCollector>(*c_->pod_lister, c_->inventory);
    collectors.push_back(c_->pod_collector.get());
  }
  const health::HealthMonitor* monitor = c_->health.get();
  metrics::GpuCollector::HealthSource health;
  if (monitor != nullptr) health = [monitor] { return HealthFromMonitor(*monitor); };
  c_->gpu_collector = std::make_unique<metrics::GpuCollector>(
      *c_->nvml, c_->inventory,
      metrics::GpuCollector::Options{cfg.node_name, cfg.metrics_dcgm_compatibility},
      c_->pod_collector.get(), std::move(health));
  c_->gated_gpu_collector = std::make_unique<GatedCollector>(*c_->gpu_collector, c_->nvml_gate);
  collectors.push_back(c_->gated_gpu_collector.get());
  PluginCollector::ReloadCounts reloads;
  if (const config::ConfigWatcher* w = c_->watcher.get(); w != nullptr) {
    reloads = [w] { return std::make_pair(w->reloads_succeeded(), w->reloads_failed()); };
  }
  c_->plugin_collector = std::make_unique<PluginCollector>(*c_->plugins, monitor, reloads);
  collectors.push_back(c_->plugin_collector.get());
  if (c_->authorizer) collectors.push_back(c_->authorizer.get());
  c_->sampler =
      std::make_unique<metrics::Sampler>(metrics::Sampler::Options{cfg.metrics_sample_interval},
                                         std::move(collectors), c_->metrics_store);
  c_->sampler->Start();
  log::Info("sampling metrics", {{"interval_ms", cfg.metrics_sample_interval.count()},
                                 {"pod_resources", cfg.metrics_pod_resources_socket.empty()
                                                       ? std::string("(off)")
                                                       : cfg.metrics_pod_resources_socket},
                                 {"dcgm_compatibility", cfg.metrics_dcgm_compatibility}});
}

// Applies `next` (nullptr: re-apply the current config, e.g. after NVML came up).
void Daemon::ApplyConfig(std::shared_ptr<const config::Config> next, bool node_changed) {
  std::shared_ptr<const config::Config> prev = c_->config;
  if (next != nullptr) {
    for (const std::string& field : RestartOnlyChanges(*prev, *next)) {
      log::Warn("config change takes effect at the next restart", {{"field", field}});
    }
    c_->config = std::move(next);
    ApplyLogSettings(*c_->config);
    log::Info("configuration reloaded", {{"config_file", options_.config_file}});
    LogNotActedOn(*c_->config, prev.get());
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
  // MPS daemons next: replicas of a GPU whose daemon is not up are advertised
  // Unhealthy (the bridge remembers it before the resources exist).
  if (absl::Status s = SyncMps(cfg, *backends); !s.ok()) {
    log::Error("cannot share GPUs through MPS; keeping the previous resources",
               {{"error", s.message()}});
    c_->SetNotReady(std::string(s.message()));
    if (next != nullptr) c_->config = prev;
    return;
  }
  // The CDI spec goes first: a runtime given a CDI name must find it.
  if (absl::Status s = SyncCdiSpec(cfg, *backends); !s.ok()) {
    log::Error("cannot write the CDI spec; keeping the previous resources",
               {{"error", s.message()}});
    c_->SetNotReady(std::string(s.message()));
    if (next != nullptr) c_->config = prev;
    return;
  }
  c_->backends = *backends;
  if (!ServeWithHeld(*backends, /*log_served=*/true, node_changed)) return;
  c_->SetNotReady(backends->empty() ? "NVML reports no GPUs on this node" : "");

  if (next != nullptr && c_->health != nullptr && !SameHealth(prev->health, cfg.health)) {
    c_->health->SetOptions(health::FromConfig(cfg.health));
  }
  if (next != nullptr && c_->changes != nullptr && prev->rescan_interval != cfg.rescan_interval) {
    c_->changes->Stop();
    StartChangeWatcher();
  }
  c_->SyncLabeller(*options_.fs);
}

bool Daemon::ServeWithHeld(
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends, bool log_served,
    bool node_changed) {
  // Resources a config change stops advertising (a rename by resources
  // patterns, sharing, a new resourceName): pods holding their devices keep
  // running, but a restarted kubelet cannot admit them again. Said, not held.
  std::set<std::string> vanished;
  if (!node_changed) {
    for (const auto& [resource, devices] : c_->advertised) {
      const bool kept =
          std::any_of(backends.begin(), backends.end(),
                      [&r = resource](const auto& b) { return b->ResourceName() == r; });
      if (!kept && !devices.empty()) vanished.insert(resource);
    }
  }
  // Who holds a device that is no longer offered: asked only when one is gone.
  bool gone = !c_->held.empty() || !vanished.empty();
  for (const auto& [resource, devices] : c_->advertised) {
    if (gone || !node_changed) break;
    auto it = std::find_if(backends.begin(), backends.end(),
                           [&r = resource](const auto& b) { return b->ResourceName() == r; });
    if (it == backends.end()) {
      gone = true;
      break;
    }
    std::set<std::string> ids;
    for (const plugin::Device& d : (*it)->Devices()) ids.insert(d.id);
    for (const auto& [id, gpus] : devices) {
      if (ids.count(id) == 0) {
        gone = true;
        break;
      }
    }
  }
  podresources::HolderIndex holders;
  const std::string& socket = c_->config->metrics_pod_resources_socket;
  if (gone && c_->pod_resources != nullptr && !options_.fs->Exists(socket)) {
    // Not mounted (or no kubelet): asking would only wait out gRPC's backoff.
    log::Warn(
        "cannot ask the kubelet which devices pods hold: its pod-resources socket is "
        "missing; devices that left the node are no longer listed, even if a pod holds one",
        {{"socket", socket}});
  } else if (gone && c_->pod_resources != nullptr) {
    absl::StatusOr<std::vector<podresources::Assignment>> list = c_->pod_resources->List();
    if (list.ok()) {
      holders = podresources::IndexByDevice(*list);
    } else {
      // Keeping them on a guess could keep them for ever on a node whose
      // pod-resources socket is not mounted.
      log::Warn(
          "cannot ask the kubelet which devices pods hold: devices that left the node are "
          "no longer listed, even if a pod holds one",
          {{"error", list.status().message()}});
    }
  }
  // Only a device that left the node is held; one a config change renamed
  // (replicas, index IDs) is still there under its new ID, so only the
  // devices held already are judged again then.
  Advertised previous;
  if (node_changed) {
    previous = c_->advertised;
  } else {
    for (const auto& [resource, held] : c_->held) {
      for (const HeldDevice& h : held) previous[resource][h.id] = h.gpus;
    }
  }
  for (const std::string& resource : vanished) {
    auto it = holders.find(resource);
    if (it == holders.end() || it->second.empty()) continue;
    std::set<std::string> pods;
    for (const auto& [id, hs] : it->second) {
      for (const podresources::Holder& h : hs) pods.insert(h.pod_namespace + "/" + h.pod);
    }
    const std::string message =
        absl::StrCat("the new config no longer advertises ", resource, ", which ", pods.size(),
                     " pod(s) hold (", absl::StrJoin(pods, ", "),
                     "): they keep running, but a restarted kubelet cannot admit them again; "
                     "recreate them to request the new resource");
    log::Warn("a config change strands running pods",
              {{"resource", resource}, {"detail", message}});
    NodeEvent("GpuResourceStranded", "Warning", message);
  }
  HeldResult result = KeepHeldDevices(backends, previous, holders);
  if (result.held != c_->held) {
    for (const auto& [resource, held] : result.held) {
      for (const HeldDevice& h : held) {
        log::Warn("device left the node while a pod holds it: listed Unhealthy until released",
                  {{"resource", resource}, {"device", h.id}, {"holder", h.holder}});
      }
    }
    for (const auto& [resource, held] : c_->held) {
      for (const HeldDevice& h : held) {
        auto now = result.held.find(resource);
        const bool still = now != result.held.end() &&
                           std::any_of(now->second.begin(), now->second.end(),
                                       [&h](const HeldDevice& x) { return x.id == h.id; });
        if (!still) {
          log::Info("device that left the node is no longer held: no longer listed",
                    {{"resource", resource}, {"device", h.id}});
        }
      }
    }
  }
  if (absl::Status s = c_->plugins->Apply(result.backends); !s.ok()) {
    log::Error("cannot serve the resources", {{"error", s.message()}});
    return false;
  }
  c_->advertised = std::move(result.advertised);
  c_->held = std::move(result.held);
  if (log_served) {
    std::vector<std::string> names;
    for (const auto& b : result.backends) names.push_back(b->ResourceName());
    log::Info("serving resources", {{"resources", absl::StrJoin(names, ",")}});
  }
  return true;
}

absl::Status Daemon::SyncMps(
    const config::Config& cfg,
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends) {
  const std::vector<resources::MpsGpu> gpus = resources::MpsGpus(backends);
  if (gpus.empty()) {
    if (c_->mps != nullptr) {
      c_->mps->Stop();
      c_->mps.reset();
      log::Info("MPS daemons stopped: no GPU is shared through MPS any more");
    }
    return absl::OkStatus();
  }
  const bool agent = cfg.sharing.mps.agent;
  mps::SupervisorOptions o;
  o.pipe_root = o.log_root = cfg.sharing.mps.root;
  if (!agent) {  // the agent finds the control program itself
    absl::StatusOr<std::string> binary = mps::FindControlBinary(
        *options_.fs, cfg.EffectiveDriverRoot(), cfg.sharing.mps.control_binary);
    if (!binary.ok()) return binary.status();
    o.control_binary = *binary;
  }
  if (c_->mps != nullptr &&
      (c_->mps_agent != agent || c_->mps_options.control_binary != o.control_binary ||
       c_->mps_options.pipe_root != o.pipe_root)) {
    c_->mps->Stop();
    c_->mps.reset();
  }
  // Every client mounts <root>/shm as /dev/shm; the chart creates it too.
  std::error_code ec;
  std::filesystem::create_directories(cfg.sharing.mps.root + "/shm", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the MPS shared-memory directory ", cfg.sharing.mps.root,
                     "/shm: ", ec.message(), "; mount sharing.mps.root read-write"));
  }
  if (c_->mps == nullptr) {
    HealthBridge* bridge = c_->bridge.get();
    auto on_health = [bridge](const mps::GpuHealth& h) { bridge->OnMpsHealth(h); };
    if (agent) {
      c_->mps = std::make_unique<mps::AgentClient>(cfg.sharing.mps.root, on_health, *options_.fs);
    } else {
      c_->mps = std::make_unique<mps::Supervisor>(o, on_health, mps::PosixOs::Get(), *options_.fs,
                                                  c_->nvml.get());
    }
    c_->mps_options = o;
    c_->mps_agent = agent;
  }
  std::vector<mps::GpuSpec> specs;
  specs.reserve(gpus.size());
  for (const resources::MpsGpu& g : gpus) {
    specs.push_back(mps::GpuSpec{g.index, g.uuid, g.memory_limit_mib, g.active_thread_percentage});
  }
  if (absl::Status s = c_->mps->Apply(specs); !s.ok()) {
    // The supervisor retries with backoff; the replicas stay Unhealthy meanwhile.
    log::Warn("MPS is not up on every shared GPU yet", {{"error", s.message()}});
  } else if (agent) {
    log::Info("MPS list handed to the MPS agent; replicas are Healthy as it reports their daemons",
              {{"gpus", specs.size()}, {"root", cfg.sharing.mps.root}});
  } else {
    log::Info("MPS daemons ready", {{"gpus", specs.size()}, {"root", cfg.sharing.mps.root}});
  }
  return absl::OkStatus();
}

absl::Status Daemon::SyncCdiSpec(
    const config::Config& cfg,
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& backends) {
  cdi::SpecWriter writer(*options_.fs, cfg.cdi_root);
  const bool wanted =
      std::any_of(cfg.device_list_strategy.begin(), cfg.device_list_strategy.end(), [](auto s) {
        return s == config::DeviceListStrategy::kCdiCri ||
               s == config::DeviceListStrategy::kCdiAnnotations;
      });
  if (!wanted) {
    // CDI off: a spec of ours left from before would name devices nobody serves.
    if (absl::Status s = writer.RemoveAll(); !s.ok()) {
      log::Warn("cannot remove a stale CDI spec", {{"error", s.message()}});
    }
    return absl::OkStatus();
  }
  // The driver's user space, for the running driver, under the driver root.
  cdi::DriverEdits driver;
  driver.files =
      driver::FindDriverFiles(*options_.fs, {cfg.EffectiveDriverRoot(), cfg.driver_root},
                              c_->inventory != nullptr ? c_->inventory->driver_version : "");
  driver.hook_path = cdi::UsableHook(*options_.fs, cfg.nvidia_cdi_hook_path, &driver.files.notes);
  return writer.Write(backends, driver);
}

void Daemon::StopAll() {
  if (c_ == nullptr) return;
  if (c_->settings) c_->settings->Stop();
  if (c_->changes) c_->changes->Stop();
  if (c_->sampler) c_->sampler->Stop();
  if (c_->watcher) c_->watcher->Stop();
  if (c_->health) c_->health->Stop();
  if (c_->bridge) c_->bridge->SetLabeller(nullptr);
  if (c_->labeller) c_->labeller->Stop();
  if (c_->plugins) c_->plugins->Stop();
  if (c_->mps) c_->mps->Detach();  // with the agent, the daemons outlive the plugin
  if (c_->nvml && c_->nvml_up) {
    c_->nvml->Shutdown();
    c_->nvml_up = false;
  }
  if (c_->http) c_->http->Stop();
}

}  // namespace gdp::daemon
