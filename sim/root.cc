#include "sim/root.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sim/errno_string.h"
#include "sim/state.h"

namespace gdp::sim {
namespace fs = std::filesystem;

std::string ConfigPath(const std::string& root) { return root + "/etc/gpusim/config.yaml"; }
std::string StatePath(const std::string& root) { return root + "/run/gpusim/state"; }
std::string LibraryPath(const std::string& root) { return root + "/" + kLibraryRelPath; }
std::string LayoutPath(const std::string& root) { return root + "/etc/gpusim/layout.yaml"; }
std::string DriverLockPath(const std::string& root) { return root + "/run/gpusim/driver.lock"; }
std::string LayoutLockPath(const std::string& root) { return root + "/run/gpusim/layout.lock"; }
std::string ContextsPath(const std::string& root) { return root + "/run/gpusim/contexts"; }
std::string AsideLibraryPath(const std::string& root) {
  return root + "/run/gpusim/libnvidia-ml.so.1";
}

std::string RootFromLibraryPath(const std::string& library_path) {
  std::string suffix = std::string("/") + kLibraryRelPath;
  if (library_path.size() < suffix.size() ||
      library_path.compare(library_path.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return "";
  }
  std::string root = library_path.substr(0, library_path.size() - suffix.size());
  return root.empty() ? "/" : root;
}

namespace {
// Writes `text` to `path` through a temporary file and rename, so a reader
// sees the old or the new file, never a part.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", ErrnoString(errno)));
  }
  return absl::OkStatus();
}
}  // namespace

namespace {
// Each branch's release: the one its CUDA toolkit's release notes pair with it (CUDA 12.2
// Update 2, 12.4 Update 1, 12.8 Update 1, 13.0 Update 1), whose nvml.h NVML_BRANCHES pins.
constexpr DriverBranch kDriverBranches[] = {
    {"r535", "535.216.03", 12020, false},
    {"r550", "550.54.15", 12040, false},
    {"r570", "570.124.06", 12080, true},
    {"r580", "580.82.07", 13000, true},
};
}  // namespace

const DriverBranch* FindDriverBranch(const std::string& name) {
  for (const auto& b : kDriverBranches) {
    if (name == b.name) return &b;
  }
  return nullptr;
}

std::string DriverBranchNames() {
  std::string out;
  for (const auto& b : kDriverBranches) absl::StrAppend(&out, out.empty() ? "" : ", ", b.name);
  return out;
}

absl::StatusOr<RootConfig> ReadConfig(const std::string& root) {
  std::string path = ConfigPath(root);
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read simulator config ", path, ": ",
                                            ErrnoString(errno),
                                            "; lay out the driver root with `gpusim root`"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  RootConfig c;
  try {
    YAML::Node n = YAML::Load(ss.str());
    if (!n.IsMap()) return absl::InvalidArgumentError(path + ": must be a YAML mapping");
    for (const auto& kv : n) {
      std::string key = kv.first.Scalar();
      if (key == "profile") {
        c.profile = kv.second.as<std::string>();
      } else if (key == "driverVersion") {
        c.driver_version = kv.second.as<std::string>();
      } else if (key == "cudaDriverVersion") {
        c.cuda_driver_version = kv.second.as<int>();
      } else if (key == "layout") {
        c.layout = kv.second.as<std::string>();
      } else if (key == "changeEvents") {
        c.change_events = kv.second.as<bool>();
      } else if (key == "driverBranch") {
        c.driver_branch = kv.second.as<std::string>();
        if (FindDriverBranch(c.driver_branch) == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(path, ": driverBranch '", c.driver_branch,
                                                         "' is not one of ", DriverBranchNames()));
        }
      } else if (key == "deviceNodes") {
        std::string v = kv.second.as<std::string>();
        if (v != "char" && v != "files") {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": deviceNodes must be char or files, got '", v, "'"));
        }
        c.char_devices = v == "char";
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": field '", key, "' is not a known field"));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (c.profile.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field 'profile' is required"));
  }
  return c;
}

absl::Status WriteConfig(const std::string& root, const RootConfig& c) {
  std::string path = ConfigPath(root);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "profile" << YAML::Value << c.profile;
  if (!c.driver_version.empty()) {
    out << YAML::Key << "driverVersion" << YAML::Value << YAML::DoubleQuoted << c.driver_version;
  }
  if (c.cuda_driver_version != 0) {
    out << YAML::Key << "cudaDriverVersion" << YAML::Value << c.cuda_driver_version;
  }
  if (!c.layout.empty()) out << YAML::Key << "layout" << YAML::Value << c.layout;
  out << YAML::Key << "deviceNodes" << YAML::Value << (c.char_devices ? "char" : "files");
  if (!c.change_events) out << YAML::Key << "changeEvents" << YAML::Value << false;
  if (!c.driver_branch.empty())
    out << YAML::Key << "driverBranch" << YAML::Value << c.driver_branch;
  out << YAML::EndMap;
  return WriteFileAtomically(path, std::string("# Written by gpusim: the profile this driver "
                                               "root simulates.\n") +
                                       out.c_str() + "\n");
}

absl::StatusOr<Profile> LoadRootProfile(const std::string& root) {
  auto c = ReadConfig(root);
  if (!c.ok()) return c.status();
  std::string name = c->profile;
  bool is_path = name.find('/') != std::string::npos || name.ends_with(".yaml");
  if (is_path && name[0] != '/') name = root + "/etc/gpusim/" + name;
  absl::StatusOr<Profile> p;
  if (c->layout.empty()) {
    p = LoadProfile(name);
  } else {
    auto base = ProfileText(name);
    if (!base.ok()) return base.status();
    std::string layout_path = c->layout[0] == '/' ? c->layout : root + "/etc/gpusim/" + c->layout;
    std::ifstream in(layout_path);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("cannot read layout ", layout_path, ": ", ErrnoString(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    p = ApplyLayout(*base, ss.str(), absl::StrCat("layout ", layout_path, " over profile ", name));
    if (p.ok()) {
      p->source = absl::StrCat(is_path ? name : "built-in " + name, ", layout ", c->layout);
    }
  }
  if (!p.ok()) return p.status();
  if (!c->driver_version.empty()) {
    if (auto st = ValidateDriverVersion(c->driver_version); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(ConfigPath(root), ": ", st.message()));
    }
    p->driver_version = c->driver_version;
  }
  if (c->cuda_driver_version != 0) {
    if (auto st = ValidateCudaVersion(c->cuda_driver_version); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(ConfigPath(root), ": ", st.message()));
    }
    p->cuda_driver_version = c->cuda_driver_version;
  }
  return p;
}

namespace {
// As in /proc/driver/nvidia-caps/mig-minors: 1 config, 2 monitor, then for
// GPU g, GPU instance i: access 3 + 135g + 9i, compute instance c: that + 1 + c.
unsigned GiMinor(unsigned gpu, unsigned gi) { return 3 + 135 * gpu + 9 * gi; }
unsigned CiMinor(unsigned gpu, unsigned gi, unsigned ci) { return GiMinor(gpu, gi) + 1 + ci; }
}  // namespace

const std::vector<std::string>& DeviceExtraNames() {
  static const std::vector<std::string> kNames = {"gdrcopy", "gds", "mofed", "imex"};
  return kNames;
}

namespace {
// Majors as the kernel hands them out (dynamic ones vary per host).
std::vector<DeviceNode> ExtraNodes(const std::string& extra) {
  if (extra == "gdrcopy") return {{"dev/gdrdrv", 508, 0}};
  if (extra == "gds") return {{"dev/nvidia-fs0", 507, 0}, {"dev/nvidia-fs1", 507, 1}};
  if (extra == "mofed")
    return {{"dev/infiniband/uverbs0", 231, 192}, {"dev/infiniband/rdma_cm", 10, 58}};
  if (extra == "imex") return {{"dev/nvidia-caps-imex-channels/channel0", 506, 0}};
  return {};
}
}  // namespace

std::vector<DeviceNode> DeviceNodes(const Profile& profile) {
  std::vector<DeviceNode> nodes;
  for (const GpuSpec& g : profile.gpus) {
    nodes.push_back({absl::StrCat("dev/nvidia", g.minor), kNvidiaMajor, g.minor});
  }
  nodes.push_back({"dev/nvidiactl", kNvidiaMajor, 255});
  nodes.push_back({"dev/nvidia-modeset", kNvidiaMajor, 254});
  nodes.push_back({"dev/nvidia-uvm", kUvmMajor, 0});
  nodes.push_back({"dev/nvidia-uvm-tools", kUvmMajor, 1});
  bool any_mig = false;
  for (const GpuSpec& g : profile.gpus) {
    for (const auto& m : g.mig_devices) {
      any_mig = true;
      unsigned gi = GiMinor(g.minor, m.gpu_instance_id);
      unsigned ci = CiMinor(g.minor, m.gpu_instance_id, m.compute_instance_id);
      nodes.push_back({absl::StrCat("dev/nvidia-caps/nvidia-cap", gi), kCapsMajor, gi});
      nodes.push_back({absl::StrCat("dev/nvidia-caps/nvidia-cap", ci), kCapsMajor, ci});
    }
  }
  if (any_mig) {
    nodes.push_back({"dev/nvidia-caps/nvidia-cap1", kCapsMajor, 1});
    nodes.push_back({"dev/nvidia-caps/nvidia-cap2", kCapsMajor, 2});
  }
  return nodes;
}

std::string MigMinorsFile(const Profile& profile) {
  std::string out = "config 1\nmonitor 2\n";
  std::vector<unsigned> minors;
  for (const GpuSpec& gpu : profile.gpus) minors.push_back(gpu.minor);
  std::sort(minors.begin(), minors.end());
  for (unsigned g : minors) {
    for (unsigned gi = 0; gi < 15; ++gi) {
      absl::StrAppend(&out, "gpu", g, "/gi", gi, "/access ", GiMinor(g, gi), "\n");
      for (unsigned ci = 0; ci < 8; ++ci) {
        absl::StrAppend(&out, "gpu", g, "/gi", gi, "/ci", ci, "/access ", CiMinor(g, gi, ci), "\n");
      }
    }
  }
  return out;
}

namespace {

// Copies the shared libraries `library` needs, other than glibc's, into `dir`
// under the names it asks for (their sonames), as a real driver root carries
// the driver's own libraries. The simulator library finds them there through
// its RPATH ($ORIGIN), also inside a container whose image lacks them: the
// plugin's image carries only what the plugin needs. The list comes from ldd.
absl::Status CopyLibraryDependencies(const std::string& library, const std::string& dir) {
  const std::string cmd = "ldd '" + library + "' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError(absl::StrCat("cannot run ", cmd));
  std::vector<std::pair<std::string, std::string>> deps;  // soname, path
  char line[1024];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    std::istringstream in(line);
    std::string name, arrow, path;
    if (!(in >> name >> arrow >> path) || arrow != "=>" || path.empty() || path[0] != '/') continue;
    static const char* const kGlibc[] = {"libc.so",       "libm.so",  "libdl.so",
                                         "libpthread.so", "librt.so", "ld-linux"};
    bool glibc = false;
    for (const char* g : kGlibc) glibc = glibc || name.starts_with(g);
    if (!glibc) deps.emplace_back(name, path);
  }
  if (int rc = ::pclose(p); rc != 0) {
    return absl::InternalError(absl::StrCat(cmd, " failed (status ", rc, "); is ldd installed?"));
  }
  for (const auto& [name, path] : deps) {
    std::error_code ec;
    const std::string dest = absl::StrCat(dir, "/", name);
    fs::copy_file(fs::canonical(path, ec), dest + ".tmp", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(dest + ".tmp", dest, ec);  // atomic, as for the library
    if (ec) return absl::InternalError(absl::StrCat("cannot install ", dest, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
// Creates one node: a character device, or an empty regular file.
absl::Status MakeNode(const std::string& root, const DeviceNode& n, bool char_devices) {
  std::string path = root + "/" + n.path;
  int rc = char_devices ? mknod(path.c_str(), S_IFCHR | 0666, makedev(n.major, n.minor))
                        : (std::ofstream(path).good() ? 0 : -1);
  if (rc != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create device node ", path, ": ", ErrnoString(errno)));
  }
  if (char_devices) chmod(path.c_str(), 0666);
  return absl::OkStatus();
}

absl::Status WriteMigMinors(const std::string& root, const Profile& profile) {
  std::error_code ec;
  fs::create_directories(root + "/proc/driver/nvidia-caps", ec);
  return WriteFileAtomically(root + "/proc/driver/nvidia-caps/mig-minors", MigMinorsFile(profile));
}
}  // namespace

absl::Status SyncDeviceNodes(const std::string& root, const Profile& profile, bool char_devices) {
  std::set<std::string> want;
  std::vector<DeviceNode> nodes = DeviceNodes(profile);
  for (const auto& n : nodes) want.insert(n.path);
  std::error_code ec;
  for (const char* dir : {"dev", "dev/nvidia-caps"}) {
    for (const auto& entry : fs::directory_iterator(root + "/" + dir, ec)) {
      std::string rel = std::string(dir) + "/" + entry.path().filename().string();
      if (rel == "dev/nvidia-caps" || rel.rfind("dev/nvidia", 0) != 0) continue;
      if (!want.count(rel)) fs::remove(entry.path(), ec);
    }
  }
  fs::create_directories(root + "/dev/nvidia-caps", ec);
  for (const auto& n : nodes) {
    if (fs::exists(fs::symlink_status(root + "/" + n.path, ec))) continue;
    if (auto st = MakeNode(root, n, char_devices); !st.ok()) return st;
  }
  return WriteMigMinors(root, profile);
}

void RemoveDeviceNodes(const std::string& root) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root + "/dev", ec)) {
    if (entry.path().filename().string().rfind("nvidia", 0) == 0) fs::remove_all(entry.path(), ec);
  }
}

absl::Status WriteLayout(const std::string& root, const Profile& profile) {
  if (auto st =
          WriteFileAtomically(LayoutPath(root),
                              "# Written by gpusim: the live GPU layout of this driver root, over "
                              "the profile named in config.yaml.\n" +
                                  LayoutYaml(profile));
      !st.ok()) {
    return st;
  }
  auto c = ReadConfig(root);
  if (!c.ok()) return c.status();
  if (c->layout == "layout.yaml") return absl::OkStatus();
  c->layout = "layout.yaml";
  return WriteConfig(root, *c);
}

absl::StatusOr<LayoutResult> LayoutRoot(const std::string& root, const LayoutOptions& o) {
  // Validate everything before touching the root.
  auto profile = LoadProfile(o.config.profile);
  if (!profile.ok()) return profile.status();
  if (!o.config.driver_version.empty()) {
    if (auto st = ValidateDriverVersion(o.config.driver_version); !st.ok()) return st;
    profile->driver_version = o.config.driver_version;
  }
  if (o.config.cuda_driver_version != 0) {
    if (auto st = ValidateCudaVersion(o.config.cuda_driver_version); !st.ok()) return st;
    profile->cuda_driver_version = o.config.cuda_driver_version;
  }
  std::error_code ec;
  if (!fs::is_regular_file(o.library, ec)) {
    return absl::NotFoundError(absl::StrCat("simulator library ", o.library,
                                            " not found; build the nvidia-ml target or pass "
                                            "--library"));
  }
  if (!o.mps_control.empty() && !fs::is_regular_file(o.mps_control, ec)) {
    return absl::NotFoundError(absl::StrCat("MPS control stand-in ", o.mps_control,
                                            " not found; build the nvidia-cuda-mps-control "
                                            "target or pass --mps-control"));
  }
  for (const std::string& extra : o.extras) {
    const auto& names = DeviceExtraNames();
    if (std::find(names.begin(), names.end(), extra) == names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown device extra \"", extra,
                                                     "\"; known: ", absl::StrJoin(names, ", ")));
    }
  }
  bool can_mknod = geteuid() == 0;
  if (!can_mknod && !o.allow_regular_files) {
    return absl::PermissionDeniedError(
        "creating the /dev/nvidia* character devices needs root (CAP_MKNOD); run as root, or "
        "pass --no-mknod to create empty regular files in their place");
  }

  fs::create_directories(root + "/usr/lib/x86_64-linux-gnu", ec);
  fs::create_directories(root + "/dev/nvidia-caps", ec);
  fs::create_directories(root + "/proc/driver/nvidia-caps", ec);
  fs::create_directories(root + "/etc/gpusim", ec);  // a profile file is copied there
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", root, ": ", ec.message()));

  std::string lib = LibraryPath(root);
  std::string tmp = lib + ".tmp";
  fs::copy_file(o.library, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, lib, ec);  // atomic: a process mapping the old one keeps it
  if (ec) return absl::InternalError(absl::StrCat("cannot install ", lib, ": ", ec.message()));
  if (auto st = CopyLibraryDependencies(o.library, root + "/usr/lib/x86_64-linux-gnu"); !st.ok()) {
    return st;
  }
  if (!o.mps_control.empty()) {
    std::string bin = root + "/" + kMpsControlRelPath;
    fs::create_directories(fs::path(bin).parent_path(), ec);
    if (!ec) fs::copy_file(o.mps_control, bin + ".tmp", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(bin + ".tmp", bin, ec);  // atomic: a running daemon keeps the old one
    if (ec) return absl::InternalError(absl::StrCat("cannot install ", bin, ": ", ec.message()));
  }

  // The host's sysfs as it describes each GPU's PCI device (its NUMA node), for a daemon
  // pointed at <root>/sys (--sysfs-root): what it reads where NVML cannot say.
  for (const GpuSpec& g : profile->gpus) {
    const std::string dir = root + "/sys/bus/pci/devices/" + BusIdString(g);
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
    if (auto st = WriteFileAtomically(dir + "/numa_node", absl::StrCat(g.numa_node, "\n"));
        !st.ok()) {
      return st;
    }
  }

  RootConfig config = o.config;
  config.layout.clear();  // a fresh root has the profile's own GPUs
  config.char_devices = can_mknod;
  fs::remove(LayoutPath(root), ec);
  fs::remove(AsideLibraryPath(root), ec);
  bool is_path = config.profile.find('/') != std::string::npos || config.profile.ends_with(".yaml");
  if (is_path) {
    fs::copy_file(config.profile, root + "/etc/gpusim/profile.yaml",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy profile: ", ec.message()));
    config.profile = "profile.yaml";
  }
  if (auto st = WriteConfig(root, config); !st.ok()) return st;
  if (auto st = SharedState::Reset(StatePath(root), *profile); !st.ok()) return st;
  for (const std::string& lock : {DriverLockPath(root), LayoutLockPath(root)}) {
    std::ofstream(lock).flush();
    chmod(lock.c_str(), 0666);  // the daemon and the injector may run as different users
  }
  if (auto st = WriteMigMinors(root, *profile); !st.ok()) return st;

  // Replace the whole dev tree: a previous profile may have had more GPUs.
  RemoveDeviceNodes(root);
  fs::create_directories(root + "/dev/nvidia-caps", ec);
  LayoutResult result;
  result.char_devices = can_mknod;
  result.driver_version = profile->driver_version;
  for (const auto& n : DeviceNodes(*profile)) {
    if (auto st = MakeNode(root, n, can_mknod); !st.ok()) return st;
    result.nodes++;
  }
  fs::remove(root + "/dev/gdrdrv", ec);
  fs::remove_all(root + "/dev/infiniband", ec);
  for (const std::string& extra : o.extras) {
    for (const DeviceNode& n : ExtraNodes(extra)) {
      fs::create_directories(fs::path(root + "/" + n.path).parent_path(), ec);
      if (auto st = MakeNode(root, n, can_mknod); !st.ok()) return st;
      result.nodes++;
    }
  }
  return result;
}

}  // namespace gdp::sim
