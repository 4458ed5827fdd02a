// The schema table (schema.h says what a row holds) and what is read off it.
#include "src/config/schema.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/config/decoder.h"

namespace gdp::config::detail {
namespace {

// Debian's Abseil has its own string_view type; convert at the boundary.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// --- codecs: how a row's value is decoded, by the accessor of its Config
// member (a generic lambda, [](auto& c) -> auto& { return c.member; }, so it
// serves a const Config for `show` too) ---

template <typename Get>
Codec BoolOf(Get get) {
  return {FieldKind::kBool,
          [get](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.Bool(raw)) get(d.config) = *v;
          },
          [get](const Config& c) -> std::string { return get(c) ? "true" : "false"; }};
}

template <typename Get>
Codec StringOf(Get get) {
  return {FieldKind::kScalar,
          [get](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.String(raw)) get(d.config) = *v;
          },
          [get](const Config& c) -> std::string { return get(c); }};
}

template <typename Get>
Codec IntOf(Get get, int64_t min, int64_t max) {
  return {FieldKind::kScalar,
          [get, min, max](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.Int(raw, min, max)) get(d.config) = static_cast<int>(*v);
          },
          [get](const Config& c) -> std::string { return absl::StrCat(get(c)); }};
}

// An enum of config.h, its words those of ToString(E).
template <typename E, typename Get>
Codec EnumOf(Get get, const std::vector<std::string>& names, std::initializer_list<E> values) {
  std::vector<E> all(values);
  return {FieldKind::kScalar,
          [get, &names, all](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.Enum(raw, names)) {
              for (E e : all) {
                if (*v == ToString(e)) get(d.config) = e;
              }
            }
          },
          [get](const Config& c) -> std::string { return ToString(get(c)); }};
}

// A string that must be one of `names`.
template <typename Get>
Codec WordOf(Get get, const std::vector<std::string>& names) {
  return {FieldKind::kScalar,
          [get, &names](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.Enum(raw, names)) get(d.config) = *v;
          },
          [get](const Config& c) -> std::string { return get(c); }};
}

// A list of enum words (a string is a one-item or comma-separated list), all or nothing.
template <typename E, typename Get>
Codec EnumListOf(Get get, const std::vector<std::string>& names, std::initializer_list<E> values) {
  std::vector<E> all(values);
  return {FieldKind::kList,
          [get, &names, all](Decoder& dec, const Raw& raw, Decoding& d) {
            auto items = dec.List(raw, /*allow_scalar=*/true);
            if (!items) return;
            std::vector<E> out;
            for (const Raw& item : *items) {
              auto v = dec.Enum(item, names);
              if (!v) return;
              for (E e : all) {
                if (*v == ToString(e)) out.push_back(e);
              }
            }
            get(d.config) = out;
          },
          [get](const Config& c) -> std::string {
            std::vector<std::string> words;
            for (E e : get(c)) words.emplace_back(ToString(e));
            return absl::StrCat("[", absl::StrJoin(words, ", "), "]");
          }};
}

// A duration, a whole number of Unit (named in errors).
template <typename Unit, typename Get>
Codec DurationOf(Get get, const char* unit_name) {
  return {FieldKind::kScalar,
          [get, unit_name](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.WholeDuration<Unit>(raw, unit_name)) get(d.config) = *v;
          },
          [get](const Config& c) -> std::string { return FormatDuration(get(c)); }};
}

std::string ShowList(const std::vector<unsigned>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
}

// One of health's XID lists, combined with the others once all are read.
Codec XidListOf(std::optional<std::vector<unsigned>> Decoding::*list) {
  return {FieldKind::kList,
          [list](Decoder& dec, const Raw& raw, Decoding& d) {
            d.*list = dec.UintList(raw, /*allow_scalar=*/false, kMinXid, kMaxXid);
          },
          [](const Config&) -> std::string { return "[]"; }};
}

// A field of NVIDIA's format checked for its type and otherwise not acted on.
enum class Check { kBool, kString, kDuration };
Codec Checked(Check check) {
  return {check == Check::kBool ? FieldKind::kBool : FieldKind::kScalar,
          [check](Decoder& dec, const Raw& raw, Decoding&) {
            switch (check) {
              case Check::kBool:
                dec.Bool(raw);
                break;
              case Check::kString:
                dec.String(raw);
                break;
              case Check::kDuration:
                dec.Duration(raw);
                break;
            }
          },
          [](const Config&) -> std::string { return ""; }};
}

Codec VersionCodec() {
  return {FieldKind::kScalar,
          [](Decoder& dec, const Raw& raw, Decoding&) {
            if (auto v = dec.String(raw); v && *v != "v1") {
              dec.Error(raw.where(),
                        absl::StrCat(Quote(*v), " is not supported; this plugin reads version v1"));
            }
          },
          [](const Config& c) -> std::string { return c.version; }};
}

Codec DiscoveryCodec() {
  return {FieldKind::kScalar,
          [](Decoder& dec, const Raw& raw, Decoding&) {
            if (auto v = dec.Enum(raw, kDiscoveryStrategyNames); v && *v == "tegra") {
              dec.Error(raw.where(),
                        "tegra is not supported: this plugin finds GPUs through NVML; use auto or "
                        "nvml");
            }
          },
          [](const Config&) -> std::string { return "auto"; }};
}

// resources.gpus / resources.mig: kept, and acted on only with useResourcePatterns
// (decoded before them), as NVIDIA's plugin ignores them.
Codec PatternsOf(std::vector<ResourcePattern> Config::*list, const char* path) {
  return {FieldKind::kObjectList,
          [list, path](Decoder& dec, const Raw& raw, Decoding& d) {
            auto patterns = dec.PatternList(raw);
            if (!patterns) return;
            d.config.*list = *patterns;
            if (!patterns->empty() && !d.config.use_resource_patterns) {
              d.config.not_acted_on.push_back(absl::StrCat(
                  path,
                  ": per-model resource names are ignored, as NVIDIA's plugin ignores them; "
                  "flags.plugin.useResourcePatterns: true acts on them"));
            }
          },
          [](const Config&) -> std::string { return "[]"; }};
}

Codec SharedListOf(bool mps) {
  return {FieldKind::kObjectList,
          [mps](Decoder& dec, const Raw& raw, Decoding& d) {
            if (auto v = dec.SharedList(raw, mps)) {
              (mps ? d.config.sharing.mps.resources : d.config.sharing.time_slicing.resources) = *v;
            }
          },
          [](const Config&) -> std::string { return "[]"; }};
}

constexpr const char* kGfdWhy =
    "a GPU feature discovery setting; this plugin labels the node itself (labels.*)";

std::vector<FieldSpec> BuildFields() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  using K = FieldKind;
  return {
      {.path = "version",
       .type = "string, must be `v1`",
       .codec = VersionCodec(),
       .help = "the schema version",
       .default_doc = "required in a non-empty file"},
      {.path = "flags.migStrategy",
       .type = "`none` \\| `single` \\| `mixed`",
       .codec = EnumOf([](auto& c) -> auto& { return c.mig_strategy; }, kMigStrategyNames,
                       {MigStrategy::kNone, MigStrategy::kSingle, MigStrategy::kMixed}),
       .flag = "--mig-strategy",
       .env = "MIG_STRATEGY",
       .help = "MIG strategy: none, single or mixed"},
      {.path = "flags.failOnInitError",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.fail_on_init_error; }),
       .flag = "--fail-on-init-error",
       .env = "FAIL_ON_INIT_ERROR",
       .help = "exit when NVML cannot be initialised (false: stay up with no devices and retry)"},
      {.path = "flags.nvidiaDriverRoot",
       .type = "absolute path",
       .codec = StringOf([](auto& c) -> auto& { return c.driver_root; }),
       .flag = "--driver-root",
       .env = "NVIDIA_DRIVER_ROOT",
       .help = "host path of the driver root (/ or /run/nvidia/driver)",
       .flag_aliases = "--nvidia-driver-root"},
      {.path = "flags.containerDriverRoot",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.container_driver_root; }),
       .flag = "--container-driver-root",
       .env = "CONTAINER_DRIVER_ROOT",
       .help = "where this container sees the driver root (default: the driver root)",
       .flag_aliases = "--driver-root-ctr-path",
       .env_aliases = "DRIVER_ROOT_CTR_PATH",
       .nvidia_path = "flags.plugin.containerDriverRoot",
       .default_doc = "empty (= `nvidiaDriverRoot`)"},
      {.path = "flags.nvidiaDevRoot",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.dev_root; }),
       .flag = "--dev-root",
       .env = "NVIDIA_DEV_ROOT",
       .help = "host path of the root of /dev/nvidia* (default: the driver root)",
       .flag_aliases = "--nvidia-dev-root",
       .default_doc = "empty (= `nvidiaDriverRoot`)"},
      {.path = "flags.nvmlLibrary",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.nvml_library; }),
       .flag = "--nvml-library",
       .env = "NVML_LIBRARY",
       .help = "explicit path of libnvidia-ml.so.1",
       .default_doc = "empty (search the driver root)"},
      {.path = "flags.sysfsRoot",
       .type = "absolute path",
       .codec = StringOf([](auto& c) -> auto& { return c.sysfs_root; }),
       .flag = "--sysfs-root",
       .env = "SYSFS_ROOT",
       .help = "where the host's sysfs is read: a GPU's NUMA node when the driver's NVML has no "
               "nvmlDeviceGetNumaNodeId (R535)"},
      {.path = "flags.requireMinimumVersions",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.require_minimum_versions; }),
       .flag = "--require-minimum-versions",
       .env = "REQUIRE_MINIMUM_VERSIONS",
       .help = "refuse drivers older than 450 / CUDA 10.0 (false: only warn)"},
      {.path = "flags.nodeName",
       .type = "node name or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.node_name; }),
       .flag = "--node-name",
       .env = "NODE_NAME",
       .help = "this node's name (spec.nodeName): metrics' node label, the Node to label",
       .default_doc = "empty (no `node` metrics label, no node labels or events)"},
      {.path = "flags.rescanInterval",
       .type = "duration, whole milliseconds, `0` or ≥ 100ms",
       .codec = DurationOf<milliseconds>(
           [](auto& c) -> auto& { return c.rescan_interval; }, "milliseconds"),
       .flag = "--rescan-interval",
       .env = "RESCAN_INTERVAL",
       .help = "how often to check whether the GPUs, MIG layout or driver changed (0: events "
               "only)"},
      {.path = "flags.deployLabel",
       .type = "node label key, or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.deploy_label; }),
       .flag = "--deploy-label",
       .env = "DEPLOY_LABEL",
       .help = "node label that pauses (paused-*, false) and resumes (true) the plugin; empty: "
               "ignored"},
      {.path = "flags.nodeConfig.configMap",
       .type = "`namespace/name`, or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.node_config.config_map; }),
       .flag = "--config-map",
       .env = "CONFIG_MAP",
       .help = "namespace/name of a ConfigMap of named configs, one picked per node by a label",
       .default_doc = "empty (no named configs)"},
      {.path = "flags.nodeConfig.label",
       .type = "node label key",
       .codec = StringOf([](auto& c) -> auto& { return c.node_config.label; }),
       .flag = "--config-node-label",
       .env = "NODE_LABEL",
       .help = "the node label that names this node's config"},
      {.path = "flags.nodeConfig.default",
       .type = "config name, or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.node_config.default_name; }),
       .flag = "--default-config",
       .env = "DEFAULT_CONFIG",
       .help = "the named config for nodes without the label"},
      {.path = "flags.nodeConfig.fallbackStrategies",
       .type = "list of `named` \\| `single` \\| `empty`",
       .codec = EnumListOf(
           [](auto& c) -> auto& { return c.node_config.fallback_strategies; },
           kFallbackStrategyNames,
           {FallbackStrategy::kNamed, FallbackStrategy::kSingle, FallbackStrategy::kEmpty}),
       .flag = "--fallback-strategies",
       .env = "FALLBACK_STRATEGIES",
       .help = "comma-separated, in order: named, single, empty"},
      {.path = "flags.plugin.passDeviceSpecs",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.pass_device_specs; }),
       .flag = "--pass-device-specs",
       .env = "PASS_DEVICE_SPECS",
       .help = "return DeviceSpecs for /dev/nvidia* in Allocate",
       .default_doc = "`true` (NVIDIA's plugin: `false`)"},
      {.path = "flags.plugin.deviceListStrategy",
       .type = "list of `envvar` \\| `volume-mounts` \\| `cdi-annotations` \\| `cdi-cri` (a "
               "string is a one-item or comma-separated list)",
       .codec = EnumListOf([](auto& c) -> auto& { return c.device_list_strategy; },
                           kDeviceListStrategyNames,
                           {DeviceListStrategy::kEnvvar, DeviceListStrategy::kVolumeMounts,
                            DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri}),
       .flag = "--device-list-strategy",
       .env = "DEVICE_LIST_STRATEGY",
       .help = "comma-separated: envvar, volume-mounts, cdi-annotations, cdi-cri"},
      {.path = "flags.plugin.deviceIDStrategy",
       .type = "`uuid` \\| `index`",
       .codec = EnumOf([](auto& c) -> auto& { return c.device_id_strategy; },
                       kDeviceIdStrategyNames, {DeviceIdStrategy::kUuid, DeviceIdStrategy::kIndex}),
       .flag = "--device-id-strategy",
       .env = "DEVICE_ID_STRATEGY",
       .help = "IDs in NVIDIA_VISIBLE_DEVICES: uuid or index"},
      {.path = "flags.plugin.pluginDirectory",
       .type = "absolute path",
       .codec = StringOf([](auto& c) -> auto& { return c.plugin_directory; }),
       .flag = "--plugin-directory",
       .env = "PLUGIN_DIRECTORY",
       .help = "the kubelet's device-plugin directory",
       .env_doc = "NVIDIA's `KUBELET_SOCKET` (its folder)"},
      {.path = "flags.plugin.resourceName",
       .type = "extended resource name",
       .codec = StringOf([](auto& c) -> auto& { return c.resource_name; }),
       .flag = "--resource-name",
       .env = "RESOURCE_NAME",
       .help = "extended resource name to advertise"},
      {.path = "flags.plugin.cdiRoot",
       .type = "absolute path",
       .codec = StringOf([](auto& c) -> auto& { return c.cdi_root; }),
       .flag = "--cdi-root",
       .env = "CDI_ROOT",
       .help = "directory the CDI spec is written to (with a cdi-* device list strategy)"},
      {.path = "flags.plugin.cdiAnnotationPrefix",
       .type = "DNS name and `/`",
       .codec = StringOf([](auto& c) -> auto& { return c.cdi_annotation_prefix; }),
       .flag = "--cdi-annotation-prefix",
       .env = "CDI_ANNOTATION_PREFIX",
       .help = "prefix of the CDI annotation keys (cdi-annotations strategy)"},
      {.path = "flags.plugin.nvidiaCTKPath",
       .type = "path",
       .codec = StringOf([](auto& c) -> auto& { return c.nvidia_cdi_hook_path; }),
       .flag = "--nvidia-cdi-hook-path",
       .env = "NVIDIA_CDI_HOOK_PATH",
       .help = "NVIDIA's nvidia-cdi-hook (or nvidia-ctk) on the host: when this process sees it "
               "there, the CDI spec makes the library links and the ld cache with its hooks; "
               "empty or not found: mounts only, no hook",
       .flag_aliases = "--nvidia-ctk-path",
       .env_aliases = "NVIDIA_CTK_PATH",
       .default_doc = "– (no hook)"},
      {.path = "flags.plugin.useResourcePatterns",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.use_resource_patterns; }),
       .flag = "--use-resource-patterns",
       .env = "USE_RESOURCE_PATTERNS",
       .help = "advertise GPUs and MIG devices under the names resources.gpus/mig patterns give "
               "them",
       .default_doc = "`false` (as NVIDIA's plugin: `resources.*` ignored)"},
      {.path = "flags.deviceDiscoveryStrategy",
       .type = "`auto` \\| `nvml` (`tegra` is refused)",
       .codec = DiscoveryCodec(),
       .flag = "--device-discovery-strategy",
       .env = "DEVICE_DISCOVERY_STRATEGY",
       .help = "auto or nvml (GPUs are always found through NVML)"},
      {.path = "flags.gdrcopyEnabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.gdrcopy_enabled; }),
       .flag = "--gdrcopy-enabled",
       .env = "GDRCOPY_ENABLED",
       .help = "give containers GDRCopy's /dev/gdrdrv (and NVIDIA_GDRCOPY=enabled)"},
      {.path = "flags.gdsEnabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.gds_enabled; }),
       .flag = "--gds-enabled",
       .env = "GDS_ENABLED",
       .help = "give containers GPUDirect Storage's /dev/nvidia-fs* (and NVIDIA_GDS=enabled)"},
      {.path = "flags.mofedEnabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.mofed_enabled; }),
       .flag = "--mofed-enabled",
       .env = "MOFED_ENABLED",
       .help = "give containers /dev/infiniband/* (and NVIDIA_MOFED=enabled)"},
      {.path = "flags.useNodeFeatureAPI",
       .type = "bool",
       .codec = Checked(Check::kBool),
       .help = "NVIDIA's: labels through NFD's NodeFeature API",
       .not_acted_on = "this plugin labels the Node itself, or writes NFD's local feature file "
                       "(labels.nfdFeatureFile)",
       .default_doc = "–"},
      {.path = "flags.gfd.oneshot",
       .type = "bool",
       .codec = Checked(Check::kBool),
       .help = "GPU feature discovery's: label once and exit",
       .not_acted_on = kGfdWhy,
       .default_doc = "–"},
      {.path = "flags.gfd.noTimestamp",
       .type = "bool",
       .codec = Checked(Check::kBool),
       .help = "GPU feature discovery's: no timestamp label",
       .not_acted_on = kGfdWhy,
       .default_doc = "–"},
      {.path = "flags.gfd.sleepInterval",
       .type = "duration",
       .codec = Checked(Check::kDuration),
       .help = "GPU feature discovery's: how often it relabels",
       .not_acted_on = "a GPU feature discovery setting; labels.resyncInterval is this plugin's",
       .default_doc = "–"},
      {.path = "flags.gfd.outputFile",
       .type = "path",
       .codec = Checked(Check::kString),
       .help = "GPU feature discovery's: its NFD feature file",
       .not_acted_on = kGfdWhy,
       .default_doc = "–"},
      {.path = "flags.gfd.machineTypeFile",
       .type = "path",
       .codec = Checked(Check::kString),
       .help = "GPU feature discovery's: where it reads the machine type",
       .not_acted_on = kGfdWhy,
       .default_doc = "–"},
      {.path = "resources.gpus",
       .type = "list of `{pattern, name}` (glob; a name without a domain gets `nvidia.com/`)",
       .codec = PatternsOf(&Config::gpu_patterns, "resources.gpus"),
       .help = "full GPUs whose product name matches `pattern` are advertised as `name` (with "
               "useResourcePatterns)"},
      {.path = "resources.mig",
       .type = "list of `{pattern, name}` (glob; a name without a domain gets `nvidia.com/`)",
       .codec = PatternsOf(&Config::mig_patterns, "resources.mig"),
       .help = "MIG devices whose profile matches `pattern` are advertised as `name` (with "
               "useResourcePatterns and migStrategy mixed)"},
      {.path = "imex.channelIDs",
       .type = "list of channel numbers 0–2047",
       .codec = {K::kList,
                 [](Decoder& dec, const Raw& raw, Decoding& d) {
                   if (auto v = dec.UintList(raw, /*allow_scalar=*/true, 0, 2047)) {
                     d.config.imex_channel_ids = *v;
                   }
                 },
                 [](const Config& c) { return ShowList(c.imex_channel_ids); }},
       .flag = "--imex-channel-ids",
       .env = "IMEX_CHANNEL_IDS",
       .help = "IMEX channels to give containers (comma-separated channel numbers)"},
      {.path = "imex.required",
       .type = "bool (needs `channelIDs`)",
       .codec = {K::kBool,
                 [](Decoder& dec, const Raw& raw, Decoding& d) {
                   if (auto v = dec.Bool(raw)) d.config.imex_required = *v;
                   if (d.config.imex_required && d.config.imex_channel_ids.empty()) {
                     dec.Error("imex.required", "is true, but imex.channelIDs names no channel");
                   }
                 },
                 [](const Config& c) -> std::string { return c.imex_required ? "true" : "false"; }},
       .flag = "--imex-required",
       .env = "IMEX_REQUIRED",
       .help = "a missing IMEX channel is an error rather than skipped"},
      {.path = "sharing.allocationPolicy",
       .type = "`distributed` \\| `packed`",
       .codec = EnumOf([](auto& c) -> auto& { return c.sharing.allocation_policy; },
                       kAllocationPolicyNames,
                       {AllocationPolicy::kDistributed, AllocationPolicy::kPacked}),
       .flag = "--allocation-policy",
       .env = "ALLOCATION_POLICY",
       .help = "how replicas are preferred: distributed|packed",
       .flag_aliases = "--shared-devices-allocation-policy",
       .env_aliases = "SHARED_DEVICES_ALLOCATION_POLICY",
       .nvidia_path = "flags.plugin.sharedDevicesAllocationPolicy"},
      {.path = "sharing.timeSlicing.renameByDefault",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.sharing.time_slicing.rename_by_default; }),
       .flag = "--time-slicing-rename-by-default",
       .env = "TIME_SLICING_RENAME_BY_DEFAULT",
       .help = "advertise time-slicing replicas as <name>.shared"},
      {.path = "sharing.timeSlicing.failRequestsGreaterThanOne",
       .type = "bool",
       .codec = BoolOf(
           [](auto& c) -> auto& { return c.sharing.time_slicing.fail_requests_greater_than_one; }),
       .flag = "--time-slicing-fail-requests-greater-than-one",
       .env = "TIME_SLICING_FAIL_REQUESTS_GREATER_THAN_ONE",
       .help = "refuse containers that ask for more than one time-slicing replica"},
      {.path = "sharing.timeSlicing.resources",
       .type = "list of `{name, replicas (1–1024), devices, rename}`",
       .codec = SharedListOf(/*mps=*/false),
       .help = "the resources shared by time-slicing, and into how many replicas"},
      {.path = "sharing.mps.renameByDefault",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.sharing.mps.rename_by_default; }),
       .flag = "--mps-rename-by-default",
       .env = "MPS_RENAME_BY_DEFAULT",
       .help = "advertise MPS replicas as <name>.shared"},
      {.path = "sharing.mps.failRequestsGreaterThanOne",
       .type = "bool",
       .codec =
           BoolOf([](auto& c) -> auto& { return c.sharing.mps.fail_requests_greater_than_one; }),
       .flag = "--mps-fail-requests-greater-than-one",
       .env = "MPS_FAIL_REQUESTS_GREATER_THAN_ONE",
       .help = "refuse containers that ask for more than one MPS replica"},
      {.path = "sharing.mps.resources",
       .type = "list of `{name, replicas (1–48), devices, rename, memoryLimit, "
               "activeThreadPercentage (1–100)}`",
       .codec = SharedListOf(/*mps=*/true),
       .help = "the resources shared through MPS, into how many replicas, with what limits"},
      {.path = "sharing.mps.root",
       .type = "absolute path",
       .codec = StringOf([](auto& c) -> auto& { return c.sharing.mps.root; }),
       .flag = "--mps-root",
       .env = "MPS_ROOT",
       .help = "host directory for the MPS pipe, log and shm directories",
       .nvidia_path = "flags.mpsRoot"},
      {.path = "sharing.mps.controlBinary",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.sharing.mps.control_binary; }),
       .flag = "--mps-control-binary",
       .env = "MPS_CONTROL_BINARY",
       .help = "path of nvidia-cuda-mps-control (default: under the driver root)",
       .default_doc = "empty (`<driver root>/usr/bin/nvidia-cuda-mps-control`, then `/usr/bin/…`)"},
      {.path = "sharing.mps.agent",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.sharing.mps.agent; }),
       .flag = "--mps-agent",
       .env = "MPS_AGENT",
       .help = "the MPS control daemons are run by `gpu-device-plugin mps-agent` (the chart's MPS "
               "DaemonSet), so they outlive plugin restarts; off: the plugin runs them itself"},
      {.path = "health.enabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.health.enabled; }),
       .flag = "--disable-health-checks",
       .env = "DISABLE_HEALTH_CHECKS",
       .help = "do not watch XID events or probe devices",
       .env_doc = "NVIDIA's `DP_DISABLE_HEALTHCHECKS=all` or `xids`",
       .negate = true},
      {.path = "health.ignoredXids",
       .type = "list of XIDs",
       .codec = {K::kList,
                 [](Decoder& dec, const Raw& raw, Decoding& d) {
                   d.ignored_xids = dec.UintList(raw, /*allow_scalar=*/false, kMinXid, kMaxXid);
                 },
                 [](const Config& c) { return ShowList(c.health.ignored_xids); }},
       .flag = "--health-ignored-xids",
       .env = "HEALTH_IGNORED_XIDS",
       .help = "comma-separated XIDs to ignore (replaces the default list)",
       .env_doc = "`all` in NVIDIA's `DP_ENABLE_HEALTHCHECKS` sets it to `[]`"},
      {.path = "health.additionalIgnoredXids",
       .type = "list of XIDs",
       .codec = XidListOf(&Decoding::additional_ignored_xids),
       .flag = "--health-additional-ignored-xids",
       .env = "HEALTH_ADDITIONAL_IGNORED_XIDS",
       .help = "comma-separated XIDs to ignore besides the default list",
       .env_doc = "NVIDIA's `DP_DISABLE_HEALTHCHECKS=<XIDs>`"},
      {.path = "health.criticalXids",
       .type = "list of XIDs",
       .codec = XidListOf(&Decoding::critical_xids),
       .flag = "--health-critical-xids",
       .env = "HEALTH_CRITICAL_XIDS",
       .help = "comma-separated XIDs never to ignore",
       .env_doc = "NVIDIA's `DP_ENABLE_HEALTHCHECKS=<XIDs>`"},
      {.path = "health.recoveryQuietPeriod",
       .type = "duration, whole seconds, ≥ 0",
       .codec = DurationOf<seconds>(
           [](auto& c) -> auto& { return c.health.recovery_quiet_period; }, "seconds"),
       .flag = "--health-recovery-quiet-period",
       .env = "HEALTH_RECOVERY_QUIET_PERIOD",
       .help = "quiet time before an XID-failed GPU is healthy again (0: never)"},
      {.path = "health.probeInterval",
       .type = "duration, whole milliseconds, > 0",
       .codec = DurationOf<milliseconds>(
           [](auto& c) -> auto& { return c.health.probe_interval; }, "milliseconds"),
       .flag = "--health-probe-interval",
       .env = "HEALTH_PROBE_INTERVAL",
       .help = "how often devices are probed for loss and recovery"},
      {.path = "metrics.bindAddress",
       .type = "IPv4/IPv6 address or host name",
       .codec = StringOf([](auto& c) -> auto& { return c.metrics_bind_address; }),
       .flag = "--metrics-bind-address",
       .env = "METRICS_BIND_ADDRESS",
       .help = "address of the /metrics, /healthz and /readyz server"},
      {.path = "metrics.port",
       .type = "integer 0–65535 (0: any free port)",
       .codec = IntOf(
           [](auto& c) -> auto& { return c.metrics_port; }, 0, 65535),
       .flag = "--metrics-port",
       .env = "METRICS_PORT",
       .help = "port of the metrics server (0: any)"},
      {.path = "metrics.sampleInterval",
       .type = "duration, whole milliseconds, ≥ 100ms",
       .codec = DurationOf<milliseconds>(
           [](auto& c) -> auto& { return c.metrics_sample_interval; }, "milliseconds"),
       .flag = "--metrics-sample-interval",
       .env = "METRICS_SAMPLE_INTERVAL",
       .help = "how often NVML and the kubelet are sampled for /metrics"},
      {.path = "metrics.podResourcesSocket",
       .type = "absolute path, or empty (no pod labels)",
       .codec = StringOf([](auto& c) -> auto& { return c.metrics_pod_resources_socket; }),
       .flag = "--pod-resources-socket",
       .env = "POD_RESOURCES_SOCKET",
       .help = "the kubelet's pod-resources socket (empty: no pod labels)"},
      {.path = "metrics.dcgmCompatibility",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.metrics_dcgm_compatibility; }),
       .flag = "--metrics-dcgm-compatibility",
       .env = "METRICS_DCGM_COMPATIBILITY",
       .help = "also emit dcgm-exporter metric names and labels"},
      {.path = "metrics.tls.certFile",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.metrics_tls_cert_file; }),
       .flag = "--metrics-tls-cert-file",
       .env = "METRICS_TLS_CERT_FILE",
       .help = "serve the metrics port with TLS: the PEM certificate (chain), reloaded when it "
               "changes (with metrics.tls.keyFile; empty: plain HTTP)"},
      {.path = "metrics.tls.keyFile",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.metrics_tls_key_file; }),
       .flag = "--metrics-tls-key-file",
       .env = "METRICS_TLS_KEY_FILE",
       .help = "the PEM key of metrics.tls.certFile"},
      {.path = "metrics.auth.enabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.metrics_auth_enabled; }),
       .flag = "--metrics-auth",
       .env = "METRICS_AUTH",
       .help = "/metrics, /allocations and /inventory need a bearer token whose user may get the "
               "path (TokenReview and SubjectAccessReview with the API server; needs metrics.tls)"},
      {.path = "metrics.auth.cacheTtl",
       .type = "duration, whole seconds, > 0",
       .codec = DurationOf<seconds>(
           [](auto& c) -> auto& { return c.metrics_auth_cache_ttl; }, "seconds"),
       .flag = "--metrics-auth-cache-ttl",
       .env = "METRICS_AUTH_CACHE_TTL",
       .help = "how long a token's user and an allowed path are cached (refusals: 10 s at most)"},
      {.path = "log.level",
       .type = "`debug` \\| `info` \\| `warn` \\| `error`",
       .codec = WordOf(
           [](auto& c) -> auto& { return c.log_level; }, kLogLevelNames),
       .flag = "--log-level",
       .env = "LOG_LEVEL",
       .help = "debug, info, warn or error"},
      {.path = "log.format",
       .type = "`text` \\| `json`",
       .codec = WordOf(
           [](auto& c) -> auto& { return c.log_format; }, kLogFormatNames),
       .flag = "--log-format",
       .env = "LOG_FORMAT",
       .help = "text or json"},
      {.path = "labels.enabled",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.labels.enabled; }),
       .flag = "--node-labels",
       .env = "NODE_LABELS",
       .help = "label the node with its GPUs and record node events for GPU health"},
      {.path = "labels.kubeconfig",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.labels.kubeconfig; }),
       .flag = "--kubeconfig",
       .env = "KUBECONFIG",
       .help = "kubeconfig file for the API server (default: the pod's service account)",
       .default_doc = "empty (the pod's service account)"},
      {.path = "labels.nfdFeatureFile",
       .type = "absolute path or empty",
       .codec = StringOf([](auto& c) -> auto& { return c.labels.nfd_feature_file; }),
       .flag = "--nfd-feature-file",
       .env = "NFD_FEATURE_FILE",
       .help = "write the labels to this NFD feature file instead of the Node",
       .default_doc = "empty (patch the Node)"},
      {.path = "labels.events",
       .type = "bool",
       .codec = BoolOf([](auto& c) -> auto& { return c.labels.events; }),
       .flag = "--node-events",
       .env = "NODE_EVENTS",
       .help = "record node events for GPU health transitions"},
      {.path = "labels.resyncInterval",
       .type = "duration, whole seconds, ≥ 1s",
       .codec = DurationOf<seconds>(
           [](auto& c) -> auto& { return c.labels.resync_interval; }, "seconds"),
       .flag = "--labels-resync-interval",
       .env = "LABELS_RESYNC_INTERVAL",
       .help = "re-apply the labels this often"},
  };
}

// Every document path of `f`: ours, then NVIDIA's place.
std::vector<std::string_view> PlacesOf(const FieldSpec& f) {
  std::vector<std::string_view> places = {f.path};
  if (f.nvidia_path != nullptr) places.emplace_back(f.nvidia_path);
  return places;
}

std::string Names(const char* primary, const char* aliases) {
  std::string out = absl::StrCat("`", primary, "`");
  if (aliases != nullptr) {
    for (absl::string_view a : absl::StrSplit(aliases, ',', absl::SkipEmpty())) {
      absl::StrAppend(&out, ", `", a, "`");
    }
  }
  return out;
}

// Plain text as Markdown shows it literally.
std::string MarkdownText(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '*':
      case '_':
      case '|':
      case '`':
        out.push_back('\\');
        out.push_back(c);
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace

const std::vector<FieldSpec>& Fields() {
  static const std::vector<FieldSpec> kFields = BuildFields();
  return kFields;
}

const FieldSpec* FindField(std::string_view path) {
  for (const FieldSpec& f : Fields()) {
    for (std::string_view place : PlacesOf(f)) {
      if (place == path) return &f;
    }
  }
  return nullptr;
}

bool IsSection(std::string_view path) {
  const std::string prefix = absl::StrCat(A(path), ".");
  for (const FieldSpec& f : Fields()) {
    for (std::string_view place : PlacesOf(f)) {
      if (absl::StartsWith(A(place), prefix)) return true;
    }
  }
  return false;
}

std::vector<std::string> ChildKeys(std::string_view section) {
  std::vector<std::string> keys;
  const std::string prefix = section.empty() ? "" : absl::StrCat(A(section), ".");
  for (const FieldSpec& f : Fields()) {
    for (std::string_view place : PlacesOf(f)) {
      if (!absl::StartsWith(A(place), prefix)) continue;
      place.remove_prefix(prefix.size());
      std::string key(place.substr(0, place.find('.')));
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
  }
  return keys;
}

std::string FieldsMarkdown() {
  const Config defaults;
  std::string out =
      "| Field | Type | Default | Flag | Environment | What it does |\n"
      "|---|---|---|---|---|---|\n";
  for (const FieldSpec& f : Fields()) {
    std::string field = absl::StrCat("`", f.path, "`");
    if (f.nvidia_path != nullptr)
      absl::StrAppend(&field, " (also at NVIDIA's `", f.nvidia_path, "`)");
    std::string def;
    if (f.default_doc != nullptr) {
      def = f.default_doc;
    } else if (std::string v = f.codec.show(defaults); v.empty()) {
      def = "empty";
    } else {
      def = absl::StrCat("`", v, "`");
    }
    std::string flag = "file only", env = "file only";
    if (f.flag != nullptr) {
      flag = absl::StrCat(Names(f.flag, f.flag_aliases), f.negate ? " (negated)" : "");
      env = absl::StrCat(Names(f.env, f.env_aliases), f.negate ? " (negated)" : "");
    }
    if (f.env_doc != nullptr) {
      env = f.flag != nullptr ? absl::StrCat(env, "; ", f.env_doc) : std::string(f.env_doc);
    }
    // The help lines are plain text (--help shows them too).
    std::string what = MarkdownText(f.help);
    if (f.not_acted_on != nullptr) {
      absl::StrAppend(&what, ". Accepted, not acted on: ", MarkdownText(f.not_acted_on));
    }
    absl::StrAppend(&out, "| ", field, " | ", f.type, " | ", def, " | ", flag, " | ", env, " | ",
                    what, " |\n");
  }
  absl::StrAppend(&out, "| *(the file itself)* | path | none | `--config-file` | `CONFIG_FILE` | ",
                  "the YAML config file |\n");
  return out;
}

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 80;
  if (s.size() > kMax) return absl::StrCat("\"", absl::CHexEscape(A(s.substr(0, kMax))), "...\"");
  return absl::StrCat("\"", absl::CHexEscape(A(s)), "\"");
}

}  // namespace gdp::config::detail
