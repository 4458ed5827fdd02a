// Config: the daemon's whole configuration as a plain value.
//
// Sources, highest precedence first: command-line flags, environment
// variables, the YAML file (`version: v1`), built-in defaults. Decoding is
// strict (an unknown field or a wrong type is an error naming the field path,
// e.g. `flags.plugin.deviceIDStrategy`), and Validate() reports every problem
// at once. docs/configuration.md lists every field with its default.
//
// A Config is immutable once loaded; the daemon shares it as
// std::shared_ptr<const Config> and swaps in a new one on a valid reload
// (src/config/config_watcher.h). Every function here is pure and thread-safe.
// Flag and environment names live in src/config/overrides.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/config/named_configs.h"

namespace gdp::config {

enum class MigStrategy { kNone, kSingle, kMixed };
enum class DeviceIdStrategy { kUuid, kIndex };
enum class DeviceListStrategy { kEnvvar, kVolumeMounts, kCdiAnnotations, kCdiCri };

struct HealthConfig {
  bool enabled = true;
  // XIDs that are application faults, not device faults: never mark a GPU unhealthy.
  std::vector<unsigned> ignored_xids = {13, 31, 43, 45, 68, 109};
  // How long a GPU made unhealthy by an XID must stay quiet (and answer NVML
  // normally) before it is healthy again. Zero: never recover without a restart.
  std::chrono::seconds recovery_quiet_period{300};
  // How often devices are probed for being lost or recovered.
  std::chrono::milliseconds probe_interval{5000};

  friend bool operator==(const HealthConfig&, const HealthConfig&) = default;
};

// How replicas of shared GPUs are handed out (GetPreferredAllocation).
enum class AllocationPolicy {
  kDistributed,  // spread a request over the least-used physical GPUs
  kPacked,       // fill the most-used physical GPU first
};

// Which devices of a resource a sharing entry covers: all of them, the first
// `count` in index order, or those listed by index ("3", or "3:1" for MIG
// device 1 of GPU 3) or UUID (GPU-... or MIG-...).
struct DeviceSelector {
  bool all = true;
  unsigned count = 0;  // used when !all and ids is empty
  std::vector<std::string> ids;
  friend bool operator==(const DeviceSelector&, const DeviceSelector&) = default;
};

// One entry of resources.gpus or resources.mig (NVIDIA's format): devices
// whose product name (GPUs) or MIG profile (MIG devices) matches the glob
// `pattern` are advertised as `name` (nvidia.com/ prefixed when it has no
// domain), when flags.plugin.useResourcePatterns is on.
struct ResourcePattern {
  std::string pattern;
  std::string name;
  friend bool operator==(const ResourcePattern&, const ResourcePattern&) = default;
};

// One entry of sharing.timeSlicing.resources or sharing.mps.resources.
struct SharedResource {
  std::string name;    // the resource shared: nvidia.com/gpu, nvidia.com/mig-1g.10gb, ...
  std::string rename;  // where the replicas are advertised; empty: see renameByDefault
  unsigned replicas = 0;
  DeviceSelector devices;
  // MPS only. The pinned device memory each replica may use; 0: the GPU's
  // memory divided by replicas.
  uint64_t memory_limit_bytes = 0;
  // MPS only. The share of the GPU's SMs each replica may use, 1 to 100; 0:
  // 100 / replicas.
  unsigned active_thread_percentage = 0;
  friend bool operator==(const SharedResource&, const SharedResource&) = default;
};

// Time-slicing: each selected device is advertised `replicas` times as
// <ID>::<n>; the replicas share the GPU with no memory or fault isolation
// (docs/sharing.md).
struct TimeSlicingConfig {
  // The replicas are advertised as <name>.shared unless an entry says `rename`.
  bool rename_by_default = false;
  // A container asking for more than one replica is refused: two replicas of
  // one GPU are not twice the GPU.
  bool fail_requests_greater_than_one = false;
  std::vector<SharedResource> resources;
  friend bool operator==(const TimeSlicingConfig&, const TimeSlicingConfig&) = default;
};

// MPS: as time-slicing, and each replica is an MPS client with a pinned
// memory limit and an SM share, enforced by one MPS control daemon per shared
// GPU that the plugin runs.
struct MpsConfig {
  bool rename_by_default = false;
  bool fail_requests_greater_than_one = false;
  std::vector<SharedResource> resources;
  // Host directory under which each shared GPU gets <root>/<GPU UUID>/{pipe,log}
  // and all clients share <root>/shm as /dev/shm.
  std::string root = "/run/nvidia/mps";
  // nvidia-cuda-mps-control; empty: <driver root>/usr/bin/nvidia-cuda-mps-control,
  // then /usr/bin/nvidia-cuda-mps-control.
  std::string control_binary;
  // The daemons are run by `gpu-device-plugin mps-agent` (its own DaemonSet),
  // handed the list through <root>/desired.json (src/mps/agent.h), so they
  // outlive the plugin; off: the plugin runs them as its own children.
  bool agent = false;
  friend bool operator==(const MpsConfig&, const MpsConfig&) = default;
};

struct SharingConfig {
  TimeSlicingConfig time_slicing;
  MpsConfig mps;
  AllocationPolicy allocation_policy = AllocationPolicy::kDistributed;
  bool Enabled() const { return !time_slicing.resources.empty() || !mps.resources.empty(); }
  friend bool operator==(const SharingConfig&, const SharingConfig&) = default;
};

// flags.nodeConfig: several named configs in one ConfigMap, one picked per
// node by a node label (src/config/named_configs.h says the order). The
// daemon watches its Node and that ConfigMap through the API server and
// applies a change live, like a file reload. These settings themselves come
// from flags, environment or the config file, never from a named config.
struct NodeConfigSettings {
  // "namespace/name" of the ConfigMap; empty: no named configs.
  std::string config_map;
  std::string label = "nvidia.com/device-plugin.config";
  std::string default_name;  // used when the node has no label; empty: none
  std::vector<FallbackStrategy> fallback_strategies = {FallbackStrategy::kNamed,
                                                       FallbackStrategy::kSingle};
  friend bool operator==(const NodeConfigSettings&, const NodeConfigSettings&) = default;
};

// labels: GPU Feature Discovery node labels and node events (docs/labels.md).
struct LabelsConfig {
  // Label the node and record node events for GPU health transitions.
  bool enabled = true;
  // A kubeconfig file; empty: the pod's service account (or, outside a pod,
  // the kubeconfig kubectl would use).
  std::string kubeconfig;
  // When set, write the labels to this Node Feature Discovery feature file
  // (key=value lines) instead of patching the Node.
  std::string nfd_feature_file;
  // Record node events (XID, GPU lost, recovered) through the API server.
  bool events = true;
  // Re-apply the labels this often even when nothing changed (someone removed them).
  std::chrono::seconds resync_interval{300};

  friend bool operator==(const LabelsConfig&, const LabelsConfig&) = default;
};

struct Config {
  std::string version = "v1";

  // --- flags ---
  MigStrategy mig_strategy = MigStrategy::kNone;
  bool fail_on_init_error = true;
  // Host path of the driver root: where libnvidia-ml.so.1 and /dev/nvidia* live
  // on the host ("/" for a host-installed driver, /run/nvidia/driver for a
  // containerised one). Used in DeviceSpecs and CDI specs handed to the runtime.
  std::string driver_root = "/";
  // Where this process sees the driver root (a DaemonSet mounts the host's
  // driver root here). Empty: same as driver_root.
  std::string container_driver_root;
  // Explicit path of libnvidia-ml.so.1; overrides the search under the driver root.
  std::string nvml_library;
  // The host's sysfs: a GPU's NUMA node is read from <sysfs_root>/bus/pci/devices/<bus
  // id>/numa_node when the driver's NVML lacks nvmlDeviceGetNumaNodeId.
  std::string sysfs_root = "/sys";
  // Driver older than 450 or CUDA driver older than 10.0: refuse to start
  // (true) or only warn (false).
  bool require_minimum_versions = true;
  // The node this daemon runs on (a DaemonSet passes spec.nodeName as
  // NODE_NAME): the `node` label of GPU metrics, the Node the labeller labels
  // and records events on. Empty: no `node` label, no labels or events (with a
  // warning).
  std::string node_name;
  // How often the daemon checks, cheaply, whether the node's GPUs changed
  // under it (a GPU added or removed, a MIG re-layout, the driver leaving or
  // coming back) when no NVML event said so; a change found re-discovers the
  // GPUs and applies the difference. Zero: only events are followed.
  std::chrono::milliseconds rescan_interval{5000};
  // The node label by which NVIDIA's GPU Operator pauses the plugin
  // (paused-for-driver-upgrade, paused-for-mig-change, false: release NVML
  // and every device file, devices Unhealthy) and resumes it (true, or no
  // label). Empty: not followed (the chart can put it in the DaemonSet's
  // nodeSelector instead, to evict rather than pause).
  std::string deploy_label = "nvidia.com/gpu.deploy.device-plugin";
  NodeConfigSettings node_config;

  // --- flags.plugin ---
  bool pass_device_specs = true;
  std::vector<DeviceListStrategy> device_list_strategy = {DeviceListStrategy::kEnvvar};
  DeviceIdStrategy device_id_strategy = DeviceIdStrategy::kUuid;
  std::string plugin_directory = "/var/lib/kubelet/device-plugins";
  std::string resource_name = "nvidia.com/gpu";
  // Where the CDI spec of the advertised devices is written when a cdi-*
  // device list strategy is on (as this process sees it; a DaemonSet mounts
  // the host's /var/run/cdi at the same path).
  std::string cdi_root = "/var/run/cdi";
  // The prefix of the CDI annotation keys (cdi-annotations strategy).
  std::string cdi_annotation_prefix = "cdi.k8s.io/";
  // NVIDIA's nvidia-cdi-hook (or nvidia-ctk) on the host. When this process
  // sees it at that path, the CDI spec makes the driver libraries' links and
  // the container's ld cache with its create-symlinks and update-ldcache
  // hooks; empty or absent: the spec mounts the links instead and runs no hook.
  std::string nvidia_cdi_hook_path;
  // Host path of the root of the NVIDIA device nodes (/dev/nvidia*), as the
  // container runtime is told them. Empty: the driver root.
  std::string dev_root;
  // Device extras every container of a GPU resource gets (NVIDIA's names):
  // GDRCopy's /dev/gdrdrv, GPUDirect Storage's /dev/nvidia-fs*, MOFED's
  // /dev/infiniband/*, and IMEX channels
  // /dev/nvidia-caps-imex-channels/channel<N> (required: a missing channel is
  // an error rather than skipped).
  bool gdrcopy_enabled = false;
  bool gds_enabled = false;
  bool mofed_enabled = false;
  std::vector<unsigned> imex_channel_ids;
  bool imex_required = false;
  // resources.gpus / resources.mig, in order (the first match wins), acted on
  // only with use_resource_patterns (NVIDIA's plugin ignores them).
  std::vector<ResourcePattern> gpu_patterns;
  std::vector<ResourcePattern> mig_patterns;
  bool use_resource_patterns = false;

  // Fields of NVIDIA's config format that were given and that this plugin
  // accepts without acting on them, each "<path>: <why>", in field order.
  // The daemon logs them once; they never make a config invalid.
  std::vector<std::string> not_acted_on;

  // --- sharing (docs/sharing.md) ---
  SharingConfig sharing;

  // --- health ---
  HealthConfig health;

  // --- metrics (also serves /healthz and /readyz) ---
  std::string metrics_bind_address = "0.0.0.0";
  int metrics_port = 9101;  // 0: pick a free port (tests)
  // How often the sampler reads NVML and the kubelet; scrapes serve the last
  // sample. 10 s: fresher than the 15-60 s most Prometheus setups scrape at,
  // and about 1.5 ms of CPU per sample at 8 GPUs (docs/benchmarks.md).
  std::chrono::milliseconds metrics_sample_interval{10000};
  // The kubelet's pod-resources socket, for pod/namespace/container labels.
  // Empty: no pod attribution.
  std::string metrics_pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";
  // Also emit dcgm-exporter's metric names and labels (DCGM_FI_DEV_*).
  bool metrics_dcgm_compatibility = false;
  // TLS on the metrics port: PEM certificate (chain) and key files, both or
  // neither; reloaded when they change. Empty: plain HTTP.
  std::string metrics_tls_cert_file;
  std::string metrics_tls_key_file;
  // /metrics, /allocations and /inventory need a bearer token whose user the
  // API server allows to get the path (TokenReview, SubjectAccessReview);
  // needs TLS. Allowed answers are cached for cache_ttl, refusals for 10 s at most.
  bool metrics_auth_enabled = false;
  std::chrono::seconds metrics_auth_cache_ttl{120};

  // --- log ---
  std::string log_level = "info";   // debug|info|warn|error
  std::string log_format = "text";  // text|json

  // --- labels ---
  LabelsConfig labels;

  // Host path of the device nodes' root.
  const std::string& EffectiveDevRoot() const { return dev_root.empty() ? driver_root : dev_root; }

  // Where the daemon actually finds the driver root.
  const std::string& EffectiveDriverRoot() const {
    return container_driver_root.empty() ? driver_root : container_driver_root;
  }

  // Field-wise; a reload with an equal config changes nothing.
  friend bool operator==(const Config&, const Config&) = default;
};

// Where a setting came from; flags and environment are applied as overrides on
// top of the file, by field path.
struct Override {
  std::string path;    // field path in the YAML document, e.g. "flags.migStrategy"
  std::string value;   // the raw text, decoded as the field's YAML type
  std::string source;  // for messages: "--mig-strategy" or "MIG_STRATEGY"
  // The value is a boolean whose negation is the field's value
  // (--disable-health-checks sets health.enabled).
  bool negate = false;
  // A default of another kind rather than an override: it applies only where
  // the document and the other overrides say nothing (NVIDIA's defaults when
  // the binary runs as nvidia-device-plugin).
  bool fallback = false;
};

// Decodes a YAML document strictly and applies overrides. Returns
// InvalidArgument listing every problem (unknown fields, wrong types,
// validation failures), one per line, each naming its field path.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text,
                                   const std::vector<Override>& overrides = {});

// All validation problems of a decoded config, each naming its field; empty when valid.
std::vector<std::string> Validate(const Config& config);

// A boolean as Go's strconv.ParseBool reads it (1, t, true, ... and 0, f,
// false, ...), as flags and environment variables are read here and by
// NVIDIA's tools; nullopt for anything else.
std::optional<bool> ParseGoBool(const std::string& text);

// Reads `config_file` through `fs` (an empty name means no file: defaults plus
// overrides), parses and validates it. NotFound names the missing file;
// InvalidArgument starts with the file name and lists every problem.
absl::StatusOr<Config> LoadConfig(const FileSystem& fs, const std::string& config_file,
                                  const std::vector<Override>& overrides = {});

// Canonical names, as written in YAML.
const char* ToString(MigStrategy s);
const char* ToString(DeviceIdStrategy s);
const char* ToString(DeviceListStrategy s);
const char* ToString(AllocationPolicy s);

// Parses a memory size: a plain number of bytes or a Kubernetes quantity
// with a binary (Ki, Mi, Gi, Ti) or decimal (k, M, G, T) suffix.
absl::StatusOr<uint64_t> ParseMemorySize(const std::string& text);

}  // namespace gdp::config
