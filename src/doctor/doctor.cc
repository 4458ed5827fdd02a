#include "src/doctor/doctor.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/driver/driver_files.h"
#include "src/kube/openssl_api_client.h"
#include "src/kube/rest_config.h"
#include "src/nvml/dl_nvml.h"

namespace gdp::doctor {
namespace {

CheckResult Ok(std::string name, std::string detail) {
  return {std::move(name), Severity::kOk, std::move(detail), ""};
}
CheckResult Warn(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Severity::kWarn, std::move(detail), std::move(fix)};
}
CheckResult Fail(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Severity::kFail, std::move(detail), std::move(fix)};
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

bool IsDir(const FileSystem& fs, const std::string& path) {
  absl::StatusOr<FileInfo> info = fs.Stat(path);
  return info.ok() && info->type == FileInfo::Type::kDirectory;
}

// /dev/nvidia<digits>
bool IsGpuNodeName(const std::string& name) {
  constexpr absl::string_view kPrefix = "nvidia";
  if (!absl::StartsWith(name, kPrefix) || name.size() == kPrefix.size()) return false;
  return std::all_of(name.begin() + kPrefix.size(), name.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

// Where the MPS control daemon may live below a driver root.
const std::vector<std::string>& MpsControlDirs() {
  static const std::vector<std::string> kDirs = {"/usr/bin", "/usr/local/bin", "/bin",
                                                 "/usr/local/nvidia/bin"};
  return kDirs;
}

std::string Unquote(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

}  // namespace

const char* ToString(Severity s) {
  switch (s) {
    case Severity::kOk:
      return "OK";
    case Severity::kWarn:
      return "WARN";
    case Severity::kFail:
      return "FAIL";
  }
  return "FAIL";
}

bool Report::HasFailure() const { return Count(Severity::kFail) > 0; }

int Report::Count(Severity s) const {
  return static_cast<int>(std::count_if(checks.begin(), checks.end(),
                                        [s](const CheckResult& c) { return c.severity == s; }));
}

Options Options::FromConfig(const config::Config& c) {
  Options o;
  o.driver_root = c.EffectiveDriverRoot();
  o.nvml_library = c.nvml_library;
  o.sysfs_root = c.sysfs_root;
  o.require_minimum_versions = c.require_minimum_versions;
  o.mig_strategy = c.mig_strategy;
  o.device_list_strategy = c.device_list_strategy;
  o.plugin_directory = c.plugin_directory;
  if (!c.metrics_pod_resources_socket.empty()) {
    o.pod_resources_socket = c.metrics_pod_resources_socket;
  }
  o.cdi_directory = c.cdi_root;
  o.mps_required = !c.sharing.mps.resources.empty();
  o.metrics_tls = !c.metrics_tls_cert_file.empty();
  o.metrics_auth = c.metrics_auth_enabled;
  o.kubeconfig = c.labels.kubeconfig;
  return o;
}

bool Options::UsesCdi() const {
  return std::any_of(device_list_strategy.begin(), device_list_strategy.end(), [](auto s) {
    return s == config::DeviceListStrategy::kCdiAnnotations ||
           s == config::DeviceListStrategy::kCdiCri;
  });
}

absl::Status PosixHostAccess::Access(const std::string& path, int mode) const {
  if (::access(path.c_str(), mode) != 0) return ErrnoStatus(errno, "access", path);
  return absl::OkStatus();
}

absl::Status PosixHostAccess::ConnectUnix(const std::string& path) const {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect ", path, ": path longer than ", sizeof addr.sun_path - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket", path);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "connect", path);
  return absl::OkStatus();
}

const HostAccess& PosixHostAccess::Get() {
  static const PosixHostAccess* const kInstance = new PosixHostAccess();
  return *kInstance;
}

NvmlOpener DlNvmlOpener() {
  return [](const std::string& path) -> absl::StatusOr<std::unique_ptr<nvml::NvmlApi>> {
    absl::StatusOr<std::unique_ptr<nvml::DlNvml>> lib = nvml::DlNvml::Open(path);
    if (!lib.ok()) return lib.status();
    return std::unique_ptr<nvml::NvmlApi>(*std::move(lib));
  };
}

std::vector<CheckResult> CheckNvml(const Options& o, const FileSystem& fs, const NvmlOpener& open,
                                   std::shared_ptr<const nvml::Inventory>* inventory) {
  std::vector<CheckResult> rows;
  inventory->reset();
  const std::string skipped = "not checked: NVML did not load";
  const std::string fix_first = "fix the NVML rows above first";
  auto skip_rest = [&](size_t from) {
    static const char* const kNames[] = {"nvml library", "nvml init", "driver and cuda versions",
                                         "gpus"};
    for (size_t i = from; i < 4; ++i) rows.push_back(Warn(kNames[i], skipped, fix_first));
  };

  absl::StatusOr<std::string> path = nvml::FindNvmlLibrary(fs, o.driver_root, o.nvml_library);
  if (!path.ok()) {
    rows.push_back(Fail("nvml library", Msg(path.status()),
                        absl::StrCat("mount the host's driver root at ", o.driver_root,
                                     " (--container-driver-root), or name the library with "
                                     "--nvml-library")));
    skip_rest(1);
    return rows;
  }
  rows.push_back(Ok("nvml library", absl::StrCat("found ", *path)));

  absl::StatusOr<std::unique_ptr<nvml::NvmlApi>> api = open(*path);
  if (!api.ok()) {
    rows.push_back(Fail("nvml init", absl::StrCat("cannot load ", *path, ": ", Msg(api.status())),
                        "the file is not a usable libnvidia-ml.so.1 for this machine: check its "
                        "architecture and that the driver's other libraries are beside it"));
    skip_rest(2);
    return rows;
  }
  nvml::NvmlApi& nvml = **api;
  if (absl::Status s = nvml::NvmlStatus(nvml, nvml.Init(), "nvmlInit"); !s.ok()) {
    rows.push_back(Fail("nvml init", Msg(s),
                        "load the NVIDIA kernel module on the host (nvidia-smi must work there) "
                        "and give the container the /dev/nvidia* nodes"));
    skip_rest(2);
    return rows;
  }
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> inv =
      nvml::DiscoverInventory(nvml, nvml::DiscoveryOptions{.sysfs_root = o.sysfs_root});
  nvml.Shutdown();
  if (!inv.ok()) {
    rows.push_back(Fail("nvml init",
                        absl::StrCat("nvmlInit OK, discovery failed: ", Msg(inv.status())),
                        "a GPU does not answer NVML: run nvidia-smi -q on the host and check "
                        "dmesg for XID errors"));
    skip_rest(2);
    return rows;
  }
  *inventory = *inv;
  const nvml::Inventory& in = **inv;
  rows.push_back(Ok("nvml init", absl::StrCat("nvmlInit OK (NVML ", in.nvml_version, ")")));

  const std::string versions = absl::StrCat(
      "driver ", in.driver_version, ", CUDA ", in.CudaDriverVersionString(), " (minimum ",
      nvml::kMinimumDriverMajor, " and ", nvml::kMinimumCudaDriverVersion / 1000, ".",
      (nvml::kMinimumCudaDriverVersion % 1000) / 10, ")");
  if (absl::Status s = nvml::CheckMinimumVersions(in); !s.ok()) {
    const std::string fix = "upgrade the NVIDIA driver on the node to 450 or newer";
    if (o.require_minimum_versions) {
      rows.push_back(Fail("driver and cuda versions", Msg(s), fix));
    } else {
      rows.push_back(Warn("driver and cuda versions",
                          absl::StrCat(Msg(s), "; allowed by requireMinimumVersions: false"), fix));
    }
  } else {
    rows.push_back(Ok("driver and cuda versions", versions));
  }

  if (in.gpus.empty()) {
    rows.push_back(Warn("gpus", "NVML reports no GPUs; nothing will be advertised",
                        "check nvidia-smi -L on the host; a GPU missing there is a hardware or "
                        "driver problem"));
  } else {
    std::vector<std::string> names;
    for (const nvml::Gpu& g : in.gpus) {
      if (std::find(names.begin(), names.end(), g.name) == names.end()) names.push_back(g.name);
    }
    rows.push_back(Ok("gpus", absl::StrCat(in.gpus.size(), " x ", absl::StrJoin(names, ", "))));
  }
  return rows;
}

CheckResult CheckDeviceNodes(const Options& o, const FileSystem& fs, const HostAccess& host,
                             const nvml::Inventory* inventory) {
  const std::string name = "device nodes";
  std::vector<std::string> nodes = {"/dev/nvidiactl", "/dev/nvidia-uvm"};
  if (inventory != nullptr) {
    for (const nvml::Gpu& g : inventory->gpus)
      nodes.push_back(absl::StrCat("/dev/nvidia", g.minor));
  } else if (absl::StatusOr<std::vector<std::string>> dev =
                 fs.ListDir(JoinRoot(o.driver_root, "/dev"));
             dev.ok()) {
    for (const std::string& n : *dev) {
      if (IsGpuNodeName(n)) nodes.push_back("/dev/" + n);
    }
  }
  std::vector<std::string> missing, not_char, denied;
  for (const std::string& node : nodes) {
    const std::string path = JoinRoot(o.driver_root, node);
    absl::StatusOr<FileInfo> info = fs.Stat(path);
    if (!info.ok()) {
      missing.push_back(path);
      continue;
    }
    if (info->type != FileInfo::Type::kCharDevice) not_char.push_back(path);
    if (absl::Status s = host.Access(path, R_OK | W_OK); !s.ok()) denied.push_back(Msg(s));
  }
  if (!missing.empty()) {
    return Fail(name, absl::StrCat("missing: ", absl::StrJoin(missing, ", ")),
                "load the driver on the host (nvidia-modprobe -u -c=0 creates the nodes) and mount "
                "/dev of the driver root into the container");
  }
  if (!denied.empty()) {
    return Fail(name, absl::StrJoin(denied, "; "),
                "the container's device cgroup denies the GPUs (EPERM) or their mode does: NVML "
                "needs them read-write. Run the plugin under the NVIDIA container runtime with "
                "NVIDIA_VISIBLE_DEVICES=all (the chart's default env; set runtimeClassName: nvidia "
                "where it is not containerd's default runtime), or privileged "
                "(securityContext privileged: true with allowPrivilegeEscalation: true) on nodes "
                "without it");
  }
  if (!not_char.empty()) {
    return Warn(name, absl::StrCat("not character devices: ", absl::StrJoin(not_char, ", ")),
                "recreate them with mknod (major 195), e.g. by nvidia-modprobe; containers "
                "cannot use regular files as GPUs");
  }
  return Ok(name, absl::StrCat(nodes.size(), " present and read-write under ", o.driver_root));
}

std::vector<CheckResult> CheckKubelet(const Options& o, const FileSystem& fs,
                                      const HostAccess& host) {
  std::vector<CheckResult> rows;
  const std::string& dir = o.plugin_directory;
  if (!IsDir(fs, dir)) {
    rows.push_back(Fail("plugin directory", absl::StrCat(dir, " is not a directory"),
                        "mount the kubelet's device-plugins directory (hostPath "
                        "/var/lib/kubelet/device-plugins) or set --plugin-directory"));
    rows.push_back(Fail("kubelet socket", "not checked: no plugin directory",
                        "fix the plugin directory first"));
    return rows;
  }
  if (absl::Status s = host.Access(dir, W_OK | X_OK); !s.ok()) {
    rows.push_back(Fail("plugin directory", Msg(s),
                        "the plugin creates its sockets there: mount it read-write and run as "
                        "root"));
  } else {
    rows.push_back(Ok("plugin directory", absl::StrCat(dir, " (writable)")));
  }
  const std::string sock = absl::StrCat(dir, "/", o.kubelet_socket_name);
  if (!fs.Exists(sock)) {
    rows.push_back(Fail("kubelet socket", absl::StrCat(sock, " does not exist"),
                        "start the kubelet (with the DevicePlugins feature, on by default); the "
                        "plugin registers when it appears"));
  } else if (absl::Status s = host.ConnectUnix(sock); !s.ok()) {
    rows.push_back(Fail("kubelet socket", Msg(s),
                        "a stale socket: restart the kubelet, and check that the plugin "
                        "directory is the kubelet's own (--root-dir)"));
  } else {
    rows.push_back(Ok("kubelet socket", absl::StrCat(sock, " accepts connections")));
  }
  return rows;
}

CheckResult CheckPodResources(const Options& o, const FileSystem& fs,
                              podresources::PodResourcesLister& lister) {
  const std::string name = "pod-resources socket";
  const std::string fix =
      "mount the kubelet's pod-resources directory (hostPath /var/lib/kubelet/pod-resources) or "
      "set --pod-resources-socket; only /allocations and per-pod metrics need it";
  if (!fs.Exists(o.pod_resources_socket)) {
    return Warn(name, absl::StrCat(o.pod_resources_socket, " does not exist"), fix);
  }
  absl::StatusOr<std::vector<podresources::Assignment>> list = lister.List();
  if (!list.ok()) return Warn(name, Msg(list.status()), fix);
  size_t devices = 0;
  for (const auto& a : *list) devices += a.device_ids.size();
  return Ok(name, absl::StrCat("List answers: ", list->size(), " container resource(s), ", devices,
                               " device(s) assigned"));
}

bool ContainerdFacts::CdiEnabled() const {
  if (crio) return true;
  if (enable_cdi.has_value()) return *enable_cdi;
  return version >= 3;
}

ContainerdFacts ParseContainerdConfig(const std::string& toml) {
  ContainerdFacts f;
  std::string table;
  std::string pending_key;  // a multi-line array being read
  std::string pending_value;
  auto take = [&](const std::string& key, const std::string& value) {
    if (table.empty() && key == "version") {
      int v = 0;
      if (absl::SimpleAtoi(value, &v)) f.version = v;
    } else if (absl::StrContains(table, "cri") && key == "enable_cdi") {
      f.enable_cdi = absl::StripAsciiWhitespace(value) == "true";
    } else if (absl::StrContains(table, "cri") && key == "cdi_spec_dirs") {
      absl::string_view v = absl::StripAsciiWhitespace(value);
      v = absl::StripPrefix(absl::StripSuffix(v, "]"), "[");
      f.cdi_spec_dirs.clear();
      for (absl::string_view item : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
        f.cdi_spec_dirs.push_back(Unquote(item));
      }
    } else if (key == "default_runtime_name" || (f.crio && key == "default_runtime")) {
      f.default_runtime = Unquote(value);
    } else if ((key == "BinaryName" || (f.crio && key == "runtime_path")) &&
               absl::StrContains(value, "nvidia-container-runtime")) {
      f.nvidia_runtime = true;
    }
  };
  for (absl::string_view raw : absl::StrSplit(toml, '\n')) {
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (!pending_key.empty()) {
      absl::StrAppend(&pending_value, line);
      if (absl::StrContains(line, "]")) {
        take(pending_key, pending_value);
        pending_key.clear();
      }
      continue;
    }
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[') {
      table = std::string(absl::StripSuffix(absl::StripPrefix(line, "["), "]"));
      table = std::string(absl::StripSuffix(absl::StripPrefix(table, "["), "]"));
      if (table == "crio" || absl::StartsWith(table, "crio.")) f.crio = true;
      for (absl::string_view suffix :
           {".runtimes.nvidia", ".runtimes.\"nvidia\"", ".runtimes.'nvidia'"}) {
        if (absl::EndsWith(table, suffix)) f.nvidia_runtime = true;
      }
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    const std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (const size_t hash = value.find(" #"); hash != std::string::npos) value.resize(hash);
    if (absl::StartsWith(value, "[") && !absl::StrContains(value, "]")) {
      pending_key = key;
      pending_value = value;
      continue;
    }
    take(key, value);
  }
  return f;
}

const std::vector<KnownContainerdConfig>& KnownContainerdConfigs() {
  static const std::vector<KnownContainerdConfig> known = {
      {"containerd", "/etc/containerd/config.toml"},
      {"k3s", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"},
      {"RKE2", "/var/lib/rancher/rke2/agent/etc/containerd/config.toml"},
      {"MicroK8s", "/var/snap/microk8s/current/args/containerd.toml"},
  };
  return known;
}

namespace {

// CRI-O's config at `path` followed by its drop-ins (crio.conf.d/*.conf beside it, in name
// order, later ones overriding), and the files read, comma-separated; NotFound when none reads.
absl::StatusOr<std::string> ReadCrioConfig(const FileSystem& fs, const std::string& path,
                                           std::string* read) {
  std::string text;
  std::vector<std::string> files = {path};
  const std::string dropins = absl::StrCat(path, ".d");
  if (absl::StatusOr<std::vector<std::string>> names = fs.ListDir(dropins); names.ok()) {
    std::vector<std::string> sorted = *names;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& n : sorted) {
      if (absl::EndsWith(n, ".conf")) files.push_back(absl::StrCat(dropins, "/", n));
    }
  }
  std::vector<std::string> ok;
  for (const auto& f : files) {
    absl::StatusOr<std::string> t = fs.ReadFile(f);
    if (!t.ok()) continue;
    absl::StrAppend(&text, *t, "\n");
    ok.push_back(f);
  }
  if (ok.empty()) return absl::NotFoundError(absl::StrCat("no CRI-O config at ", path));
  *read = absl::StrJoin(ok, ", ");
  return text;
}

}  // namespace

std::vector<CheckResult> CheckContainerRuntime(const Options& o, const FileSystem& fs) {
  std::vector<CheckResult> rows;
  std::string path = o.containerd_config;
  std::string whose;
  absl::StatusOr<std::string> text = absl::NotFoundError("no path");
  if (!path.empty()) {
    text = fs.ReadFile(path);
    // CRI-O's crio.conf: its drop-ins count too.
    std::string read;
    if (text.ok() && ParseContainerdConfig(*text).crio) text = ReadCrioConfig(fs, path, &read);
    if (text.ok() && !read.empty()) path = read;
  } else {
    // The distribution's own place: the first known config that reads.
    std::vector<std::string> tried;
    for (const auto& known : KnownContainerdConfigs()) {
      text = fs.ReadFile(known.path);
      if (text.ok()) {
        path = known.path;
        whose = absl::StrCat(known.distribution, "'s ");
        break;
      }
      tried.emplace_back(known.path);
    }
    if (!text.ok()) {
      // No containerd: CRI-O's place (OpenShift and other CRI-O nodes).
      std::string read;
      text = ReadCrioConfig(fs, kCrioConfig, &read);
      if (text.ok()) {
        path = read;
        whose = "CRI-O's ";
      } else {
        tried.push_back(absl::StrCat(kCrioConfig, "{,.d/*.conf}"));
        path = absl::StrJoin(tried, ", ");
      }
    }
  }
  if (!text.ok()) {
    const std::string fix =
        "pass --containerd-config with the runtime's config file, or mount it (the chart's "
        "distribution or containerdConfig value); ignore if the node runs another runtime";
    rows.push_back(Warn("containerd cdi",
                        o.containerd_config.empty()
                            ? absl::StrCat("no containerd or CRI-O config at ", path)
                            : absl::StrCat("cannot read ", path, ": ", Msg(text.status())),
                        fix));
    rows.push_back(Warn("nvidia runtime", "not checked: no containerd config", fix));
    return rows;
  }
  const ContainerdFacts f = ParseContainerdConfig(*text);
  if (f.crio && whose.empty()) whose = "CRI-O's ";
  const std::string where = f.crio ? absl::StrCat(whose, path, " (always on in CRI-O)")
                                   : absl::StrCat(whose, path, " (config version ", f.version, ")");
  const char* row = f.crio ? "crio cdi" : "containerd cdi";
  if (f.CdiEnabled()) {
    std::string detail = absl::StrCat("CDI enabled in ", where);
    if (!f.cdi_spec_dirs.empty()) {
      absl::StrAppend(&detail, "; spec dirs ", absl::StrJoin(f.cdi_spec_dirs, ", "));
    }
    if (!f.cdi_spec_dirs.empty() && std::find(f.cdi_spec_dirs.begin(), f.cdi_spec_dirs.end(),
                                              o.cdi_directory) == f.cdi_spec_dirs.end()) {
      const std::string fix =
          absl::StrCat("add ", o.cdi_directory, " to cdi_spec_dirs",
                       f.crio ? " ([crio.runtime])" : "", ", or point --cdi-root at one of them");
      rows.push_back(o.UsesCdi() ? Fail(row,
                                        detail + "; the CDI directory is not one "
                                                 "of them",
                                        fix)
                                 : Warn(row,
                                        detail + "; the CDI directory is not "
                                                 "one of them",
                                        fix));
    } else {
      rows.push_back(Ok(row, detail));
    }
  } else {
    const std::string detail = absl::StrCat("CDI disabled in ", where);
    const std::string fix =
        "set enable_cdi = true in the CRI plugin's section (containerd 1.7+; on by default in 2.x) "
        "and restart containerd";
    rows.push_back(
        o.UsesCdi() ? Fail(row, detail + "; deviceListStrategy asks for CDI", fix)
                    : Warn(row, detail + "; only the cdi-* device list strategies need it", fix));
  }
  if (f.nvidia_runtime) {
    rows.push_back(Ok("nvidia runtime",
                      absl::StrCat("configured; default runtime ",
                                   f.default_runtime.empty() ? "(unset)" : f.default_runtime)));
  } else if (o.UsesCdi()) {
    rows.push_back(Ok("nvidia runtime", "not configured; not needed with CDI"));
  } else {
    rows.push_back(Warn("nvidia runtime",
                        "not configured, and deviceListStrategy envvar/volume-mounts needs "
                        "nvidia-container-runtime to inject the driver libraries",
                        "install nvidia-container-toolkit (nvidia-ctk runtime configure "
                        "--runtime=containerd), or use deviceListStrategy cdi-cri"));
  }
  return rows;
}

CheckResult CheckCdiDirectory(const Options& o, const FileSystem& fs, const HostAccess& host) {
  const std::string name = "cdi directory";
  const std::string& dir = o.cdi_directory;
  if (!IsDir(fs, dir)) {
    const std::string detail = absl::StrCat(dir, " is not a directory");
    const std::string fix = absl::StrCat("create ", dir,
                                         " on the host and mount it read-write (or "
                                         "set --cdi-root)");
    return o.UsesCdi()
               ? Fail(name, detail + "; deviceListStrategy asks for CDI", fix)
               : Warn(name, detail + "; only the cdi-* device list strategies need it", fix);
  }
  if (absl::Status s = host.Access(dir, W_OK | X_OK); !s.ok()) {
    const std::string fix = "mount it read-write: the plugin writes its CDI spec there";
    return o.UsesCdi() ? Fail(name, Msg(s), fix) : Warn(name, Msg(s), fix);
  }
  std::vector<std::string> specs;
  if (absl::StatusOr<std::vector<std::string>> names = fs.ListDir(dir); names.ok()) {
    for (const std::string& n : *names) {
      if (absl::StrContains(n, "nvidia")) specs.push_back(n);
    }
  }
  return Ok(name, absl::StrCat(dir, " writable; NVIDIA specs: ",
                               specs.empty() ? "none yet" : absl::StrJoin(specs, ", ")));
}

CheckResult CheckDriverUserSpace(const Options& o, const FileSystem& fs,
                                 const nvml::Inventory* inventory) {
  const std::string name = "driver user space";
  if (!o.UsesCdi()) {
    return Ok(name,
              "not from this plugin: with envvar or volume-mounts the NVIDIA container runtime "
              "gives containers the driver");
  }
  if (inventory == nullptr) {
    return Warn(name, "not checked: the driver's version is unknown without NVML",
                "fix the nvml rows above");
  }
  const driver::DriverFiles files =
      driver::FindDriverFiles(fs, {o.driver_root, o.driver_root}, inventory->driver_version);
  size_t libraries = 0, firmware = 0, other = 0;
  for (const driver::Mount& m : files.mounts) {
    if (absl::StrContains(m.container_path, ".so")) {
      ++libraries;
    } else if (absl::StartsWith(m.container_path, "/lib/firmware/")) {
      ++firmware;
    } else {
      ++other;
    }
  }
  const std::string detail = absl::StrCat(
      "the CDI spec gives containers driver ", inventory->driver_version, ": ", libraries,
      " library mounts, ", firmware, " firmware files, ", other, " binaries and sockets");
  if (!files.notes.empty()) {
    return Warn(name, absl::StrCat(detail, "; ", absl::StrJoin(files.notes, "; ")),
                "containers cannot run CUDA or nvidia-smi without the driver's libraries: run "
                "ldconfig in the driver root, or use the NVIDIA runtime (deviceListStrategy "
                "envvar)");
  }
  return Ok(name, detail);
}

CheckResult CheckMig(const Options& o, const FileSystem& fs, const nvml::Inventory* inventory) {
  const std::string name = "mig";
  const bool strategy_on = o.mig_strategy != config::MigStrategy::kNone;
  const std::string strategy = config::ToString(o.mig_strategy);
  if (inventory == nullptr) {
    return Warn(name, absl::StrCat("not checked: NVML did not load (migStrategy ", strategy, ")"),
                "fix the NVML rows above first");
  }
  std::vector<std::string> enabled;
  size_t mig_devices = 0;
  for (const nvml::Gpu& g : inventory->gpus) {
    if (!g.mig_enabled) continue;
    enabled.push_back(absl::StrCat(g.index));
    mig_devices += g.mig_devices.size();
  }
  if (enabled.empty()) {
    if (strategy_on) {
      return Warn(name, absl::StrCat("migStrategy ", strategy, " but no GPU has MIG enabled"),
                  "enable MIG (nvidia-smi -i <gpu> -mig 1, then create instances), or set "
                  "migStrategy none");
    }
    return Ok(name, "no GPU in MIG mode; migStrategy none");
  }
  const std::string detail = absl::StrCat("MIG enabled on GPU ", absl::StrJoin(enabled, ","), " (",
                                          mig_devices, " MIG device(s)), migStrategy ", strategy);
  if (!strategy_on) {
    return Warn(name, detail + ": MIG GPUs are not advertised",
                "set migStrategy single (all GPUs alike) or mixed (nvidia.com/mig-<profile>)");
  }
  std::vector<std::string> missing;
  for (const char* p : {"/dev/nvidia-caps", "/proc/driver/nvidia-caps/mig-minors"}) {
    const std::string path = JoinRoot(o.driver_root, p);
    if (!fs.Exists(path)) missing.push_back(path);
  }
  if (!missing.empty()) {
    return Fail(name, absl::StrCat(detail, "; missing ", absl::StrJoin(missing, ", ")),
                "containers need the MIG capability nodes: run nvidia-modprobe -f "
                "/proc/driver/nvidia-caps/mig-minors on the host and mount /dev/nvidia-caps");
  }
  if (mig_devices == 0) {
    return Warn(name, detail + "; no MIG devices created",
                "create GPU and compute instances (nvidia-smi mig -cgi <profiles> -C)");
  }
  return Ok(name, detail + "; /dev/nvidia-caps present");
}

CheckResult CheckMetricsAccess(const Options& o, kube::ApiClient* api,
                               const std::string& api_error) {
  const std::string name = "metrics access";
  if (!o.metrics_auth) {
    return Ok(name, o.metrics_tls ? "TLS; /metrics, /allocations and /inventory answer anyone "
                                    "who reaches the port (metrics.auth is off)"
                                  : "plain HTTP; /metrics, /allocations and /inventory answer "
                                    "anyone who reaches the port (docs/metrics.md, \"Secure "
                                    "serving\")");
  }
  if (api == nullptr) {
    return Fail(name,
                "metrics.auth is on but there is no API server to check callers with: " + api_error,
                "run in a pod with its service-account token, or set labels.kubeconfig");
  }
  const std::pair<const char*, const char*> reviews[] = {
      {"authentication.k8s.io", "tokenreviews"}, {"authorization.k8s.io", "subjectaccessreviews"}};
  std::vector<std::string> missing;
  for (const auto& [group, resource] : reviews) {
    const nlohmann::json review = {
        {"apiVersion", "authorization.k8s.io/v1"},
        {"kind", "SelfSubjectAccessReview"},
        {"spec",
         {{"resourceAttributes", {{"group", group}, {"resource", resource}, {"verb", "create"}}}}}};
    absl::StatusOr<nlohmann::json> answer =
        api->Post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review);
    if (!answer.ok()) {
      return Warn(name, absl::StrCat("cannot ask the API server: ", answer.status().message()),
                  "check that the API server is reachable from the node; until it is, scrapes "
                  "get 503");
    }
    const nlohmann::json* allowed = nullptr;
    if (answer->contains("status") && (*answer)["status"].contains("allowed")) {
      allowed = &(*answer)["status"]["allowed"];
    }
    if (allowed == nullptr || !allowed->is_boolean() || !allowed->get<bool>()) {
      missing.emplace_back(resource);
    }
  }
  if (!missing.empty()) {
    return Fail(name,
                absl::StrCat("metrics.auth is on but this identity may not create ",
                             absl::StrJoin(missing, " or "), ": every scrape would get 503"),
                "bind the plugin's service account to the ClusterRole system:auth-delegator (the "
                "chart does with metrics.auth.enabled)");
  }
  return Ok(name,
            "TLS; callers of /metrics, /allocations and /inventory need a token allowed "
            "to get the path (TokenReview and SubjectAccessReview; this identity may "
            "create both)");
}

CheckResult CheckMps(const Options& o, const FileSystem& fs, const HostAccess& host) {
  const std::string name = "mps";
  std::vector<std::string> tried;
  for (const std::string& dir : MpsControlDirs()) {
    const std::string path = JoinRoot(o.driver_root, dir + "/nvidia-cuda-mps-control");
    tried.push_back(path);
    if (!fs.Exists(path)) continue;
    if (absl::Status s = host.Access(path, X_OK); !s.ok()) {
      return Fail(name, Msg(s),
                  "make it executable (chmod 755) or mount the driver root with exec");
    }
    return Ok(name, absl::StrCat("nvidia-cuda-mps-control at ", path));
  }
  const std::string detail =
      absl::StrCat("nvidia-cuda-mps-control not found (tried ", absl::StrJoin(tried, ", "), ")");
  const std::string fix =
      "install the driver's user-space utilities (they ship nvidia-cuda-mps-control) under the "
      "driver root";
  if (o.mps_required) return Fail(name, detail + "; MPS sharing is configured", fix);
  return Warn(name, detail + "; MPS sharing will not work", fix);
}

Report RunChecks(const Options& o, const Environment& env) {
  Report r;
  auto add = [&r](std::vector<CheckResult> rows) {
    for (CheckResult& c : rows) r.checks.push_back(std::move(c));
  };
  if (!o.config_error.empty()) {
    r.checks.push_back(Fail("configuration", o.config_error,
                            "fix the fields named above; the rest is checked with defaults"));
  } else {
    r.checks.push_back(Ok("configuration", "valid"));
  }
  std::shared_ptr<const nvml::Inventory> inventory;
  add(CheckNvml(o, *env.fs, env.open_nvml, &inventory));
  r.checks.push_back(CheckDeviceNodes(o, *env.fs, *env.host, inventory.get()));
  add(CheckKubelet(o, *env.fs, *env.host));
  std::unique_ptr<podresources::PodResourcesLister> own;
  podresources::PodResourcesLister* lister = env.pod_resources;
  if (lister == nullptr) {
    own = std::make_unique<podresources::GrpcPodResourcesLister>(o.pod_resources_socket,
                                                                 std::chrono::seconds(2));
    lister = own.get();
  }
  r.checks.push_back(CheckPodResources(o, *env.fs, *lister));
  add(CheckContainerRuntime(o, *env.fs));
  r.checks.push_back(CheckCdiDirectory(o, *env.fs, *env.host));
  r.checks.push_back(CheckDriverUserSpace(o, *env.fs, inventory.get()));
  r.checks.push_back(CheckMig(o, *env.fs, inventory.get()));
  r.checks.push_back(CheckMps(o, *env.fs, *env.host));
  kube::ApiClient* api = env.api;
  std::unique_ptr<kube::ApiClient> own_api;
  std::string api_error;
  if (o.metrics_auth && api == nullptr) {
    absl::StatusOr<kube::RestConfig> rest =
        kube::LoadRestConfig(*env.fs, kube::ProcessEnv(), o.kubeconfig);
    if (rest.ok()) {
      rest->timeout = std::chrono::seconds(5);
      own_api = std::make_unique<kube::OpenSslApiClient>(*std::move(rest), env.fs);
      api = own_api.get();
    } else {
      api_error = std::string(rest.status().message());
    }
  }
  r.checks.push_back(CheckMetricsAccess(o, api, api_error));
  return r;
}

std::string RenderTable(const Report& report) {
  size_t width = std::string("CHECK").size();
  for (const CheckResult& c : report.checks) width = std::max(width, c.name.size());
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w - s.size() + 2, ' '); };
  std::string out = absl::StrCat(pad("STATUS", 6), pad("CHECK", width), "DETAIL\n");
  for (const CheckResult& c : report.checks) {
    absl::StrAppend(&out, pad(ToString(c.severity), 6), pad(c.name, width), c.detail, "\n");
    if (c.severity != Severity::kOk && !c.fix.empty()) {
      absl::StrAppend(&out, std::string(10 + width, ' '), "fix: ", c.fix, "\n");
    }
  }
  absl::StrAppend(&out, report.Count(Severity::kOk), " OK, ", report.Count(Severity::kWarn),
                  " WARN, ", report.Count(Severity::kFail), " FAIL\n");
  return out;
}

std::string RenderJson(const Report& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const CheckResult& c : report.checks) {
    checks.push_back(
        {{"name", c.name}, {"status", ToString(c.severity)}, {"detail", c.detail}, {"fix", c.fix}});
  }
  return nlohmann::json{{"checks", checks},
                        {"ok", report.Count(Severity::kOk)},
                        {"warn", report.Count(Severity::kWarn)},
                        {"fail", report.Count(Severity::kFail)}}
             .dump(2) +
         "\n";
}

}  // namespace gdp::doctor
