#include "src/resources/resources.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "src/common/log.h"

namespace gdp::resources {
namespace {

constexpr size_t kKnownIdsInMessage = 8;
constexpr size_t kCdiAnnotationNameMax = 63;  // tags.cncf.io/container-device-interface
constexpr char kAnnotationPlugin[] = "gpu-device-plugin_";

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

bool Contains(const std::vector<config::DeviceListStrategy>& list, config::DeviceListStrategy s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Appends `value` unless an equal string is already there. Answers hold a
// handful of entries, so a scan beats a hash set here.
void AppendUnique(std::vector<const std::string*>* out, const std::string& value) {
  for (const std::string* s : *out) {
    if (*s == value) return;
  }
  out->push_back(&value);
}

std::string JoinPtrs(const std::vector<const std::string*>& items) {
  size_t length = items.size();
  for (const std::string* s : items) length += s->size();
  std::string out;
  out.reserve(length);
  for (const std::string* s : items) {
    if (!out.empty()) out += ',';
    out += *s;
  }
  return out;
}

// The YAML spelling; ours so this library needs only config.h, not the parser.
const char* MigStrategyName(config::MigStrategy s) {
  switch (s) {
    case config::MigStrategy::kNone:
      return "none";
    case config::MigStrategy::kSingle:
      return "single";
    case config::MigStrategy::kMixed:
      return "mixed";
  }
  return "unknown";
}

}  // namespace

std::string CdiAnnotationKey(const std::string& resource_name) {
  std::string name = kAnnotationPlugin;
  for (char c : resource_name) name += (IsAlnum(c) || c == '-' || c == '.' || c == '_') ? c : '_';
  if (name.size() > kCdiAnnotationNameMax || !IsAlnum(name.back())) {
    // Keep it unique per resource and valid: a hash suffix ends alphanumeric.
    const std::string hash = absl::StrFormat("%08x", Fnv1a(resource_name));
    name.resize(std::min(name.size(), kCdiAnnotationNameMax - hash.size() - 1));
    name += '-';
    name += hash;
  }
  return kCdiAnnotationPrefix + name;
}

Resource::Resource(ResourceSpec spec) : spec_(std::move(spec)) {
  devices_.reserve(spec_.devices.size());
  scores_.gpu_count = spec_.gpus.size();
  scores_.gpu_scores = spec_.gpu_scores;
  scores_.device_gpu.reserve(spec_.devices.size());
  std::vector<std::string> shown;
  for (uint32_t i = 0; i < spec_.devices.size(); ++i) {
    const DeviceEntry& d = spec_.devices[i];
    devices_.push_back(plugin::Device{d.id, true, d.numa_node});
    position_.emplace(d.id, i);
    scores_.device_gpu.push_back(d.gpus.front());
    if (shown.size() < kKnownIdsInMessage) shown.push_back(d.id);
  }
  known_ids_ = absl::StrJoin(shown, ", ");
  if (spec_.devices.size() > shown.size()) {
    absl::StrAppend(&known_ids_, ", ... (", spec_.devices.size() - shown.size(), " more)");
  }
  if (spec_.devices.empty()) known_ids_ = "(none)";
  annotation_key_ = CdiAnnotationKey(spec_.name);
}

absl::StatusOr<std::shared_ptr<const Resource>> Resource::Create(ResourceSpec spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("resource spec has an empty name");
  const size_t g = spec.gpus.size();
  if (spec.gpu_scores.size() != g * g) {
    return absl::InvalidArgumentError(
        absl::StrFormat("resource %s: score matrix has %d entries, want %d for %d GPUs", spec.name,
                        spec.gpu_scores.size(), g * g, g));
  }
  absl::flat_hash_map<std::string, size_t> seen;
  for (size_t i = 0; i < spec.devices.size(); ++i) {
    const DeviceEntry& d = spec.devices[i];
    if (d.id.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("resource %s: device %d has an empty ID", spec.name, i));
    }
    if (!seen.emplace(d.id, i).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "resource %s: device ID \"%s\" is used by devices %d and %d; IDs must be unique",
          spec.name, d.id, seen[d.id], i));
    }
    if (d.gpus.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("resource %s: device \"%s\" has no GPU behind it", spec.name, d.id));
    }
    for (uint32_t gpu : d.gpus) {
      if (gpu >= g) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "resource %s: device \"%s\" refers to GPU position %d of %d", spec.name, d.id, gpu, g));
      }
    }
  }
  return std::shared_ptr<const Resource>(new Resource(std::move(spec)));
}

absl::Status Resource::UnknownId(const std::string& id) const {
  return absl::InvalidArgumentError(absl::StrFormat(
      "unknown device ID \"%s\" for resource %s; known IDs: %s", id, spec_.name, known_ids_));
}

absl::Status Resource::Resolve(const std::vector<std::string>& ids, const char* what,
                               std::vector<uint32_t>* positions) const {
  positions->clear();
  positions->reserve(ids.size());
  for (const std::string& id : ids) {
    auto it = position_.find(id);
    if (it == position_.end()) return UnknownId(id);
    positions->push_back(it->second);
  }
  std::sort(positions->begin(), positions->end());
  auto dup = std::adjacent_find(positions->begin(), positions->end());
  if (dup != positions->end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("device ID \"%s\" appears more than once in the %s for resource %s",
                        spec_.devices[*dup].id, what, spec_.name));
  }
  return absl::OkStatus();
}

absl::StatusOr<plugin::ContainerAllocation> Resource::Allocate(
    const std::vector<std::string>& device_ids) const {
  if (device_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "empty allocation request for resource %s: a container request must name at least one "
        "device",
        spec_.name));
  }
  std::vector<uint32_t> positions;
  if (absl::Status s = Resolve(device_ids, "allocation request", &positions); !s.ok()) return s;

  // Devices in position order, so a container's first CUDA device is its
  // lowest-index GPU whatever order the kubelet listed them in.
  std::vector<const std::string*> visible;
  std::vector<const std::string*> cdi;
  visible.reserve(positions.size());
  cdi.reserve(positions.size());
  for (uint32_t p : positions) {
    AppendUnique(&visible, spec_.devices[p].visible_id);
    AppendUnique(&cdi, spec_.devices[p].cdi_name);
  }

  plugin::ContainerAllocation out;
  using config::DeviceListStrategy;
  const auto& strategies = spec_.list_strategies;
  if (Contains(strategies, DeviceListStrategy::kVolumeMounts)) {
    // As NVIDIA's plugin: the variable names the directory, and one /dev/null
    // mount per device names the device. It wins over envvar when both are set.
    out.envs.emplace(kVisibleDevicesEnv, kVolumeMountsRoot);
    out.mounts.reserve(visible.size());
    for (const std::string* v : visible) {
      out.mounts.push_back(
          plugin::Mount{absl::StrCat(kVolumeMountsRoot, "/", *v), "/dev/null", true});
    }
  } else if (Contains(strategies, DeviceListStrategy::kEnvvar)) {
    out.envs.emplace(kVisibleDevicesEnv, JoinPtrs(visible));
  }
  if (Contains(strategies, DeviceListStrategy::kCdiAnnotations)) {
    out.annotations.emplace(annotation_key_, JoinPtrs(cdi));
  }
  if (Contains(strategies, DeviceListStrategy::kCdiCri)) {
    out.cdi_devices.reserve(cdi.size());
    for (const std::string* c : cdi) out.cdi_devices.push_back(*c);
  }
  if (spec_.pass_device_specs) {
    out.devices.reserve(positions.size() + spec_.control_nodes.size());
    for (uint32_t p : positions) {
      for (const plugin::DeviceSpec& node : spec_.devices[p].device_nodes) {
        const bool have = std::any_of(out.devices.begin(), out.devices.end(), [&](const auto& d) {
          return d.container_path == node.container_path;
        });
        if (!have) out.devices.push_back(node);
      }
    }
    out.devices.insert(out.devices.end(), spec_.control_nodes.begin(), spec_.control_nodes.end());
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Resource::PreferredAllocation(
    const std::vector<std::string>& available, const std::vector<std::string>& must_include,
    int size) const {
  if (size <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "preferred allocation size must be positive, got %d (resource %s)", size, spec_.name));
  }
  std::vector<uint32_t> avail, must;
  if (absl::Status s = Resolve(available, "available devices", &avail); !s.ok()) return s;
  if (absl::Status s = Resolve(must_include, "must-include devices", &must); !s.ok()) return s;
  for (uint32_t m : must) {
    if (!std::binary_search(avail.begin(), avail.end(), m)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "must-include device \"%s\" is not among the %d available devices of resource %s",
          spec_.devices[m].id, avail.size(), spec_.name));
    }
  }
  const size_t want = static_cast<size_t>(size);
  if (want > avail.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("preferred allocation of %d devices of resource %s, but only %d are "
                        "available",
                        size, spec_.name, avail.size()));
  }
  if (must.size() > want) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "preferred allocation of %d devices of resource %s must include %d devices; the size "
        "must be at least the must-include count",
        size, spec_.name, must.size()));
  }
  const std::vector<uint32_t> chosen =
      SelectDevices(scores_, avail, must, want, spec_.select_options);
  std::vector<std::string> ids;
  ids.reserve(chosen.size());
  for (uint32_t p : chosen) ids.push_back(spec_.devices[p].id);
  return ids;
}

std::vector<std::string> Resource::GpusBehind(const std::string& device_id) const {
  auto it = position_.find(device_id);
  if (it == position_.end()) return {};
  std::vector<std::string> uuids;
  for (uint32_t g : spec_.devices[it->second].gpus) uuids.push_back(spec_.gpus[g].uuid);
  return uuids;
}

absl::StatusOr<std::vector<std::shared_ptr<const plugin::ResourceBackend>>> BuildResources(
    const nvml::Inventory& inventory, const config::Config& config, const FileSystem& fs) {
  if (config.resource_name.empty()) {
    return absl::InvalidArgumentError(
        "config: resource name is empty; set flags.plugin.resourceName");
  }
  const size_t n = inventory.gpus.size();
  if (!inventory.links.empty()) {
    bool square = inventory.links.size() == n;
    for (const auto& row : inventory.links) square = square && row.size() == n;
    if (!square) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "inventory: the links matrix is not %dx%d for %d GPUs; rediscover the inventory", n, n,
          n));
    }
  }
  absl::flat_hash_map<std::string, unsigned> uuids;
  for (const nvml::Gpu& gpu : inventory.gpus) {
    if (gpu.uuid.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("inventory: GPU %d has no UUID", gpu.index));
    }
    if (!uuids.emplace(gpu.uuid, gpu.index).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("inventory: GPUs %d and %d report the same UUID %s", uuids[gpu.uuid],
                          gpu.index, gpu.uuid));
    }
    if (gpu.mig_enabled && config.mig_strategy != config::MigStrategy::kNone) {
      return absl::UnimplementedError(absl::StrFormat(
          "GPU %d (%s) has MIG enabled, and migStrategy %s is not supported yet; set migStrategy "
          "none to advertise MIG-enabled GPUs as full GPUs, or disable MIG on the GPU",
          gpu.index, gpu.uuid, MigStrategyName(config.mig_strategy)));
    }
  }
  std::vector<std::shared_ptr<const plugin::ResourceBackend>> resources;
  if (n == 0) return resources;

  ResourceSpec spec;
  spec.name = config.resource_name;
  spec.list_strategies = config.device_list_strategy;
  spec.pass_device_specs = config.pass_device_specs;
  spec.gpu_scores = GpuScoresFromInventory(inventory);
  spec.gpus.reserve(n);
  for (const nvml::Gpu& gpu : inventory.gpus) spec.gpus.push_back(GpuRef{gpu.uuid, gpu.index});

  // Devices in NVML index order; GPU positions stay the inventory's.
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return inventory.gpus[a].index < inventory.gpus[b].index;
  });
  const std::string& seen_root = config.EffectiveDriverRoot();
  std::vector<std::string> missing;
  for (uint32_t pos : order) {
    const nvml::Gpu& gpu = inventory.gpus[pos];
    DeviceEntry d;
    d.id = config.device_id_strategy == config::DeviceIdStrategy::kUuid ? gpu.uuid
                                                                        : std::to_string(gpu.index);
    d.visible_id = d.id;
    d.cdi_name = "nvidia.com/gpu=" + gpu.uuid;
    if (gpu.numa_node >= 0) d.numa_node = gpu.numa_node;
    d.gpus = {pos};
    const std::string node = "/dev/nvidia" + std::to_string(gpu.minor);
    d.device_nodes.push_back(plugin::DeviceSpec{node, JoinRoot(config.driver_root, node), "rw"});
    if (!fs.Exists(JoinRoot(seen_root, node))) missing.push_back(JoinRoot(seen_root, node));
    if (gpu.mig_enabled) {
      log::Info("GPU has MIG enabled; migStrategy none advertises it as a full GPU",
                {{"gpu", gpu.uuid}, {"resource", spec.name}});
    }
    spec.devices.push_back(std::move(d));
  }
  if (!missing.empty()) {
    // One line, not one per GPU: usually the whole /dev is not mounted.
    log::Warn(
        "GPU device nodes not found where this process looks; containers given these GPUs "
        "may fail to start. Is the driver root's /dev mounted?",
        {{"resource", spec.name},
         {"driver_root", seen_root},
         {"missing", missing.size()},
         {"first", missing.front()}});
  }
  for (const char* name : kControlDeviceNames) {
    const std::string node = std::string("/dev/") + name;
    if (fs.Exists(JoinRoot(seen_root, node))) {
      spec.control_nodes.push_back(
          plugin::DeviceSpec{node, JoinRoot(config.driver_root, node), "rw"});
    }
  }
  absl::StatusOr<std::shared_ptr<const Resource>> resource = Resource::Create(std::move(spec));
  if (!resource.ok()) return resource.status();
  resources.push_back(*std::move(resource));
  return resources;
}

}  // namespace gdp::resources
