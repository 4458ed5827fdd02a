// The doctor: checks that a node can run gpu-device-plugin and says, for each
// problem, what to do. `gpu-device-plugin doctor` prints the report as a table
// (or JSON) and exits non-zero on any FAIL; the daemon runs the same checks
// once at start and logs them.
//
// Checks (each one row: OK / WARN / FAIL, a detail and, unless OK, one line of
// fix): the configuration; NVML found under the driver root and loadable;
// driver and CUDA versions against the minimums; GPUs found; device nodes
// present and accessible; the kubelet's plugin directory and kubelet.sock;
// the pod-resources socket; the containerd configuration (CDI enabled, NVIDIA
// runtime present or not); the CDI directory; MIG and MPS prerequisites.
//
// Every host path comes from Options, and the host is reached only through
// seams (FileSystem, HostAccess, an NVML opener, PodResourcesLister), so each
// check is unit-tested against fakes. A check never throws and never stops the
// others: a failure is a row.
//
// Thread-safety: the functions are reentrant; the collaborators in
// Environment must outlive the call and be usable from the calling thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"
#include "src/kube/api_client.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"
#include "src/podresources/podresources.h"

namespace gdp::doctor {

enum class Severity { kOk, kWarn, kFail };
const char* ToString(Severity s);  // "OK", "WARN", "FAIL"

struct CheckResult {
  std::string name;  // e.g. "nvml library"
  Severity severity = Severity::kOk;
  std::string detail;  // what was found
  std::string fix;     // one line of what to do; empty when OK
  bool operator==(const CheckResult&) const = default;
};

struct Report {
  std::vector<CheckResult> checks;
  bool HasFailure() const;
  int Count(Severity s) const;
};

// Where each Kubernetes distribution keeps the config its containerd reads: containerd's own
// default (kubeadm and most), k3s, RKE2, MicroK8s (docs/compatibility.md).
struct KnownContainerdConfig {
  const char* distribution;
  const char* path;
};
const std::vector<KnownContainerdConfig>& KnownContainerdConfigs();
// CRI-O's config; its drop-ins, crio.conf.d/*.conf beside it, override it in name order.
inline constexpr char kCrioConfig[] = "/etc/crio/crio.conf";

struct Options {
  // Where this process sees the driver root (Config::EffectiveDriverRoot()).
  std::string driver_root = "/";
  std::string nvml_library;         // explicit library path (Config::nvml_library)
  std::string sysfs_root = "/sys";  // Config::sysfs_root
  bool require_minimum_versions = true;
  config::MigStrategy mig_strategy = config::MigStrategy::kNone;
  std::vector<config::DeviceListStrategy> device_list_strategy = {
      config::DeviceListStrategy::kEnvvar};
  std::string plugin_directory = "/var/lib/kubelet/device-plugins";
  std::string kubelet_socket_name = "kubelet.sock";
  std::string pod_resources_socket = podresources::kDefaultSocket;
  // The container runtime's config: containerd's, or CRI-O's crio.conf (read with the
  // drop-ins of crio.conf.d beside it). Empty: the first of KnownContainerdConfigs() that
  // reads, else CRI-O's kCrioConfig and its drop-ins.
  std::string containerd_config;
  std::string cdi_directory = "/var/run/cdi";
  // MPS sharing is configured: a missing nvidia-cuda-mps-control is a FAIL,
  // not a WARN.
  bool mps_required = false;
  // A problem loading the configuration, reported as the first row (empty: none).
  std::string config_error;
  // metrics.tls and metrics.auth are on; the kubeconfig to reach the API server
  // with (empty: the pod's service account).
  bool metrics_tls = false;
  bool metrics_auth = false;
  std::string kubeconfig;

  // driver root, library, versions, MIG strategy, device-list strategy and
  // plugin directory from `c`; the rest keeps its default.
  static Options FromConfig(const config::Config& c);
  bool UsesCdi() const;
};

// Access to the host beyond reading files: permission checks and connecting
// to unix sockets. PosixHostAccess is stateless and thread-safe.
class HostAccess {
 public:
  virtual ~HostAccess() = default;
  // access(2) with R_OK/W_OK/X_OK bits; the error names the path and errno.
  virtual absl::Status Access(const std::string& path, int mode) const = 0;
  // connect(2) to a unix stream socket and close; the error names path and errno.
  virtual absl::Status ConnectUnix(const std::string& path) const = 0;
};

class PosixHostAccess final : public HostAccess {
 public:
  absl::Status Access(const std::string& path, int mode) const override;
  absl::Status ConnectUnix(const std::string& path) const override;
  static const HostAccess& Get();
};

// Loads NVML from a path (DlNvml::Open in production, a mock in tests).
using NvmlOpener =
    std::function<absl::StatusOr<std::unique_ptr<nvml::NvmlApi>>(const std::string& path)>;
NvmlOpener DlNvmlOpener();

struct Environment {
  const FileSystem* fs = &PosixFileSystem::Get();
  const HostAccess* host = &PosixHostAccess::Get();
  NvmlOpener open_nvml = DlNvmlOpener();
  // nullptr: a GrpcPodResourcesLister on Options::pod_resources_socket.
  podresources::PodResourcesLister* pod_resources = nullptr;
  // The API server, for "metrics access"; nullptr: one from Options::kubeconfig
  // (or the service account) when metrics.auth is on.
  kube::ApiClient* api = nullptr;
};

// --- The checks, one function per concern (exposed for tests). ---

// "nvml library", "nvml init", "driver and cuda versions", "gpus". Sets
// *inventory when NVML initialised and discovery succeeded; shuts NVML down.
std::vector<CheckResult> CheckNvml(const Options& o, const FileSystem& fs, const NvmlOpener& open,
                                   std::shared_ptr<const nvml::Inventory>* inventory);
// "device nodes": nvidiactl, nvidia-uvm and /dev/nvidia<minor> of every GPU
// (every /dev/nvidiaN found when `inventory` is null) under the driver root.
CheckResult CheckDeviceNodes(const Options& o, const FileSystem& fs, const HostAccess& host,
                             const nvml::Inventory* inventory);
// "plugin directory" and "kubelet socket".
std::vector<CheckResult> CheckKubelet(const Options& o, const FileSystem& fs,
                                      const HostAccess& host);
// "pod-resources socket".
CheckResult CheckPodResources(const Options& o, const FileSystem& fs,
                              podresources::PodResourcesLister& lister);
// "containerd cdi" (or "crio cdi" on CRI-O) and "nvidia runtime", from the runtime's config.
std::vector<CheckResult> CheckContainerRuntime(const Options& o, const FileSystem& fs);
// "cdi directory".
CheckResult CheckCdiDirectory(const Options& o, const FileSystem& fs, const HostAccess& host);
// "driver user space": what of the driver a container gets through the CDI
// spec (the driver's libraries by the root's ld cache, firmware, binaries,
// sockets); a warning when CDI is used and part of it is missing.
CheckResult CheckDriverUserSpace(const Options& o, const FileSystem& fs,
                                 const nvml::Inventory* inventory);
// "mig": MIG-enabled GPUs vs the strategy, /dev/nvidia-caps and mig-minors.
CheckResult CheckMig(const Options& o, const FileSystem& fs, const nvml::Inventory* inventory);
// "mps": nvidia-cuda-mps-control under the driver root.
CheckResult CheckMps(const Options& o, const FileSystem& fs, const HostAccess& host);
// "metrics access": who may read /metrics, /allocations and /inventory; with
// metrics.auth, whether this identity may create the TokenReviews and
// SubjectAccessReviews that check callers (asked with SelfSubjectAccessReviews).
// `api` is null when no API server could be configured (`api_error` says why).
CheckResult CheckMetricsAccess(const Options& o, kube::ApiClient* api,
                               const std::string& api_error);

// Every check, in the order above.
Report RunChecks(const Options& o, const Environment& env);

// A fixed-width table: STATUS, CHECK, DETAIL, and under each non-OK row
// "fix: ...", then a summary line.
std::string RenderTable(const Report& report);
// {"checks":[{"name","status","detail","fix"}],"ok":N,"warn":N,"fail":N}
std::string RenderJson(const Report& report);

// What the containerd config says, parsed from its TOML without a TOML library
// (table headers and key = value lines; enough for these keys).
struct ContainerdFacts {
  bool crio = false;                       // the file is CRI-O's (a [crio...] table)
  int version = 1;                         // the file's `version` (1 when absent)
  std::optional<bool> enable_cdi;          // the CRI plugin's enable_cdi, when set
  std::vector<std::string> cdi_spec_dirs;  // when set
  bool nvidia_runtime = false;  // a runtimes.nvidia table or an nvidia-container-runtime binary
  std::string default_runtime;  // default_runtime_name (CRI-O: default_runtime)
  // CDI is on: always in CRI-O; in containerd enable_cdi when set, else the
  // default of the config's generation (on for version 3 = containerd 2.x, off before).
  bool CdiEnabled() const;
};
// Parses containerd's config, or CRI-O's (crio.conf then its drop-ins, concatenated).
ContainerdFacts ParseContainerdConfig(const std::string& toml);

}  // namespace gdp::doctor
