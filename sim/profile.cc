#include "sim/profile.h"

#include <nvml.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sim/embedded_profiles.h"
#include "sim/errno_string.h"

namespace gdp::sim {
namespace {

// Reads one YAML mapping strictly: every key must be consumed, so that a typo
// in a profile is an error naming the field rather than a silent default.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {}

  absl::Status CheckMap() const {
    if (!node_.IsMap()) return Error(path_, "must be a mapping");
    return absl::OkStatus();
  }
  bool Has(const std::string& key) {
    used_.insert(key);
    return node_[key].IsDefined() && !node_[key].IsNull();
  }
  YAML::Node Get(const std::string& key) {
    used_.insert(key);
    return node_[key];
  }
  std::string Path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  absl::Status String(const std::string& key, std::string* out, bool required) {
    if (!Has(key)) return required ? Error(Path(key), "is required") : absl::OkStatus();
    YAML::Node n = node_[key];
    if (!n.IsScalar()) return Error(Path(key), "must be a string");
    *out = n.Scalar();
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Uint(const std::string& key, T* out, bool required) {
    if (!Has(key)) return required ? Error(Path(key), "is required") : absl::OkStatus();
    YAML::Node n = node_[key];
    if (!n.IsScalar()) return Error(Path(key), "must be a number");
    const std::string& s = n.Scalar();
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), &end, 0);
    if (s.empty() || s[0] == '-' || errno != 0 || *end != '\0' ||
        v > static_cast<unsigned long long>(static_cast<T>(~T{0}))) {
      return Error(Path(key), absl::StrCat("must be a non-negative integer, got '", s, "'"));
    }
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }
  absl::Status Bool(const std::string& key, bool* out) {
    if (!Has(key)) return absl::OkStatus();
    YAML::Node n = node_[key];
    if (!n.IsScalar() || (n.Scalar() != "true" && n.Scalar() != "false")) {
      return Error(Path(key), "must be true or false");
    }
    *out = n.Scalar() == "true";
    return absl::OkStatus();
  }
  absl::Status CheckAllUsed() const {
    for (const auto& kv : node_) {
      std::string key = kv.first.Scalar();
      if (!used_.count(key)) return Error(Path(key), "is not a known field");
    }
    return absl::OkStatus();
  }
  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("profile ", source_, ": field '", field, "' ", what));
  }

 private:
  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> used_;
};

#define SIM_RETURN_IF_ERROR(expr) \
  do {                            \
    absl::Status _st = (expr);    \
    if (!_st.ok()) return _st;    \
  } while (0)

struct Model {
  GpuSpec gpu;  // model fields only (its mig_profiles included)
};

absl::StatusOr<unsigned> ParseArchitecture(const std::string& s) {
  static const std::map<std::string, unsigned> kArch = {{"kepler", NVML_DEVICE_ARCH_KEPLER},
                                                        {"maxwell", NVML_DEVICE_ARCH_MAXWELL},
                                                        {"pascal", NVML_DEVICE_ARCH_PASCAL},
                                                        {"volta", NVML_DEVICE_ARCH_VOLTA},
                                                        {"turing", NVML_DEVICE_ARCH_TURING},
                                                        {"ampere", NVML_DEVICE_ARCH_AMPERE},
                                                        {"ada", NVML_DEVICE_ARCH_ADA},
                                                        {"hopper", NVML_DEVICE_ARCH_HOPPER},
                                                        {"blackwell", NVML_DEVICE_ARCH_BLACKWELL}};
  auto it = kArch.find(s);
  if (it == kArch.end()) return absl::InvalidArgumentError("unknown architecture");
  return it->second;
}

uint64_t Fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  // splitmix64 finaliser: keys differing in one character get unrelated ids.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

// A stable, UUID-shaped identifier derived from `key`.
std::string DerivedUuid(const std::string& prefix, const std::string& key) {
  uint64_t a = Fnv1a(key, 0x9e3779b97f4a7c15ULL), b = Fnv1a(key, 0xc2b2ae3d27d4eb4fULL);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%08x-%04x-%04x-%04x-%012llx", prefix.c_str(),
                static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                static_cast<unsigned>(a & 0xffff), static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

bool ParseBusId(const std::string& s, unsigned* domain, unsigned* bus, unsigned* dev) {
  unsigned fn = 0;
  char tail = 0;
  return std::sscanf(s.c_str(), "%x:%x:%x.%x%c", domain, bus, dev, &fn, &tail) == 4 &&
         *bus <= 0xff && *dev <= 0x1f && fn == 0;
}

absl::Status ParseModel(const YAML::Node& node, const std::string& path, const std::string& src,
                        Model* m) {
  Fields f(node, path, src);
  SIM_RETURN_IF_ERROR(f.CheckMap());
  GpuSpec& g = m->gpu;
  SIM_RETURN_IF_ERROR(f.String("name", &g.name, true));
  SIM_RETURN_IF_ERROR(f.String("brand", &g.brand, true));
  static const std::set<std::string> kBrands = {"nvidia", "tesla", "geforce",
                                                "quadro", "titan", "nvidia_rtx"};
  if (!kBrands.count(g.brand)) {
    return f.Error(f.Path("brand"), absl::StrCat("must be one of ", absl::StrJoin(kBrands, ", "),
                                                 ", got '", g.brand, "'"));
  }
  std::string arch, cc;
  SIM_RETURN_IF_ERROR(f.String("architecture", &arch, true));
  auto a = ParseArchitecture(arch);
  if (!a.ok()) return f.Error(f.Path("architecture"), absl::StrCat("unknown: '", arch, "'"));
  g.architecture = *a;
  SIM_RETURN_IF_ERROR(f.String("computeCapability", &cc, true));
  char tail = 0;
  if (std::sscanf(cc.c_str(), "%d.%d%c", &g.cc_major, &g.cc_minor, &tail) != 2 || g.cc_major < 1 ||
      g.cc_minor < 0) {
    return f.Error(f.Path("computeCapability"), absl::StrCat("must look like 9.0, got '", cc, "'"));
  }
  SIM_RETURN_IF_ERROR(f.Uint("memoryMiB", &g.memory_mib, true));
  if (g.memory_mib == 0) return f.Error(f.Path("memoryMiB"), "must be positive");
  SIM_RETURN_IF_ERROR(f.Uint("reservedMiB", &g.reserved_mib, false));
  if (g.reserved_mib >= g.memory_mib) {
    return f.Error(f.Path("reservedMiB"),
                   absl::StrCat("must be less than memoryMiB (", g.memory_mib, ")"));
  }
  SIM_RETURN_IF_ERROR(f.Uint("bar1MiB", &g.bar1_mib, false));
  SIM_RETURN_IF_ERROR(f.Uint("pciDeviceId", &g.pci_device_id, true));
  SIM_RETURN_IF_ERROR(f.Uint("pciSubsystemId", &g.pci_subsystem_id, false));
  SIM_RETURN_IF_ERROR(f.Uint("multiprocessors", &g.multiprocessors, true));
  SIM_RETURN_IF_ERROR(f.Uint("copyEngines", &g.copy_engines, false));
  SIM_RETURN_IF_ERROR(f.Uint("decoders", &g.decoders, false));
  SIM_RETURN_IF_ERROR(f.Uint("encoders", &g.encoders, false));
  SIM_RETURN_IF_ERROR(f.Uint("jpegEngines", &g.jpeg, false));
  SIM_RETURN_IF_ERROR(f.Uint("ofaEngines", &g.ofa, false));
  SIM_RETURN_IF_ERROR(f.Uint("powerLimitW", &g.power_limit_w, true));
  SIM_RETURN_IF_ERROR(f.Uint("idlePowerW", &g.idle_power_w, true));
  SIM_RETURN_IF_ERROR(f.Uint("maxSmClockMHz", &g.max_sm_clock_mhz, true));
  SIM_RETURN_IF_ERROR(f.Uint("maxMemClockMHz", &g.max_mem_clock_mhz, true));
  SIM_RETURN_IF_ERROR(f.Bool("ecc", &g.ecc));
  if (f.Has("nvlink")) {
    Fields nl(f.Get("nvlink"), f.Path("nvlink"), src);
    SIM_RETURN_IF_ERROR(nl.CheckMap());
    SIM_RETURN_IF_ERROR(nl.Uint("links", &g.nvlinks, true));
    SIM_RETURN_IF_ERROR(nl.Uint("version", &g.nvlink_version, true));
    if (g.nvlinks > NVML_NVLINK_MAX_LINKS) {
      return nl.Error(nl.Path("links"), absl::StrCat("must be at most ", NVML_NVLINK_MAX_LINKS));
    }
    SIM_RETURN_IF_ERROR(nl.CheckAllUsed());
  }
  if (f.Has("mig")) {
    Fields mig(f.Get("mig"), f.Path("mig"), src);
    SIM_RETURN_IF_ERROR(mig.CheckMap());
    g.mig_capable = true;
    SIM_RETURN_IF_ERROR(mig.Uint("maxDevices", &g.max_mig_devices, true));
    if (!mig.Has("profiles") || !mig.Get("profiles").IsMap()) {
      return mig.Error(mig.Path("profiles"), "must be a mapping of MIG profile names");
    }
    for (const auto& kv : mig.Get("profiles")) {
      std::string pname = kv.first.Scalar();
      Fields p(kv.second, mig.Path("profiles." + pname), src);
      SIM_RETURN_IF_ERROR(p.CheckMap());
      MigProfile spec;
      SIM_RETURN_IF_ERROR(p.Uint("slices", &spec.slices, true));
      SIM_RETURN_IF_ERROR(p.Uint("multiprocessors", &spec.multiprocessors, true));
      SIM_RETURN_IF_ERROR(p.Uint("memoryMiB", &spec.memory_mib, true));
      SIM_RETURN_IF_ERROR(p.CheckAllUsed());
      if (spec.slices == 0 || spec.slices > 7) {
        return p.Error(p.Path("slices"), "must be 1..7");
      }
      g.mig_profiles[pname] = spec;
    }
    SIM_RETURN_IF_ERROR(mig.CheckAllUsed());
  }
  return f.CheckAllUsed();
}

absl::Status ParseGpu(const YAML::Node& node, size_t index,
                      const std::map<std::string, Model>& models, const std::string& profile_name,
                      const std::string& src, GpuSpec* out) {
  std::string path = absl::StrCat("gpus[", index, "]");
  Fields f(node, path, src);
  SIM_RETURN_IF_ERROR(f.CheckMap());
  std::string model_name;
  SIM_RETURN_IF_ERROR(f.String("model", &model_name, true));
  auto it = models.find(model_name);
  if (it == models.end()) {
    return f.Error(f.Path("model"), absl::StrCat("names unknown model '", model_name, "'"));
  }
  const Model& model = it->second;
  *out = model.gpu;
  out->model = model_name;
  std::string bus_id;
  SIM_RETURN_IF_ERROR(f.String("busId", &bus_id, true));
  if (!ParseBusId(bus_id, &out->domain, &out->bus, &out->device)) {
    return f.Error(f.Path("busId"),
                   absl::StrCat("must look like 0000:18:00.0, got '", bus_id, "'"));
  }
  SIM_RETURN_IF_ERROR(f.Uint("numaNode", &out->numa_node, true));
  std::string compute_mode = "DEFAULT";
  SIM_RETURN_IF_ERROR(f.String("computeMode", &compute_mode, false));
  if (compute_mode == "DEFAULT") {
    out->compute_mode = 0;
  } else if (compute_mode == "PROHIBITED") {
    out->compute_mode = 2;
  } else if (compute_mode == "EXCLUSIVE_PROCESS") {
    out->compute_mode = 3;
  } else {
    return f.Error(
        f.Path("computeMode"),
        absl::StrCat("must be DEFAULT, EXCLUSIVE_PROCESS or PROHIBITED, got '", compute_mode, "'"));
  }
  unsigned sw = 0;
  if (f.Has("pcieSwitch")) {
    SIM_RETURN_IF_ERROR(f.Uint("pcieSwitch", &sw, true));
    out->pcie_switch = static_cast<int>(sw);
  }
  std::string key = absl::StrCat(profile_name, "/", index);
  out->uuid = DerivedUuid("GPU", key);
  SIM_RETURN_IF_ERROR(f.String("uuid", &out->uuid, false));
  if (out->uuid.rfind("GPU-", 0) != 0) return f.Error(f.Path("uuid"), "must start with GPU-");
  char serial[32];
  std::snprintf(serial, sizeof serial, "1%012llu",
                static_cast<unsigned long long>(Fnv1a(key, 7) % 1000000000000ULL));
  out->serial = serial;
  SIM_RETURN_IF_ERROR(f.String("serial", &out->serial, false));
  out->minor = static_cast<unsigned>(index);
  SIM_RETURN_IF_ERROR(f.Uint("minor", &out->minor, false));
  if (out->minor > kMaxGpuMinor) {
    return f.Error(f.Path("minor"), absl::StrCat("must be at most ", kMaxGpuMinor));
  }
  out->slot = static_cast<unsigned>(index);
  SIM_RETURN_IF_ERROR(f.Uint("stateSlot", &out->slot, false));
  if (out->slot >= kMaxProfileGpus) {
    return f.Error(f.Path("stateSlot"), absl::StrCat("must be below ", kMaxProfileGpus));
  }
  if (f.Has("mig")) {
    YAML::Node mig = f.Get("mig");
    if (!mig.IsSequence()) return f.Error(f.Path("mig"), "must be a list of MIG profile names");
    if (!out->mig_capable) {
      return f.Error(f.Path("mig"), absl::StrCat("model '", model_name, "' is not MIG-capable"));
    }
    out->mig_enabled = true;
    unsigned gi = 1;
    for (size_t j = 0; j < mig.size(); ++j) {
      // A profile name, or {profile: NAME, uuid: MIG-...} as a layout file keeps them.
      std::string entry_path = absl::StrCat(path, ".mig[", j, "]");
      std::string pname, uuid = DerivedUuid("MIG", absl::StrCat(key, "/", j));
      if (mig[j].IsScalar()) {
        pname = mig[j].Scalar();
      } else if (mig[j].IsMap()) {
        Fields e(mig[j], entry_path, src);
        SIM_RETURN_IF_ERROR(e.String("profile", &pname, true));
        SIM_RETURN_IF_ERROR(e.String("uuid", &uuid, false));
        SIM_RETURN_IF_ERROR(e.CheckAllUsed());
        if (uuid.rfind("MIG-", 0) != 0) return e.Error(e.Path("uuid"), "must start with MIG-");
      }
      auto p = model.gpu.mig_profiles.find(pname);
      if (p == model.gpu.mig_profiles.end()) {
        return f.Error(entry_path, absl::StrCat("names unknown MIG profile '", pname,
                                                "' for model '", model_name, "'"));
      }
      MigDeviceSpec d;
      d.profile = pname;
      d.gpu_instance_id = gi++;
      d.compute_instance_id = 0;
      d.slices = p->second.slices;
      d.multiprocessors = p->second.multiprocessors;
      d.memory_mib = p->second.memory_mib;
      d.uuid = uuid;
      out->mig_devices.push_back(d);
    }
    if (auto st = CheckMigBudget(*out, out->mig_devices); !st.ok()) {
      return f.Error(f.Path("mig"), std::string(st.message()));
    }
  }
  return f.CheckAllUsed();
}

absl::StatusOr<Profile> ParseProfileImpl(std::string_view yaml, const std::string& source,
                                         bool allow_no_gpus);

}  // namespace

absl::Status CheckMigBudget(const GpuSpec& gpu, const std::vector<MigDeviceSpec>& devices) {
  unsigned slices = 0;
  uint64_t memory = 0, budget = 0;
  for (const auto& [name, p] : gpu.mig_profiles) budget = std::max(budget, p.memory_mib);
  for (const auto& d : devices) {
    slices += d.slices;
    memory += d.memory_mib;
  }
  if (slices > 7 || memory > budget || devices.size() > gpu.max_mig_devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("uses ", slices, " slices and ", memory, " MiB in ", devices.size(),
                     " instances; the ", gpu.name, " has 7 slices, ", budget,
                     " MiB for MIG and at most ", gpu.max_mig_devices, " MIG devices"));
  }
  return absl::OkStatus();
}

std::string Profile::NvmlVersion() const {
  return absl::StrCat(cuda_driver_version / 1000, ".", driver_version);
}

absl::Status ValidateDriverVersion(const std::string& v) {
  std::vector<std::string> parts = absl::StrSplit(v, '.');
  bool ok = parts.size() >= 2 && parts.size() <= 3;
  for (const auto& p : parts) {
    ok = ok && !p.empty() &&
         std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("driver version '", v, "' must look like 550.54.15"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCudaVersion(int v) {
  if (v < 1000 || v > 99990) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA driver version ", v, " must be 1000*major + 10*minor, e.g. 12040 for 12.4"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Profile> ParseProfile(std::string_view yaml, const std::string& source) {
  return ParseProfileImpl(yaml, source, false);
}

namespace {
absl::StatusOr<Profile> ParseProfileImpl(std::string_view yaml, const std::string& source,
                                         bool allow_no_gpus) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile ", source, ": malformed YAML: ", e.what()));
  }
  Profile p;
  p.source = source;
  try {
    Fields f(root, "", source);
    SIM_RETURN_IF_ERROR(f.CheckMap());
    SIM_RETURN_IF_ERROR(f.String("name", &p.name, true));
    SIM_RETURN_IF_ERROR(f.String("description", &p.description, false));
    SIM_RETURN_IF_ERROR(f.String("driverVersion", &p.driver_version, true));
    if (auto st = ValidateDriverVersion(p.driver_version); !st.ok()) {
      return f.Error("driverVersion", std::string(st.message()));
    }
    unsigned cuda = 0;
    SIM_RETURN_IF_ERROR(f.Uint("cudaDriverVersion", &cuda, true));
    p.cuda_driver_version = static_cast<int>(cuda);
    if (auto st = ValidateCudaVersion(p.cuda_driver_version); !st.ok()) {
      return f.Error("cudaDriverVersion", std::string(st.message()));
    }
    std::vector<std::string> switches;
    if (f.Has("nvswitches")) {
      YAML::Node sw = f.Get("nvswitches");
      if (!sw.IsSequence()) return f.Error("nvswitches", "must be a list of PCI bus ids");
      for (size_t i = 0; i < sw.size(); ++i) {
        unsigned d, b, dv;
        std::string s = sw[i].IsScalar() ? sw[i].Scalar() : "";
        if (!ParseBusId(s, &d, &b, &dv)) {
          return f.Error(absl::StrCat("nvswitches[", i, "]"),
                         absl::StrCat("must look like 0000:05:00.0, got '", s, "'"));
        }
        switches.push_back(s);
      }
    }
    std::map<std::string, Model> models;
    if (!f.Has("models") || !f.Get("models").IsMap()) {
      return f.Error("models", "is required and must be a mapping of model names");
    }
    for (const auto& kv : f.Get("models")) {
      Model m;
      SIM_RETURN_IF_ERROR(ParseModel(kv.second, "models." + kv.first.Scalar(), source, &m));
      models[kv.first.Scalar()] = std::move(m);
    }
    YAML::Node gpus = f.Get("gpus");
    if (!gpus.IsSequence() || (gpus.size() == 0 && !allow_no_gpus)) {
      return f.Error("gpus", "is required and must be a non-empty list");
    }
    if (gpus.size() > kMaxProfileGpus) {
      return f.Error("gpus", absl::StrCat("must list at most ", kMaxProfileGpus, " GPUs"));
    }
    std::set<std::string> seen;
    std::set<unsigned> minors, slots;
    for (size_t i = 0; i < gpus.size(); ++i) {
      GpuSpec g;
      SIM_RETURN_IF_ERROR(ParseGpu(gpus[i], i, models, p.name, source, &g));
      if (g.nvlinks > 0) {
        if (switches.empty()) {
          return f.Error(absl::StrCat("gpus[", i, "]"),
                         "has NVLinks but the profile lists no nvswitches");
        }
        g.nvswitch_bus_ids = switches;
      }
      char bus[32];
      std::snprintf(bus, sizeof bus, "%x:%x:%x", g.domain, g.bus, g.device);
      if (!seen.insert(bus).second || !seen.insert(g.uuid).second) {
        return f.Error(absl::StrCat("gpus[", i, "]"), "repeats another GPU's busId or uuid");
      }
      for (const auto& m : g.mig_devices) {
        if (!seen.insert(m.uuid).second) {
          return f.Error(absl::StrCat("gpus[", i, "].mig"), "repeats another MIG device's uuid");
        }
      }
      if (!minors.insert(g.minor).second || !slots.insert(g.slot).second) {
        return f.Error(absl::StrCat("gpus[", i, "]"), "repeats another GPU's minor or stateSlot");
      }
      p.gpus.push_back(std::move(g));
    }
    SIM_RETURN_IF_ERROR(f.CheckAllUsed());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("profile ", source, ": ", e.what()));
  }
  // NVML enumerates GPUs in PCI bus order.
  std::stable_sort(p.gpus.begin(), p.gpus.end(), [](const GpuSpec& a, const GpuSpec& b) {
    return std::tie(a.domain, a.bus, a.device) < std::tie(b.domain, b.bus, b.device);
  });
  return p;
}
}  // namespace

std::vector<std::string> BuiltinProfileNames() {
  std::vector<std::string> names;
  for (const auto& e : EmbeddedProfiles()) names.emplace_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<Profile> BuiltinProfile(const std::string& name) {
  for (const auto& e : EmbeddedProfiles()) {
    if (name == e.name) return ParseProfile(e.yaml, absl::StrCat("built-in ", name));
  }
  return absl::NotFoundError(absl::StrCat("unknown profile '", name, "'; built-in profiles are: ",
                                          absl::StrJoin(BuiltinProfileNames(), ", "),
                                          ", or give the path of a YAML file"));
}

namespace {
bool IsProfilePath(const std::string& name_or_path) {
  return name_or_path.find('/') != std::string::npos ||
         (name_or_path.size() > 5 &&
          name_or_path.compare(name_or_path.size() - 5, 5, ".yaml") == 0);
}
}  // namespace

absl::StatusOr<std::string> ProfileText(const std::string& name_or_path) {
  if (!IsProfilePath(name_or_path)) {
    for (const auto& e : EmbeddedProfiles()) {
      if (name_or_path == e.name) return std::string(e.yaml);
    }
    return BuiltinProfile(name_or_path).status();  // the NotFound that lists the names
  }
  std::ifstream in(name_or_path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read profile file ", name_or_path, ": ", ErrnoString(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<Profile> LoadProfile(const std::string& name_or_path) {
  if (!IsProfilePath(name_or_path)) return BuiltinProfile(name_or_path);
  auto text = ProfileText(name_or_path);
  if (!text.ok()) return text.status();
  return ParseProfile(*text, name_or_path);
}

absl::StatusOr<Profile> ApplyLayout(std::string_view base_yaml, std::string_view layout_yaml,
                                    const std::string& source) {
  std::string merged;
  try {
    YAML::Node base = YAML::Load(std::string(base_yaml));
    YAML::Node layout = YAML::Load(std::string(layout_yaml));
    if (!base.IsMap()) return absl::InvalidArgumentError(source + ": the profile is not a mapping");
    if (!layout.IsMap() || !layout["gpus"].IsSequence()) {
      return absl::InvalidArgumentError(source + ": the layout must be a mapping with a gpus list");
    }
    for (const auto& kv : layout) {
      if (kv.first.Scalar() != "gpus") {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": layout field '", kv.first.Scalar(), "' is not a known field"));
      }
    }
    base["gpus"] = layout["gpus"];
    YAML::Emitter out;
    out << base;
    merged = out.c_str();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": malformed YAML: ", e.what()));
  }
  return ParseProfileImpl(merged, source, true);
}

namespace {
const char* ComputeModeName(unsigned mode) {
  switch (mode) {
    case 2:
      return "PROHIBITED";
    case 3:
      return "EXCLUSIVE_PROCESS";
    default:
      return "DEFAULT";
  }
}
}  // namespace

std::string BusIdString(const GpuSpec& g) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.0", g.domain, g.bus, g.device);
  return buf;
}

uint32_t PciGpuId(const GpuSpec& g) {
  return ((g.domain & 0xffffu) << 16) | ((g.bus & 0xffu) << 8) | (g.device & 0xffu);
}

std::string LayoutYaml(const Profile& p) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "gpus" << YAML::Value << YAML::BeginSeq;
  for (const GpuSpec& g : p.gpus) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "model" << YAML::Value << g.model;
    out << YAML::Key << "busId" << YAML::Value << YAML::DoubleQuoted << BusIdString(g);
    out << YAML::Key << "numaNode" << YAML::Value << g.numa_node;
    if (g.pcie_switch >= 0) out << YAML::Key << "pcieSwitch" << YAML::Value << g.pcie_switch;
    if (g.compute_mode != 0) {
      out << YAML::Key << "computeMode" << YAML::Value << ComputeModeName(g.compute_mode);
    }
    out << YAML::Key << "uuid" << YAML::Value << g.uuid;
    out << YAML::Key << "serial" << YAML::Value << YAML::DoubleQuoted << g.serial;
    out << YAML::Key << "minor" << YAML::Value << g.minor;
    out << YAML::Key << "stateSlot" << YAML::Value << g.slot;
    if (g.mig_enabled) {
      out << YAML::Key << "mig" << YAML::Value << YAML::BeginSeq;
      for (const auto& m : g.mig_devices) {
        out << YAML::BeginMap << YAML::Key << "profile" << YAML::Value << m.profile << YAML::Key
            << "uuid" << YAML::Value << m.uuid << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string RandomUuid(const std::string& prefix) {
  std::random_device rd;
  std::string key;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&key, rd(), "/");
  return DerivedUuid(prefix, key);
}

std::string RandomSerial() {
  std::random_device rd;
  uint64_t v = (uint64_t{rd()} << 32) | rd();
  char serial[32];
  std::snprintf(serial, sizeof serial, "1%012llu",
                static_cast<unsigned long long>(v % 1000000000000ULL));
  return serial;
}

}  // namespace gdp::sim
