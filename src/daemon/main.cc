// gpu-device-plugin: parses the command line and runs the Daemon, or, as
// `gpu-device-plugin doctor`, runs the node checks (src/doctor), prints them
// and exits 1 on any FAIL, or, as `gpu-device-plugin inventory`, prints the
// GPUs a fresh NVML session finds, or, as `gpu-device-plugin cdi-spec`, prints
// the CDI spec the plugin writes for them, or, as `gpu-device-plugin config-manager`
// (or run as config-manager), is NVIDIA's config-manager. Run as
// nvidia-device-plugin it is the daemon with NVIDIA's defaults. Nothing else
// lives here.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdlib>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>
#include <variant>

#include "absl/synchronization/mutex.h"
#include "src/cdi/cdi.h"
#include "src/common/log.h"
#include "src/config/overrides.h"
#include "src/config/schema.h"
#include "src/daemon/config_manager.h"
#include "src/daemon/daemon.h"
#include "src/doctor/doctor.h"
#include "src/driver/driver_files.h"
#include "src/kube/object_watcher.h"
#include "src/kube/openssl_api_client.h"
#include "src/kube/rest_config.h"
#include "src/mps/agent.h"
#include "src/nvml/dl_nvml.h"
#include "src/nvml/inventory.h"
#include "src/nvml/inventory_codec.h"
#include "src/nvml/nvml_api.h"
#include "src/resources/resources.h"

namespace {

// Blocks the signals the daemon handles in this thread and, since it runs
// before any thread starts, in every thread: they are taken only by sigwait.
sigset_t BlockHandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// The name of a signal the daemon handles (strsignal is not thread-safe).
const char* SignalName(int sig) {
  switch (sig) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "unknown";
  }
}

// Host paths outside Config (the pod-resources socket and the CDI directory
// are config fields), shared by the daemon and the doctor.
struct HostPaths {
  std::string containerd_config;  // empty: the doctor looks in each distribution's place
};

void RegisterHostPathFlags(CLI::App& app, HostPaths* p) {
  app.add_option("--containerd-config", p->containerd_config,
                 "the container runtime's config file, checked by the doctor: containerd's, or "
                 "CRI-O's crio.conf with its crio.conf.d drop-ins (default: the first that exists "
                 "of /etc/containerd/config.toml and k3s', RKE2's and MicroK8s' places, else "
                 "/etc/crio/crio.conf)")
      ->envname("CONTAINERD_CONFIG");
}

// `gpu-device-plugin doctor`: the same configuration sources as the daemon.
int RunDoctor(const std::string& config_file, const std::vector<gdp::config::Override>& overrides,
              const HostPaths& paths, const std::string& output, bool mps_required) {
  gdp::doctor::Options o;
  absl::StatusOr<gdp::config::Config> cfg =
      gdp::config::LoadConfig(gdp::PosixFileSystem::Get(), config_file, overrides);
  if (cfg.ok()) {
    o = gdp::doctor::Options::FromConfig(*cfg);
  } else {
    o.config_error = std::string(cfg.status().message());
  }
  o.containerd_config = paths.containerd_config;
  o.mps_required = o.mps_required || mps_required;
  // NVML's loader logs what it resolves; the report is the output here.
  gdp::log::SetLevel(gdp::log::Level::kError);
  const gdp::doctor::Report report = gdp::doctor::RunChecks(o, gdp::doctor::Environment{});
  const std::string text =
      output == "json" ? gdp::doctor::RenderJson(report) : gdp::doctor::RenderTable(report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return report.HasFailure() ? 1 : 0;
}

// `gpu-device-plugin inventory`: the GPUs a fresh NVML session finds, as the
// JSON document src/nvml/inventory_codec.h describes. The daemon runs it as a
// child to see a changed node while its own session is busy; operators may run
// it too. With --nvml-library the config file is not read (the daemon passes
// the library it loaded).
// The configuration and the GPUs a fresh NVML session finds, for the
// commands that print what the plugin would do; an error is logged and its
// exit code (2: bad configuration, 1: NVML) returned instead.
struct Node {
  gdp::config::Config cfg;
  std::shared_ptr<const gdp::nvml::Inventory> inventory;
};
std::variant<Node, int> LoadNode(const std::string& config_file,
                                 const std::vector<gdp::config::Override>& overrides,
                                 bool explicit_library) {
  gdp::log::SetLevel(gdp::log::Level::kWarn);
  const gdp::FileSystem& fs = gdp::PosixFileSystem::Get();
  absl::StatusOr<gdp::config::Config> cfg =
      gdp::config::LoadConfig(fs, explicit_library ? std::string() : config_file, overrides);
  if (!cfg.ok()) {
    gdp::log::Error("invalid configuration", {{"error", cfg.status().message()}});
    return 2;
  }
  absl::StatusOr<std::string> path =
      gdp::nvml::FindNvmlLibrary(fs, cfg->EffectiveDriverRoot(), cfg->nvml_library);
  if (!path.ok()) {
    gdp::log::Error("cannot find NVML", {{"error", path.status().message()}});
    return 1;
  }
  absl::StatusOr<std::unique_ptr<gdp::nvml::DlNvml>> nvml = gdp::nvml::DlNvml::Open(*path);
  if (!nvml.ok()) {
    gdp::log::Error("cannot load NVML", {{"error", nvml.status().message()}});
    return 1;
  }
  if (absl::Status s = gdp::nvml::NvmlStatus(**nvml, (*nvml)->Init(), "nvmlInit"); !s.ok()) {
    gdp::log::Error("cannot initialise NVML", {{"error", s.message()}});
    return 1;
  }
  absl::StatusOr<std::shared_ptr<const gdp::nvml::Inventory>> inv = gdp::nvml::DiscoverInventory(
      **nvml, gdp::nvml::DiscoveryOptions{.sysfs_root = cfg->sysfs_root});
  (*nvml)->Shutdown();
  if (!inv.ok()) {
    gdp::log::Error("cannot discover the GPUs", {{"error", inv.status().message()}});
    return 1;
  }
  return Node{*std::move(cfg), *std::move(inv)};
}

int Print(const std::string& text) {
  return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() && std::fflush(stdout) == 0
             ? 0
             : 1;
}

int RunInventory(const std::string& config_file,
                 const std::vector<gdp::config::Override>& overrides, bool explicit_library) {
  std::variant<Node, int> node = LoadNode(config_file, overrides, explicit_library);
  if (const int* code = std::get_if<int>(&node)) return *code;
  return Print(gdp::nvml::EncodeInventory(*std::get<Node>(node).inventory));
}

// `gpu-device-plugin cdi-spec`: the CDI spec the plugin writes for this
// node's devices with this configuration; what it leaves out goes to the log.
int RunCdiSpec(const std::string& config_file, const std::vector<gdp::config::Override>& overrides,
               bool explicit_library) {
  std::variant<Node, int> loaded = LoadNode(config_file, overrides, explicit_library);
  if (const int* code = std::get_if<int>(&loaded)) return *code;
  const Node& node = std::get<Node>(loaded);
  const gdp::FileSystem& fs = gdp::PosixFileSystem::Get();
  auto resources = gdp::resources::BuildResources(*node.inventory, node.cfg, fs);
  if (!resources.ok()) {
    gdp::log::Error("cannot build the resources", {{"error", resources.status().message()}});
    return 2;
  }
  gdp::cdi::DriverEdits driver;
  driver.files = gdp::driver::FindDriverFiles(
      fs, {node.cfg.EffectiveDriverRoot(), node.cfg.driver_root}, node.inventory->driver_version);
  driver.hook_path = gdp::cdi::UsableHook(fs, node.cfg.nvidia_cdi_hook_path, &driver.files.notes);
  for (const std::string& note : driver.files.notes) {
    gdp::log::Warn("CDI spec without part of the driver", {{"why", note}});
  }
  return Print(gdp::cdi::BuildSpec(*resources, driver));
}

// `gpu-device-plugin mps-agent`: runs the MPS control daemons the plugin lists
// in the MPS root (src/mps/agent.h) until SIGTERM or SIGINT (blocked in
// `handled`), then quits them.
int RunMpsAgent(const std::string& config_file, const std::vector<gdp::config::Override>& overrides,
                const sigset_t& handled) {
  const gdp::FileSystem& fs = gdp::PosixFileSystem::Get();
  absl::StatusOr<gdp::config::Config> cfg = gdp::config::LoadConfig(fs, config_file, overrides);
  if (!cfg.ok()) {
    gdp::log::Error("invalid configuration", {{"error", cfg.status().message()}});
    return 2;
  }
  absl::StatusOr<std::string> binary =
      gdp::mps::FindControlBinary(fs, cfg->EffectiveDriverRoot(), cfg->sharing.mps.control_binary);
  if (!binary.ok()) {
    gdp::log::Error("cannot find the MPS control program", {{"error", binary.status().message()}});
    return 1;
  }
  gdp::mps::SupervisorOptions options;
  options.control_binary = *binary;
  options.pipe_root = options.log_root = cfg->sharing.mps.root;
  gdp::log::Info("MPS agent started",
                 {{"root", cfg->sharing.mps.root}, {"control_binary", *binary}});
  gdp::mps::Agent agent(cfg->sharing.mps.root, options, fs);
  for (;;) {
    agent.Tick();
    const timespec second{1, 0};
    const int sig = sigtimedwait(&handled, nullptr, &second);
    if (sig == SIGTERM || sig == SIGINT) {
      gdp::log::Info("signal received; quitting the MPS daemons", {{"signal", SignalName(sig)}});
      agent.Stop();
      return 0;
    }
  }
}

// `gpu-device-plugin config-manager` (or the binary run as config-manager):
// NVIDIA's config-manager, from its environment (src/daemon/config_manager.h).
// Ends on SIGTERM or SIGINT (blocked in `handled`) unless ONESHOT.
int RunConfigManager(const gdp::config::EnvLookup& env, const sigset_t& handled) {
  absl::StatusOr<gdp::daemon::ConfigManagerOptions> o =
      gdp::daemon::ConfigManagerOptionsFromEnv(env);
  if (!o.ok()) {
    gdp::log::Error("config-manager: invalid environment", {{"error", o.status().message()}});
    return 2;
  }
  const gdp::FileSystem& fs = gdp::PosixFileSystem::Get();
  absl::StatusOr<gdp::kube::RestConfig> rest =
      gdp::kube::LoadRestConfig(fs, gdp::kube::ProcessEnv(), o->kubeconfig);
  if (!rest.ok()) {
    gdp::log::Error("config-manager: no API server to read the node's labels from",
                    {{"error", rest.status().message()}});
    return 1;
  }
  gdp::kube::OpenSslApiClient api(*std::move(rest), &fs);
  gdp::daemon::ConfigManager manager(*o, fs);
  auto apply = [&](const nlohmann::json& node) {
    bool changed = false;
    absl::StatusOr<gdp::config::NamedConfigChoice> c = manager.Apply(node, &changed);
    if (!c.ok()) {
      gdp::log::Error("config-manager: cannot pick the named config; the current file is kept",
                      {{"error", c.status().message()}});
      return false;
    }
    if (changed) {
      gdp::log::Info("config-manager: config written",
                     {{"config", c->name.empty() ? "(empty)" : c->name},
                      {"why", c->why},
                      {"file", o->destination}});
      if (!o->oneshot && o->send_signal) {
        gdp::log::Info("config-manager: signalled the plugin",
                       {{"process", o->process_to_signal}, {"processes", manager.SignalPlugin()}});
      }
    }
    return true;
  };
  if (o->oneshot) {
    absl::StatusOr<nlohmann::json> node = api.Get("/api/v1/nodes/" + o->node_name);
    if (!node.ok()) {
      gdp::log::Error("config-manager: cannot read the node", {{"error", node.status().message()}});
      return 1;
    }
    return apply(*node) ? 0 : 1;
  }
  gdp::kube::ObjectWatcher::Options wo;
  wo.collection_path = "/api/v1/nodes";
  wo.name = o->node_name;
  gdp::kube::ObjectWatcher watcher(api, wo, [&](const std::optional<nlohmann::json>& node) {
    if (node.has_value()) {
      apply(*node);
    } else {
      gdp::log::Warn("config-manager: the node does not exist", {{"node", o->node_name}});
    }
  });
  watcher.Start();
  for (;;) {
    int sig = 0;
    if (sigwait(&handled, &sig) == 0 && (sig == SIGTERM || sig == SIGINT)) break;
  }
  watcher.Stop();
  return 0;
}

// glibc's malloc, tuned for a small long-running daemon (unless the operator
// set MALLOC_ARENA_MAX / MALLOC_TRIM_THRESHOLD_): by default each thread that
// allocates may get its own arena, and the trim threshold rises with the
// largest block freed, so memory freed by gRPC's threads stays resident. With
// two arenas and a fixed 128 KiB threshold, a soak of Allocates and health
// flaps no longer grows resident memory (docs/benchmarks.md).
// It runs first in main(), before any thread exists.
void TuneRuntime() {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): no other thread yet
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  // NOLINTNEXTLINE(concurrency-mt-unsafe): no other thread yet
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detection on: every lock gRPC takes also updates a global lock graph
  // (perf showed GraphCycles::GetId on gRPC's threads). A debugging aid, off
  // in the daemon; the tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace

int main(int argc, char** argv) {
  TuneRuntime();
  const sigset_t handled = BlockHandledSignals();

  CLI::App app{
      "gpu-device-plugin: advertises the node's NVIDIA GPUs to the kubelet.\n"
      "Every flag has an environment variable and a config-file field; precedence is\n"
      "flag > environment > file > default (docs/configuration.md)."};
  // Flags of the daemon are accepted after `doctor` too.
  app.fallthrough();
  gdp::config::FlagValues flags;
  gdp::config::RegisterFlags(app, &flags);
  HostPaths paths;
  RegisterHostPathFlags(app, &paths);
  CLI::App* doctor = app.add_subcommand(
      "doctor",
      "check that this node can run the plugin (NVML, driver, device nodes, kubelet, "
      "pod-resources, containerd, CDI, MIG, MPS); exits 1 on any FAIL");
  std::string output = "table";
  bool mps_required = false;
  doctor->add_option("-o,--output", output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  doctor->add_flag("--mps-required", mps_required,
                   "MPS sharing is configured: a missing nvidia-cuda-mps-control is a FAIL");
  CLI::App* config_manager = app.add_subcommand(
      "config-manager",
      "NVIDIA's config-manager: copy the named config the node's label picks (from the "
      "environment NVIDIA's chart sets: NODE_NAME, NODE_LABEL, CONFIG_FILE_SRCDIR, "
      "CONFIG_FILE_DST, DEFAULT_CONFIG, FALLBACK_STRATEGIES, ONESHOT, SEND_SIGNAL, SIGNAL, "
      "PROCESS_TO_SIGNAL)");
  config_manager->allow_extras();
  CLI::App* inventory = app.add_subcommand(
      "inventory",
      "print the GPUs a fresh NVML session finds, as JSON with every field the plugin uses");
  CLI::App* cdi_spec = app.add_subcommand(
      "cdi-spec",
      "print the CDI spec the plugin writes for this node's devices with this configuration "
      "(JSON; the plugin's counterpart of `nvidia-ctk cdi generate`)");
  CLI::App* mps_agent = app.add_subcommand(
      "mps-agent",
      "run the MPS control daemons the plugin lists in the MPS root, so that they outlive "
      "plugin restarts (the chart's MPS DaemonSet; sharing.mps.agent)");
  CLI::App* config_fields = app.add_subcommand(
      "config-fields",
      "print every config field (path, type, default, flag, environment variable, meaning) as "
      "the Markdown table of docs/configuration.md");
  CLI11_PARSE(app, argc, argv);
  if (config_fields->parsed()) {
    std::fputs(gdp::config::detail::FieldsMarkdown().c_str(), stdout);
    return 0;
  }

  const auto env = gdp::config::ProcessEnv();
  // Run as nvidia-device-plugin (the command NVIDIA's chart runs), NVIDIA's
  // defaults apply where nothing else sets the field: the chart mounts the
  // driver root at /driver-root, and passes no DeviceSpecs.
  std::vector<gdp::config::Override> nvidia_defaults;
  if (std::string_view(argv[0]).ends_with("nvidia-device-plugin")) {
    const char* source = "nvidia-device-plugin's default";
    nvidia_defaults = {{"flags.containerDriverRoot", "/driver-root", source, false, true},
                       {"flags.plugin.passDeviceSpecs", "false", source, false, true}};
  }
  auto overrides_of = [&](const gdp::config::FlagValues& f) {
    std::vector<gdp::config::Override> o = gdp::config::CollectOverrides(f, env);
    o.insert(o.end(), nvidia_defaults.begin(), nvidia_defaults.end());
    return o;
  };
  if (doctor->parsed()) {
    return RunDoctor(gdp::config::ConfigFilePath(flags, env), overrides_of(flags), paths, output,
                     mps_required);
  }
  if (config_manager->parsed() || std::string_view(argv[0]).ends_with("config-manager")) {
    return RunConfigManager(env, handled);
  }
  if (inventory->parsed()) {
    return RunInventory(gdp::config::ConfigFilePath(flags, env), overrides_of(flags),
                        app.count("--nvml-library") > 0);
  }
  if (mps_agent->parsed()) {
    return RunMpsAgent(gdp::config::ConfigFilePath(flags, env), overrides_of(flags), handled);
  }
  if (cdi_spec->parsed()) {
    return RunCdiSpec(gdp::config::ConfigFilePath(flags, env), overrides_of(flags),
                      app.count("--nvml-library") > 0);
  }
  gdp::daemon::DaemonOptions options;
  options.config_file = gdp::config::ConfigFilePath(flags, env);
  options.overrides = overrides_of(flags);
  options.containerd_config = paths.containerd_config;
  // The daemon runs this binary's `inventory` to look at a changed node.
  std::array<char, 4096> exe{};
  if (const ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size() - 1); n > 0) {
    options.discovery_exe.assign(exe.data(), static_cast<size_t>(n));
  }
  gdp::daemon::Daemon daemon(std::move(options));

  // The signal thread: TERM and INT stop, HUP reloads. It ends on the stop
  // signal, or on a SIGTERM this process sends itself when Run() returns on
  // its own.
  std::thread signals([&daemon, handled] {
    for (;;) {
      int sig = 0;
      if (sigwait(&handled, &sig) != 0) continue;
      if (sig == SIGHUP) {
        daemon.RequestReload();
        continue;
      }
      gdp::log::Info("signal received; shutting down", {{"signal", SignalName(sig)}});
      daemon.RequestStop();
      return;
    }
  });
  const int code = daemon.Run();
  // Run() may return without a signal (fatal start error): wake the thread.
  // The SIGTERM is process-directed; every thread blocks it, so only the
  // signal thread's sigwait takes it. If that thread has already returned,
  // the signal stays pending, blocked, until the process exits.
  kill(getpid(), SIGTERM);
  signals.join();
  return code;
}
