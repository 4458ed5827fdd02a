#include "src/labels/labels.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gdp::labels {

namespace {

constexpr uint64_t kMiB = uint64_t{1024} * 1024;
constexpr char kPrefix[] = "nvidia.com/";

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

std::string Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

Sharing SharingOf(const config::Config& config) {
  // As GPU Feature Discovery: the sharing of the node's GPU resource
  // (flags.plugin.resourceName), time-slicing first, then MPS.
  for (const config::SharedResource& r : config.sharing.time_slicing.resources) {
    if (r.name == config.resource_name) {
      return Sharing{"time-slicing", static_cast<int>(r.replicas), false};
    }
  }
  for (const config::SharedResource& r : config.sharing.mps.resources) {
    if (r.name == config.resource_name) return Sharing{"mps", static_cast<int>(r.replicas), true};
  }
  return Sharing{};
}

std::string SanitizeLabelValue(std::string_view text) {
  std::string out;
  for (char c : text) {
    out.push_back(IsAlnum(c) || c == '-' || c == '_' || c == '.' ? c : '-');
  }
  if (out.size() > 63) out.resize(63);
  while (!out.empty() && !IsAlnum(out.back())) out.pop_back();
  size_t start = 0;
  while (start < out.size() && !IsAlnum(out[start])) ++start;
  return out.substr(start);
}

std::string FamilyOf(int major, int minor) {
  switch (major) {
    case 1:
      return "tesla";
    case 2:
      return "fermi";
    case 3:
      return "kepler";
    case 5:
      return "maxwell";
    case 6:
      return "pascal";
    case 7:
      return minor < 5 ? "volta" : "turing";
    case 8:
      return minor < 9 ? "ampere" : "ada-lovelace";
    case 9:
      return "hopper";
    case 10:
    case 12:
      return "blackwell";
    default:
      return "undefined";
  }
}

std::string GpuModeOf(std::string_view pci_class) {
  std::string_view c = pci_class;
  while (!c.empty() && absl::ascii_isspace(static_cast<unsigned char>(c.back())))
    c.remove_suffix(1);
  if (c.starts_with("0x0302")) return "compute";
  if (c.starts_with("0x0300")) return "display";
  return "unknown";
}

Labels ComputeLabels(const nvml::Inventory& inventory, const config::Config& config,
                     const NodeFacts& facts) {
  Labels l;
  if (inventory.gpus.empty()) return l;
  auto set = [&](const std::string& key, const std::string& value) {
    std::string v = SanitizeLabelValue(value);
    if (!v.empty()) l[kPrefix + key] = v;
  };
  // GFD describes the node by its first GPU; mixed-model nodes are rare and
  // get the first model's product.
  const nvml::Gpu& first = inventory.gpus.front();
  const Sharing sharing = SharingOf(config);
  const std::string product = SanitizeLabelValue(first.name);

  // Driver and CUDA versions.
  {
    std::vector<std::string> parts = absl::StrSplit(inventory.driver_version, '.');
    const char* names[] = {"major", "minor", "revision"};
    for (size_t i = 0; i < parts.size() && i < 3; ++i) {
      set(absl::StrCat("cuda.driver-version.", names[i]), parts[i]);
    }
    set("cuda.driver-version.full", inventory.driver_version);
    // The older keys GFD still writes (and node selectors still use).
    const char* old_names[] = {"major", "minor", "rev"};
    for (size_t i = 0; i < parts.size() && i < 3; ++i) {
      set(absl::StrCat("cuda.driver.", old_names[i]), parts[i]);
    }
    if (inventory.cuda_driver_version > 0) {
      const int major = inventory.cuda_driver_version / 1000;
      const int minor = (inventory.cuda_driver_version % 1000) / 10;
      set("cuda.runtime-version.major", absl::StrCat(major));
      set("cuda.runtime-version.minor", absl::StrCat(minor));
      set("cuda.runtime-version.full", absl::StrCat(major, ".", minor));
      set("cuda.runtime.major", absl::StrCat(major));
      set("cuda.runtime.minor", absl::StrCat(minor));
    }
  }

  set("gpu.family", FamilyOf(first.cuda_compute_major, first.cuda_compute_minor));
  set("gpu.compute.major", absl::StrCat(first.cuda_compute_major));
  set("gpu.compute.minor", absl::StrCat(first.cuda_compute_minor));
  set("gpu.machine", facts.machine.empty() ? std::string("unknown") : facts.machine);
  set("gpu.mode", GpuModeOf(facts.pci_class));
  // A vGPU guest's GPUs are virtual functions NVML reports as such.
  set("vgpu.present", Bool(std::any_of(inventory.gpus.begin(), inventory.gpus.end(),
                                       [](const nvml::Gpu& g) { return g.vgpu_guest; })));

  const bool mig_capable = std::any_of(inventory.gpus.begin(), inventory.gpus.end(),
                                       [](const nvml::Gpu& g) { return g.mig_capable; });
  set("mig.capable", Bool(mig_capable));
  set("mig.strategy", config::ToString(config.mig_strategy));
  set("mps.capable", Bool(sharing.mps));
  set("gpu.sharing-strategy", sharing.strategy);
  set("gpu.replicas", absl::StrCat(sharing.replicas));
  const std::string shared = sharing.strategy == "none" ? "" : "-SHARED";

  size_t unhealthy = 0;
  for (const nvml::Gpu& g : inventory.gpus) unhealthy += facts.unhealthy.count(g.uuid);
  set("gpu.unhealthy-count", absl::StrCat(unhealthy));

  // MIG devices by profile, in the order first seen.
  struct Profile {
    std::string name;
    int count = 0;
    const nvml::MigDevice* example = nullptr;
  };
  std::vector<Profile> profiles;
  int mig_devices = 0;
  for (const nvml::Gpu& g : inventory.gpus) {
    if (!g.mig_enabled) continue;
    for (const nvml::MigDevice& m : g.mig_devices) {
      ++mig_devices;
      auto it = std::find_if(profiles.begin(), profiles.end(),
                             [&](const Profile& p) { return p.name == m.profile; });
      if (it == profiles.end()) {
        profiles.push_back(Profile{m.profile, 0, &m});
        it = profiles.end() - 1;
      }
      ++it->count;
    }
  }

  if (config.mig_strategy == config::MigStrategy::kSingle && !profiles.empty()) {
    // Single: every MIG device is one nvidia.com/gpu; the node is described
    // by its (one) MIG profile.
    const nvml::MigDevice& m = *profiles.front().example;
    set("gpu.product", absl::StrCat(product, "-MIG-", m.profile, shared));
    set("gpu.count", absl::StrCat(mig_devices));
    set("gpu.memory", absl::StrCat(m.memory_bytes / kMiB));
    set("gpu.multiprocessors", absl::StrCat(m.multiprocessor_count));
    set("gpu.slices.gi", absl::StrCat(m.gpu_instance_slices));
    set("gpu.slices.ci", absl::StrCat(m.compute_instance_slices));
    return l;
  }

  set("gpu.product", product + shared);
  set("gpu.memory", absl::StrCat(first.memory_bytes / kMiB));
  if (config.mig_strategy == config::MigStrategy::kMixed) {
    // Mixed: full GPUs stay nvidia.com/gpu, MIG devices become
    // nvidia.com/mig-<profile>; gpu.count counts the full GPUs only.
    int full = 0;
    for (const nvml::Gpu& g : inventory.gpus) full += g.mig_enabled ? 0 : 1;
    set("gpu.count", absl::StrCat(full));
    for (const Profile& p : profiles) {
      const std::string key = absl::StrCat("mig-", p.name, ".");
      set(key + "count", absl::StrCat(p.count));
      set(key + "memory", absl::StrCat(p.example->memory_bytes / kMiB));
      set(key + "multiprocessors", absl::StrCat(p.example->multiprocessor_count));
      set(key + "slices.gi", absl::StrCat(p.example->gpu_instance_slices));
      set(key + "slices.ci", absl::StrCat(p.example->compute_instance_slices));
    }
    return l;
  }
  set("gpu.count", absl::StrCat(inventory.gpus.size()));
  return l;
}

std::string FeatureFile(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) absl::StrAppend(&out, k, "=", v, "\n");
  return out;
}

}  // namespace gdp::labels
