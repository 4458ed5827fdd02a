#include "src/config/overrides.h"

#include <CLI/CLI.hpp>

#include <cstdlib>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace gdp::config {

const std::vector<OverrideSpec>& OverrideTable() {
  static const std::vector<OverrideSpec> kTable = {
      {"flags.migStrategy", "--mig-strategy", "MIG_STRATEGY",
       "MIG strategy: none, single or mixed"},
      {"flags.failOnInitError", "--fail-on-init-error", "FAIL_ON_INIT_ERROR",
       "exit when NVML cannot be initialised (false: stay up with no devices and retry)", true},
      {"flags.nvidiaDriverRoot", "--driver-root", "NVIDIA_DRIVER_ROOT",
       "host path of the driver root (/ or /run/nvidia/driver)", false, false,
       "--nvidia-driver-root"},
      {"flags.containerDriverRoot", "--container-driver-root", "CONTAINER_DRIVER_ROOT",
       "where this container sees the driver root (default: the driver root)", false, false,
       "--driver-root-ctr-path", "DRIVER_ROOT_CTR_PATH"},
      {"flags.nvidiaDevRoot", "--dev-root", "NVIDIA_DEV_ROOT",
       "host path of the root of /dev/nvidia* (default: the driver root)", false, false,
       "--nvidia-dev-root"},
      {"flags.nvmlLibrary", "--nvml-library", "NVML_LIBRARY", "explicit path of libnvidia-ml.so.1"},
      {"flags.requireMinimumVersions", "--require-minimum-versions", "REQUIRE_MINIMUM_VERSIONS",
       "refuse drivers older than 450 / CUDA 10.0 (false: only warn)", true},
      {"flags.nodeName", "--node-name", "NODE_NAME",
       "this node's name (spec.nodeName): metrics' node label, the Node to label"},
      {"flags.deployLabel", "--deploy-label", "DEPLOY_LABEL",
       "node label that pauses (paused-*, false) and resumes (true) the plugin; empty: ignored"},
      {"flags.nodeConfig.configMap", "--config-map", "CONFIG_MAP",
       "namespace/name of a ConfigMap of named configs, one picked per node by a label"},
      {"flags.nodeConfig.label", "--config-node-label", "NODE_LABEL",
       "the node label that names this node's config"},
      {"flags.nodeConfig.default", "--default-config", "DEFAULT_CONFIG",
       "the named config for nodes without the label"},
      {"flags.nodeConfig.fallbackStrategies", "--fallback-strategies", "FALLBACK_STRATEGIES",
       "comma-separated, in order: named, single, empty"},
      {"flags.rescanInterval", "--rescan-interval", "RESCAN_INTERVAL",
       "how often to check whether the GPUs, MIG layout or driver changed (0: events only)"},
      {"flags.plugin.passDeviceSpecs", "--pass-device-specs", "PASS_DEVICE_SPECS",
       "return DeviceSpecs for /dev/nvidia* in Allocate", true},
      {"flags.plugin.deviceListStrategy", "--device-list-strategy", "DEVICE_LIST_STRATEGY",
       "comma-separated: envvar, volume-mounts, cdi-annotations, cdi-cri"},
      {"flags.plugin.deviceIDStrategy", "--device-id-strategy", "DEVICE_ID_STRATEGY",
       "IDs in NVIDIA_VISIBLE_DEVICES: uuid or index"},
      {"flags.plugin.pluginDirectory", "--plugin-directory", "PLUGIN_DIRECTORY",
       "the kubelet's device-plugin directory"},
      {"flags.plugin.resourceName", "--resource-name", "RESOURCE_NAME",
       "extended resource name to advertise"},
      {"flags.plugin.cdiRoot", "--cdi-root", "CDI_ROOT",
       "directory the CDI spec is written to (with a cdi-* device list strategy)"},
      {"flags.plugin.useResourcePatterns", "--use-resource-patterns", "USE_RESOURCE_PATTERNS",
       "advertise GPUs and MIG devices under the names resources.gpus/mig patterns give them",
       true},
      {"flags.plugin.cdiAnnotationPrefix", "--cdi-annotation-prefix", "CDI_ANNOTATION_PREFIX",
       "prefix of the CDI annotation keys (cdi-annotations strategy)"},
      {"flags.plugin.nvidiaCTKPath", "--nvidia-cdi-hook-path", "NVIDIA_CDI_HOOK_PATH",
       "accepted for NVIDIA's plugin's sake; the CDI specs written here run no hook", false, false,
       "--nvidia-ctk-path", "NVIDIA_CTK_PATH"},
      {"flags.gdrcopyEnabled", "--gdrcopy-enabled", "GDRCOPY_ENABLED",
       "give containers GDRCopy's /dev/gdrdrv (and NVIDIA_GDRCOPY=enabled)", true},
      {"flags.gdsEnabled", "--gds-enabled", "GDS_ENABLED",
       "give containers GPUDirect Storage's /dev/nvidia-fs* (and NVIDIA_GDS=enabled)", true},
      {"flags.mofedEnabled", "--mofed-enabled", "MOFED_ENABLED",
       "give containers /dev/infiniband/* (and NVIDIA_MOFED=enabled)", true},
      {"flags.deviceDiscoveryStrategy", "--device-discovery-strategy", "DEVICE_DISCOVERY_STRATEGY",
       "auto or nvml (GPUs are always found through NVML)"},
      {"imex.channelIDs", "--imex-channel-ids", "IMEX_CHANNEL_IDS",
       "IMEX channels to give containers (comma-separated channel numbers)"},
      {"imex.required", "--imex-required", "IMEX_REQUIRED",
       "a missing IMEX channel is an error rather than skipped", true},
      {"sharing.allocationPolicy", "--allocation-policy", "ALLOCATION_POLICY",
       "how replicas are preferred: distributed|packed", false, false,
       "--shared-devices-allocation-policy", "SHARED_DEVICES_ALLOCATION_POLICY"},
      {"sharing.timeSlicing.renameByDefault", "--time-slicing-rename-by-default",
       "TIME_SLICING_RENAME_BY_DEFAULT", "advertise time-slicing replicas as <name>.shared", true},
      {"sharing.timeSlicing.failRequestsGreaterThanOne",
       "--time-slicing-fail-requests-greater-than-one",
       "TIME_SLICING_FAIL_REQUESTS_GREATER_THAN_ONE",
       "refuse containers that ask for more than one time-slicing replica", true},
      {"sharing.mps.renameByDefault", "--mps-rename-by-default", "MPS_RENAME_BY_DEFAULT",
       "advertise MPS replicas as <name>.shared", true},
      {"sharing.mps.failRequestsGreaterThanOne", "--mps-fail-requests-greater-than-one",
       "MPS_FAIL_REQUESTS_GREATER_THAN_ONE",
       "refuse containers that ask for more than one MPS replica", true},
      {"sharing.mps.root", "--mps-root", "MPS_ROOT",
       "host directory for the MPS pipe, log and shm directories"},
      {"sharing.mps.controlBinary", "--mps-control-binary", "MPS_CONTROL_BINARY",
       "path of nvidia-cuda-mps-control (default: under the driver root)"},
      {"health.enabled", "--disable-health-checks", "DISABLE_HEALTH_CHECKS",
       "do not watch XID events or probe devices", true, true},
      {"health.ignoredXids", "--health-ignored-xids", "HEALTH_IGNORED_XIDS",
       "comma-separated XIDs to ignore (replaces the default list)"},
      {"health.additionalIgnoredXids", "--health-additional-ignored-xids",
       "HEALTH_ADDITIONAL_IGNORED_XIDS", "comma-separated XIDs to ignore besides the default list"},
      {"health.criticalXids", "--health-critical-xids", "HEALTH_CRITICAL_XIDS",
       "comma-separated XIDs never to ignore"},
      {"health.recoveryQuietPeriod", "--health-recovery-quiet-period",
       "HEALTH_RECOVERY_QUIET_PERIOD",
       "quiet time before an XID-failed GPU is healthy again (0: never)"},
      {"health.probeInterval", "--health-probe-interval", "HEALTH_PROBE_INTERVAL",
       "how often devices are probed for loss and recovery"},
      {"metrics.bindAddress", "--metrics-bind-address", "METRICS_BIND_ADDRESS",
       "address of the /metrics, /healthz and /readyz server"},
      {"metrics.port", "--metrics-port", "METRICS_PORT", "port of the metrics server (0: any)"},
      {"metrics.sampleInterval", "--metrics-sample-interval", "METRICS_SAMPLE_INTERVAL",
       "how often NVML and the kubelet are sampled for /metrics"},
      {"metrics.podResourcesSocket", "--pod-resources-socket", "POD_RESOURCES_SOCKET",
       "the kubelet's pod-resources socket (empty: no pod labels)"},
      {"metrics.dcgmCompatibility", "--metrics-dcgm-compatibility", "METRICS_DCGM_COMPATIBILITY",
       "also emit dcgm-exporter metric names and labels", true},
      {"log.level", "--log-level", "LOG_LEVEL", "debug, info, warn or error"},
      {"log.format", "--log-format", "LOG_FORMAT", "text or json"},
      {"labels.enabled", "--node-labels", "NODE_LABELS",
       "label the node with its GPUs and record node events for GPU health", true},
      {"labels.kubeconfig", "--kubeconfig", "KUBECONFIG",
       "kubeconfig file for the API server (default: the pod's service account)"},
      {"labels.nfdFeatureFile", "--nfd-feature-file", "NFD_FEATURE_FILE",
       "write the labels to this NFD feature file instead of the Node"},
      {"labels.events", "--node-events", "NODE_EVENTS",
       "record node events for GPU health transitions", true},
      {"labels.resyncInterval", "--labels-resync-interval", "LABELS_RESYNC_INTERVAL",
       "re-apply the labels this often"},
  };
  return kTable;
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    // The daemon reads its environment at start and never changes it.
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::vector<std::string> OptionNames(const char* primary, const char* aliases) {
  std::vector<std::string> names = {primary};
  if (aliases != nullptr) {
    for (absl::string_view a : absl::StrSplit(aliases, ',', absl::SkipEmpty())) {
      names.emplace_back(a);
    }
  }
  return names;
}

namespace {

// A health-check variable's value: its words `all` and `xids`, and the rest
// (the XIDs), comma-joined.
struct HealthCheckValue {
  bool all = false;
  bool xids_word = false;
  std::string xids;
};
HealthCheckValue ParseHealthCheckValue(const std::string& value) {
  HealthCheckValue out;
  std::vector<std::string> numbers;
  for (absl::string_view t : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    const std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(t));
    if (word == "all") {
      out.all = true;
    } else if (word == "xids") {
      out.xids_word = true;
    } else {
      numbers.push_back(word);
    }
  }
  out.xids = absl::StrJoin(numbers, ",");
  return out;
}

// NVIDIA's DP_DISABLE_HEALTHCHECKS / DP_ENABLE_HEALTHCHECKS, as overrides of
// the health fields they mean; none where one of ours sets that field.
void HealthCheckVariables(const EnvLookup& env, std::vector<Override>* overrides) {
  auto set_by_us = [&](const std::string& path) {
    return std::any_of(overrides->begin(), overrides->end(),
                       [&](const Override& o) { return o.path == path; });
  };
  if (std::optional<std::string> v = env("DP_DISABLE_HEALTHCHECKS"); v && !v->empty()) {
    const HealthCheckValue h = ParseHealthCheckValue(*v);
    if (h.all || h.xids_word) {
      if (!set_by_us("health.enabled")) {
        overrides->push_back(Override{"health.enabled", "false", "DP_DISABLE_HEALTHCHECKS"});
      }
    } else if (!h.xids.empty() && !set_by_us("health.additionalIgnoredXids")) {
      overrides->push_back(
          Override{"health.additionalIgnoredXids", h.xids, "DP_DISABLE_HEALTHCHECKS"});
    }
  }
  if (std::optional<std::string> v = env("DP_ENABLE_HEALTHCHECKS"); v && !v->empty()) {
    const HealthCheckValue h = ParseHealthCheckValue(*v);
    if (h.all) {
      if (!set_by_us("health.ignoredXids")) {
        overrides->push_back(Override{"health.ignoredXids", "", "DP_ENABLE_HEALTHCHECKS"});
      }
    } else if (!h.xids.empty() && !set_by_us("health.criticalXids")) {
      overrides->push_back(Override{"health.criticalXids", h.xids, "DP_ENABLE_HEALTHCHECKS"});
    }
  }
}

}  // namespace

std::vector<Override> CollectOverrides(const FlagValues& flags, const EnvLookup& env) {
  std::vector<Override> overrides;
  for (const OverrideSpec& spec : OverrideTable()) {
    // A flag under any of its names (RegisterFlags stores them under the
    // primary one; a caller may hand in an alias too).
    bool found = false;
    for (const std::string& name : OptionNames(spec.flag, spec.flag_aliases)) {
      if (auto it = flags.find(name); it != flags.end()) {
        overrides.push_back(Override{spec.path, it->second, name, spec.negate});
        found = true;
        break;
      }
    }
    if (found) continue;
    // An empty variable counts as unset: manifests often template "" in.
    for (const std::string& name : OptionNames(spec.env, spec.env_aliases)) {
      if (std::optional<std::string> value = env(name); value && !value->empty()) {
        overrides.push_back(Override{spec.path, *value, name, spec.negate});
        break;
      }
    }
  }
  HealthCheckVariables(env, &overrides);
  // NVIDIA's KUBELET_SOCKET names the kubelet's socket; the plugin directory
  // is the folder it is in (the kubelet always names it kubelet.sock).
  if (std::optional<std::string> v = env("KUBELET_SOCKET"); v && !v->empty()) {
    const bool ours = std::any_of(overrides.begin(), overrides.end(), [](const Override& o) {
      return o.path == "flags.plugin.pluginDirectory";
    });
    const size_t slash = v->rfind('/');
    if (!ours && slash != std::string::npos && slash > 0) {
      overrides.push_back(
          Override{"flags.plugin.pluginDirectory", v->substr(0, slash), "KUBELET_SOCKET"});
    }
  }
  return overrides;
}

std::string ConfigFilePath(const FlagValues& flags, const EnvLookup& env) {
  if (auto it = flags.find(kConfigFileFlag); it != flags.end()) return it->second;
  return env(kConfigFileEnv).value_or("");
}

void RegisterFlags(CLI::App& app, FlagValues* values) {
  auto add = [&](const std::string& flag, const std::string& help, bool is_switch) {
    CLI::Option* opt = app.add_option_function<std::string>(
        flag, [values, flag](const std::string& v) { (*values)[flag] = v; }, help);
    if (is_switch) opt->expected(0, 1)->default_str("true");
  };
  add(kConfigFileFlag, absl::StrCat("YAML config file (env ", kConfigFileEnv, ")"), false);
  for (const OverrideSpec& spec : OverrideTable()) {
    // Aliases are other names of the same option, stored under the primary one.
    std::string names = spec.flag;
    if (spec.flag_aliases != nullptr) absl::StrAppend(&names, ",", spec.flag_aliases);
    std::string envs = spec.env;
    if (spec.env_aliases != nullptr) absl::StrAppend(&envs, ", ", spec.env_aliases);
    const std::string primary = spec.flag;
    CLI::Option* opt = app.add_option_function<std::string>(
        names, [values, primary](const std::string& v) { (*values)[primary] = v; },
        absl::StrCat(spec.help, " (env ", envs, "; ", spec.path, ")"));
    if (spec.is_switch) opt->expected(0, 1)->default_str("true");
  }
}

}  // namespace gdp::config
