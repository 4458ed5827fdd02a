#include "src/resources/resources.h"

#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

}  // namespace

std::string CdiAnnotationKey(const std::string& resource_name, const std::string& prefix) {
  std::string name = kAnnotationPlugin;
  for (char c : resource_name) name += (IsAlnum(c) || c == '-' || c == '.' || c == '_') ? c : '_';
  if (name.size() > kCdiAnnotationNameMax || !IsAlnum(name.back())) {
    // Keep it unique per resource and valid: a hash suffix ends alphanumeric.
    const std::string hash = absl::StrFormat("%08x", Fnv1a(resource_name));
    name.resize(std::min(name.size(), kCdiAnnotationNameMax - hash.size() - 1));
    name += '-';
    name += hash;
  }
  return prefix + name;
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
  annotation_key_ = CdiAnnotationKey(spec_.name, spec_.cdi_annotation_prefix);
  devices_per_gpu_.assign(spec_.gpus.size(), 0);
  for (const DeviceEntry& d : spec_.devices) ++devices_per_gpu_[d.gpus.front()];
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
  if (spec_.fail_requests_greater_than_one && positions.size() > 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a container asked for %d devices of resource %s, which is shared by %s with "
        "failRequestsGreaterThanOne: ask for 1 (replicas of one GPU are not more GPU)",
        positions.size(), spec_.name, spec_.sharing_mode));
  }

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
  for (const auto& [name, value] : spec_.extra_envs) out.envs.emplace(name, value);
  if (spec_.devices[positions.front()].mps) {
    if (absl::Status s = AddMpsClient(positions, &out); !s.ok()) return s;
  }
  return out;
}

absl::Status Resource::AddMpsClient(const std::vector<uint32_t>& positions,
                                    plugin::ContainerAllocation* out) const {
  // One MPS server per GPU and one pipe directory per client: every replica
  // of a container must be on the same GPU. Its limits add up.
  const DeviceEntry& first = spec_.devices[positions.front()];
  uint64_t memory_mib = 0;
  unsigned threads = 0;
  for (uint32_t p : positions) {
    const DeviceEntry& d = spec_.devices[p];
    if (!d.mps || d.mps->pipe_directory != first.mps->pipe_directory) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "devices %s and %s of resource %s are on different GPUs; an MPS client uses one "
          "GPU's MPS server, so ask for replicas of one GPU (or use time-slicing)",
          first.id, d.id, spec_.name));
    }
    memory_mib += d.mps->memory_limit_mib;
    threads += d.mps->active_thread_percentage;
  }
  out->envs["CUDA_MPS_PIPE_DIRECTORY"] = kMpsPipeContainerPath;
  // Device 0 is the container's only CUDA device: the GPU of its replicas.
  out->envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = absl::StrCat("0=", memory_mib, "M");
  out->envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = std::to_string(std::min(threads, 100u));
  out->mounts.push_back(
      plugin::Mount{kMpsPipeContainerPath, first.mps->pipe_directory, /*read_only=*/false});
  out->mounts.push_back(
      plugin::Mount{kMpsShmContainerPath, first.mps->shm_directory, /*read_only=*/false});
  return absl::OkStatus();
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
      spec_.replica_policy ? SelectReplicas(avail, must, want)
                           : SelectDevices(scores_, avail, must, want, spec_.select_options);
  std::vector<std::string> ids;
  ids.reserve(chosen.size());
  for (uint32_t p : chosen) ids.push_back(spec_.devices[p].id);
  return ids;
}

std::vector<uint32_t> Resource::SelectReplicas(const std::vector<uint32_t>& available,
                                               const std::vector<uint32_t>& must,
                                               size_t size) const {
  // used[g]: devices of GPU g that are taken (not available) or chosen, the
  // load the policy looks at; free_on[g]: its available devices, lowest first.
  std::vector<uint32_t> used = devices_per_gpu_;
  std::vector<std::vector<uint32_t>> free_on(spec_.gpus.size());
  for (uint32_t p : available) {
    --used[spec_.devices[p].gpus.front()];
    free_on[spec_.devices[p].gpus.front()].push_back(p);
  }
  std::vector<uint32_t> chosen = must;
  for (uint32_t p : must) {
    const uint32_t g = spec_.devices[p].gpus.front();
    ++used[g];
    auto& list = free_on[g];
    list.erase(std::find(list.begin(), list.end(), p));
  }
  const bool packed = *spec_.replica_policy == config::AllocationPolicy::kPacked;
  std::vector<size_t> next(spec_.gpus.size(), 0);
  while (chosen.size() < size) {
    // distributed: the least-loaded GPU with a free replica; packed: the most
    // loaded. Ties go to the lowest GPU position, so answers are deterministic.
    std::optional<uint32_t> best;
    for (uint32_t g = 0; g < free_on.size(); ++g) {
      if (next[g] >= free_on[g].size()) continue;
      if (!best || (packed ? used[g] > used[*best] : used[g] < used[*best])) best = g;
    }
    if (!best) break;  // cannot happen: size <= available was checked
    chosen.push_back(free_on[*best][next[*best]++]);
    ++used[*best];
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

std::vector<std::string> Resource::GpusBehind(const std::string& device_id) const {
  auto it = position_.find(device_id);
  if (it == position_.end()) return {};
  std::vector<std::string> uuids;
  for (uint32_t g : spec_.devices[it->second].gpus) uuids.push_back(spec_.gpus[g].uuid);
  return uuids;
}

namespace {

// One device before sharing: a full GPU or a MIG device.
struct BaseDevice {
  DeviceEntry entry;
  std::vector<std::string> aliases;  // how a sharing entry may name it: index form, UUID
  uint64_t memory_bytes = 0;
  const nvml::Gpu* gpu = nullptr;  // the physical GPU
  bool mig = false;
};

struct Group {
  std::string name;
  std::vector<BaseDevice> devices;                 // not shared
  std::vector<DeviceEntry> replicas;               // shared ones, in order
  const config::SharedResource* shared = nullptr;  // the entry whose replicas these are
  bool mps = false;
  bool fail_requests_greater_than_one = false;
};

// "gpu0/gi1/access 12" -> {"gpu0/gi1/access", 12}.
absl::StatusOr<absl::flat_hash_map<std::string, unsigned>> ReadMigMinors(
    const FileSystem& fs, const std::string& seen_root) {
  std::vector<std::string> tried;
  for (const std::string& path :
       {JoinRoot(seen_root, kMigMinorsPath), std::string(kMigMinorsPath)}) {
    if (std::find(tried.begin(), tried.end(), path) != tried.end()) continue;
    tried.push_back(path);
    absl::StatusOr<std::string> text = fs.ReadFile(path);
    if (!text.ok()) continue;
    absl::flat_hash_map<std::string, unsigned> minors;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      unsigned minor = 0;
      if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &minor)) {
        minors.emplace(std::string(parts[0]), minor);
      }
    }
    return minors;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "MIG devices need their /dev/nvidia-caps nodes, listed by the driver in mig-minors, but "
      "none of ",
      absl::StrJoin(tried, ", "),
      " can be read; is the NVIDIA driver loaded with MIG support (nvidia-caps)?"));
}

absl::StatusOr<BaseDevice> MigDevice(const nvml::Gpu& gpu, const nvml::MigDevice& mig, uint32_t pos,
                                     const config::Config& config,
                                     const absl::flat_hash_map<std::string, unsigned>& minors) {
  BaseDevice b;
  b.gpu = &gpu;
  b.mig = true;
  b.memory_bytes = mig.memory_bytes;
  const std::string index_id = absl::StrCat(gpu.index, ":", mig.index);
  b.aliases = {index_id, mig.uuid};
  DeviceEntry& d = b.entry;
  // The kubelet sees the UUID whatever the strategy (as NVIDIA's plugin: its
  // checkpoint survives a swap); deviceIDStrategy picks what the container gets.
  d.id = mig.uuid;
  d.visible_id = config.device_id_strategy == config::DeviceIdStrategy::kUuid ? mig.uuid : index_id;
  d.cdi_name = "nvidia.com/gpu=" + mig.uuid;
  if (gpu.numa_node >= 0) d.numa_node = gpu.numa_node;
  d.gpus = {pos};
  const std::string parent = "/dev/nvidia" + std::to_string(gpu.minor);
  d.device_nodes.push_back(
      plugin::DeviceSpec{parent, JoinRoot(config.EffectiveDevRoot(), parent), "rw"});
  const std::string gi = absl::StrCat("gpu", gpu.minor, "/gi", mig.gpu_instance_id);
  for (const std::string& cap :
       {absl::StrCat(gi, "/access"), absl::StrCat(gi, "/ci", mig.compute_instance_id, "/access")}) {
    auto it = minors.find(cap);
    if (it == minors.end()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "MIG device %s (GPU %d, GPU instance %d, compute instance %d): mig-minors has no %s; "
          "the driver's MIG layout changed since discovery, restart the plugin",
          mig.uuid, gpu.index, mig.gpu_instance_id, mig.compute_instance_id, cap));
    }
    const std::string node = absl::StrCat("/dev/nvidia-caps/nvidia-cap", it->second);
    d.device_nodes.push_back(
        plugin::DeviceSpec{node, JoinRoot(config.EffectiveDevRoot(), node), "rw"});
  }
  return b;
}

BaseDevice FullGpu(const nvml::Gpu& gpu, uint32_t pos, const config::Config& config) {
  BaseDevice b;
  b.gpu = &gpu;
  b.memory_bytes = gpu.memory_bytes;
  b.aliases = {std::to_string(gpu.index), gpu.uuid};
  DeviceEntry& d = b.entry;
  d.id = gpu.uuid;  // the kubelet's ID; see MigDevice
  d.visible_id = config.device_id_strategy == config::DeviceIdStrategy::kUuid
                     ? gpu.uuid
                     : std::to_string(gpu.index);
  d.cdi_name = "nvidia.com/gpu=" + gpu.uuid;
  if (gpu.numa_node >= 0) d.numa_node = gpu.numa_node;
  d.gpus = {pos};
  const std::string node = "/dev/nvidia" + std::to_string(gpu.minor);
  d.device_nodes.push_back(
      plugin::DeviceSpec{node, JoinRoot(config.EffectiveDevRoot(), node), "rw"});
  return b;
}

Group* FindGroup(std::vector<Group>& groups, const std::string& name) {
  for (Group& g : groups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

// Splits `group`'s devices into those `sel` selects (returned) and the rest
// (left in the group). NotFound naming an index or UUID it does not have.
absl::StatusOr<std::vector<BaseDevice>> Select(Group& group, const config::DeviceSelector& sel,
                                               const std::string& where) {
  std::vector<BaseDevice> chosen, rest;
  if (sel.all) {
    chosen.swap(group.devices);
    return chosen;
  }
  std::vector<bool> take(group.devices.size(), false);
  if (sel.ids.empty()) {
    if (sel.count > group.devices.size()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s: devices: %d, but resource %s has %d devices on this node", where,
                          sel.count, group.name, group.devices.size()));
    }
    for (size_t i = 0; i < sel.count; ++i) take[i] = true;
  }
  for (const std::string& id : sel.ids) {
    bool found = false;
    for (size_t i = 0; i < group.devices.size(); ++i) {
      const auto& aliases = group.devices[i].aliases;
      if (group.devices[i].entry.id == id ||
          std::find(aliases.begin(), aliases.end(), id) != aliases.end()) {
        take[i] = found = true;
      }
    }
    if (!found) {
      std::vector<std::string> known;
      for (const BaseDevice& b : group.devices) known.push_back(b.aliases.front());
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: device \"%s\" is not a device of resource %s on this node (devices by index: %s; "
          "UUIDs work too)",
          where, id, group.name, absl::StrJoin(known, ", ")));
    }
  }
  for (size_t i = 0; i < group.devices.size(); ++i) {
    (take[i] ? chosen : rest).push_back(std::move(group.devices[i]));
  }
  group.devices.swap(rest);
  return chosen;
}

// Replaces the devices `entry` selects by their replicas in the group its
// replicas are advertised under.
absl::Status Share(std::vector<Group>& groups, const config::SharedResource& entry, bool mps,
                   bool rename_by_default, bool fail_greater_than_one, const std::string& where,
                   const config::Config& config) {
  Group* base = FindGroup(groups, entry.name);
  if (base == nullptr || base->devices.empty()) {
    log::Info("sharing entry names a resource this node does not have; skipped",
              {{"entry", where}, {"resource", entry.name}});
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<BaseDevice>> selected = Select(*base, entry.devices, where);
  if (!selected.ok()) return selected.status();
  std::string target = entry.rename;
  if (target.empty()) target = rename_by_default ? entry.name + ".shared" : entry.name;
  Group* out = FindGroup(groups, target);
  if (out == nullptr) {
    groups.push_back(Group{target, {}, {}, nullptr, false, false});
    out = &groups.back();
  }
  out->shared = &entry;
  out->mps = mps;
  out->fail_requests_greater_than_one = fail_greater_than_one;
  for (const BaseDevice& b : *selected) {
    if (mps && b.mig) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: %s is a MIG device; MPS cannot share MIG devices (MIG already partitions the GPU): "
          "share it with time-slicing, or use migStrategy none",
          where, b.entry.id));
    }
    std::optional<DeviceEntry::MpsClient> client;
    if (mps) {
      const bool pre_volta = b.gpu->cuda_compute_major * 10 + b.gpu->cuda_compute_minor < 75;
      if (pre_volta && entry.replicas > 16) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s: %d replicas of GPU %d (%s, compute capability %d.%d), but its MPS server takes at "
            "most 16 clients before compute capability 7.5",
            where, entry.replicas, b.gpu->index, b.gpu->name, b.gpu->cuda_compute_major,
            b.gpu->cuda_compute_minor));
      }
      const uint64_t mib = 1ULL << 20;
      const uint64_t limit = entry.memory_limit_bytes != 0 ? entry.memory_limit_bytes
                                                           : b.memory_bytes / entry.replicas;
      if (limit * entry.replicas > b.memory_bytes) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s: %d replicas of %d MiB need %d MiB, more than the %d MiB of GPU %d (%s); lower "
            "memoryLimit or replicas",
            where, entry.replicas, limit / mib, limit * entry.replicas / mib, b.memory_bytes / mib,
            b.gpu->index, b.gpu->uuid));
      }
      client = DeviceEntry::MpsClient{
          absl::StrCat(config.sharing.mps.root, "/", b.gpu->uuid, "/pipe"),
          absl::StrCat(config.sharing.mps.root, "/shm"), limit / mib,
          entry.active_thread_percentage != 0 ? entry.active_thread_percentage
                                              : std::max(1u, 100 / entry.replicas)};
    }
    for (unsigned r = 0; r < entry.replicas; ++r) {
      DeviceEntry d = b.entry;
      d.id = absl::StrCat(b.entry.id, "::", r);
      d.cdi_name = absl::StrCat(b.entry.cdi_name, "::", r);
      d.replica = r;
      d.mps = client;
      out->replicas.push_back(std::move(d));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// The device extras a config asks for (GDRCopy, GPUDirect Storage, MOFED,
// IMEX channels): their nodes join the control nodes every container gets,
// and the variables that tell NVIDIA's container runtime the same. A node
// asked for that is missing fails the build, naming it and the fix.
absl::Status AddDeviceExtras(const config::Config& config, const FileSystem& fs,
                             const std::string& seen_root, std::vector<plugin::DeviceSpec>* nodes,
                             std::map<std::string, std::string>* envs) {
  auto add = [&](const std::string& node) {
    nodes->push_back(plugin::DeviceSpec{node, JoinRoot(config.EffectiveDevRoot(), node), "rw"});
  };
  auto missing = [&](const char* field, const std::string& what, const std::string& fix) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, " is on, but ", JoinRoot(seen_root, what), " does not exist; ", fix,
                     ", or turn ", field, " off"));
  };
  // The entries of a /dev folder whose names start with `prefix`, sorted.
  auto list = [&](const std::string& dir, const std::string& prefix) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<std::string>> names = fs.ListDir(JoinRoot(seen_root, dir));
    if (!names.ok()) return out;
    for (const std::string& n : *names) {
      if (absl::StartsWith(n, prefix)) out.push_back(absl::StrCat(dir, "/", n));
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  if (config.gdrcopy_enabled) {
    if (!fs.Exists(JoinRoot(seen_root, "/dev/gdrdrv"))) {
      return missing("flags.gdrcopyEnabled", "/dev/gdrdrv",
                     "load GDRCopy's gdrdrv kernel module (its insmod.sh creates the node)");
    }
    add("/dev/gdrdrv");
    (*envs)["NVIDIA_GDRCOPY"] = "enabled";
  }
  if (config.gds_enabled) {
    const std::vector<std::string> fs_nodes = list("/dev", "nvidia-fs");
    if (fs_nodes.empty()) {
      return missing("flags.gdsEnabled", "/dev/nvidia-fs*",
                     "load GPUDirect Storage's nvidia-fs kernel module");
    }
    for (const std::string& n : fs_nodes) add(n);
    (*envs)["NVIDIA_GDS"] = "enabled";
  }
  if (config.mofed_enabled) {
    const std::vector<std::string> ib = list("/dev/infiniband", "");
    if (ib.empty()) {
      return missing("flags.mofedEnabled", "/dev/infiniband/*",
                     "install MOFED (or load the RDMA drivers) so the InfiniBand devices exist");
    }
    for (const std::string& n : ib) add(n);
    (*envs)["NVIDIA_MOFED"] = "enabled";
  }
  std::vector<std::string> channels;
  for (unsigned id : config.imex_channel_ids) {
    const std::string node = absl::StrCat("/dev/nvidia-caps-imex-channels/channel", id);
    if (!fs.Exists(JoinRoot(seen_root, node))) {
      if (!config.imex_required) continue;  // as NVIDIA's plugin: skipped unless required
      return absl::FailedPreconditionError(
          absl::StrCat("imex.required is on, but ", JoinRoot(seen_root, node),
                       " does not exist; create the channel (nvidia-modprobe -i ", id,
                       ", or the IMEX daemon's setup), or drop it from imex.channelIDs"));
    }
    add(node);
    channels.push_back(absl::StrCat(id));
  }
  if (!channels.empty()) (*envs)["NVIDIA_IMEX_CHANNELS"] = absl::StrJoin(channels, ",");
  return absl::OkStatus();
}

}  // namespace

std::string GpuResourceName(const config::Config& config, const nvml::Gpu& gpu) {
  if (config.use_resource_patterns) {
    for (const config::ResourcePattern& p : config.gpu_patterns) {
      if (::fnmatch(p.pattern.c_str(), gpu.name.c_str(), 0) == 0) return p.name;
    }
  }
  return config.resource_name;
}

std::string MigResourceName(const config::Config& config, const nvml::MigDevice& mig) {
  if (config.use_resource_patterns) {
    for (const config::ResourcePattern& p : config.mig_patterns) {
      if (::fnmatch(p.pattern.c_str(), mig.profile.c_str(), 0) == 0) return p.name;
    }
  }
  return "nvidia.com/mig-" + mig.profile;
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
  const bool use_mig = config.mig_strategy != config::MigStrategy::kNone;
  bool any_mig_devices = false;
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
    any_mig_devices = any_mig_devices || (gpu.mig_enabled && !gpu.mig_devices.empty());
  }
  std::vector<std::shared_ptr<const plugin::ResourceBackend>> resources;
  if (n == 0) return resources;

  const std::string& seen_root = config.EffectiveDriverRoot();
  absl::flat_hash_map<std::string, unsigned> minors;
  if (use_mig && any_mig_devices) {
    absl::StatusOr<absl::flat_hash_map<std::string, unsigned>> m = ReadMigMinors(fs, seen_root);
    if (!m.ok()) return m.status();
    minors = *std::move(m);
  }

  // Devices in NVML index order; GPU positions stay the inventory's.
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return inventory.gpus[a].index < inventory.gpus[b].index;
  });
  std::vector<Group> groups;
  auto group = [&](const std::string& name) -> Group& {
    if (Group* g = FindGroup(groups, name)) return *g;
    groups.push_back(Group{name, {}, {}, nullptr, false, false});
    return groups.back();
  };
  std::vector<std::string> missing;
  std::vector<std::string> mig_gpus, full_gpus;  // for the single strategy's check
  std::set<std::string> single_profiles;
  for (uint32_t pos : order) {
    const nvml::Gpu& gpu = inventory.gpus[pos];
    const std::string node = "/dev/nvidia" + std::to_string(gpu.minor);
    if (!fs.Exists(JoinRoot(seen_root, node))) missing.push_back(JoinRoot(seen_root, node));
    if (!(use_mig && gpu.mig_enabled)) {
      if (gpu.mig_enabled) {
        log::Info("GPU has MIG enabled; migStrategy none advertises it as a full GPU",
                  {{"gpu", gpu.uuid}, {"resource", config.resource_name}});
      }
      full_gpus.push_back(absl::StrCat(gpu.index));
      group(GpuResourceName(config, gpu)).devices.push_back(FullGpu(gpu, pos, config));
      continue;
    }
    mig_gpus.push_back(absl::StrCat(gpu.index));
    if (gpu.mig_devices.empty()) {
      log::Warn(
          "GPU has MIG enabled but no MIG devices; nothing of it is advertised. Create "
          "GPU and compute instances (nvidia-smi mig -cgi ... -C)",
          {{"gpu", gpu.uuid}, {"index", gpu.index}});
    }
    for (const nvml::MigDevice& mig : gpu.mig_devices) {
      absl::StatusOr<BaseDevice> b = MigDevice(gpu, mig, pos, config, minors);
      if (!b.ok()) return b.status();
      const bool mixed = config.mig_strategy == config::MigStrategy::kMixed;
      if (!mixed) single_profiles.insert(absl::StrCat(mig.profile, " (GPU ", gpu.index, ")"));
      const std::string name = mixed ? MigResourceName(config, mig) : GpuResourceName(config, gpu);
      group(name).devices.push_back(*std::move(b));
    }
  }
  if (config.mig_strategy == config::MigStrategy::kSingle) {
    std::set<std::string> profiles;
    for (const std::string& p : single_profiles) profiles.insert(p.substr(0, p.find(' ')));
    if (profiles.size() > 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migStrategy single needs every MIG device on the node to have the same profile, but "
          "they differ: ",
          absl::StrJoin(single_profiles, ", "),
          "; use migStrategy mixed (one resource per profile) or repartition the GPUs"));
    }
    if (!mig_gpus.empty() && !full_gpus.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("migStrategy single needs MIG enabled on every GPU or on none, but GPUs ",
                       absl::StrJoin(mig_gpus, ", "), " have MIG enabled and GPUs ",
                       absl::StrJoin(full_gpus, ", "),
                       " do not; use migStrategy mixed, or enable MIG on all of them"));
    }
  }
  if (!missing.empty()) {
    // One line, not one per GPU: usually the whole /dev is not mounted.
    log::Warn(
        "GPU device nodes not found where this process looks; containers given these GPUs "
        "may fail to start. Is the driver root's /dev mounted?",
        {{"resource", config.resource_name},
         {"driver_root", seen_root},
         {"missing", missing.size()},
         {"first", missing.front()}});
  }

  // Sharing: groups are reached by index, as Share may append to `groups`.
  groups.reserve(groups.size() + config.sharing.time_slicing.resources.size() +
                 config.sharing.mps.resources.size());
  const auto& ts = config.sharing.time_slicing;
  for (size_t i = 0; i < ts.resources.size(); ++i) {
    if (absl::Status s = Share(groups, ts.resources[i], false, ts.rename_by_default,
                               ts.fail_requests_greater_than_one,
                               absl::StrCat("sharing.timeSlicing.resources[", i, "]"), config);
        !s.ok()) {
      return s;
    }
  }
  const auto& mps = config.sharing.mps;
  for (size_t i = 0; i < mps.resources.size(); ++i) {
    if (absl::Status s = Share(groups, mps.resources[i], true, mps.rename_by_default,
                               mps.fail_requests_greater_than_one,
                               absl::StrCat("sharing.mps.resources[", i, "]"), config);
        !s.ok()) {
      return s;
    }
  }

  std::vector<plugin::DeviceSpec> control_nodes;
  for (const char* name : kControlDeviceNames) {
    const std::string node = std::string("/dev/") + name;
    if (fs.Exists(JoinRoot(seen_root, node))) {
      control_nodes.push_back(
          plugin::DeviceSpec{node, JoinRoot(config.EffectiveDevRoot(), node), "rw"});
    }
  }
  std::map<std::string, std::string> extra_envs;
  if (absl::Status s = AddDeviceExtras(config, fs, seen_root, &control_nodes, &extra_envs);
      !s.ok()) {
    return s;
  }
  const std::vector<int32_t> scores = GpuScoresFromInventory(inventory);
  for (Group& g : groups) {
    if (g.devices.empty() && g.replicas.empty()) continue;
    ResourceSpec spec;
    spec.name = g.name;
    spec.list_strategies = config.device_list_strategy;
    spec.pass_device_specs = config.pass_device_specs;
    spec.cdi_annotation_prefix = config.cdi_annotation_prefix;
    spec.extra_envs = extra_envs;
    spec.gpu_scores = scores;
    spec.gpus.reserve(n);
    for (const nvml::Gpu& gpu : inventory.gpus) spec.gpus.push_back(GpuRef{gpu.uuid, gpu.index});
    for (BaseDevice& b : g.devices) spec.devices.push_back(std::move(b.entry));
    for (DeviceEntry& d : g.replicas) spec.devices.push_back(std::move(d));
    spec.control_nodes = control_nodes;
    if (g.shared != nullptr) {
      spec.replica_policy = config.sharing.allocation_policy;
      spec.fail_requests_greater_than_one = g.fail_requests_greater_than_one;
      spec.sharing_mode = g.mps ? "MPS" : "time-slicing";
    }
    absl::StatusOr<std::shared_ptr<const Resource>> resource = Resource::Create(std::move(spec));
    if (!resource.ok()) return resource.status();
    resources.push_back(*std::move(resource));
  }
  return resources;
}

std::vector<MpsGpu> MpsGpus(
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources) {
  std::vector<MpsGpu> out;
  for (const auto& backend : resources) {
    const Resource* r = AsResource(*backend);
    if (r == nullptr) continue;
    const ResourceSpec& spec = r->spec();
    for (const DeviceEntry& d : spec.devices) {
      if (!d.mps) continue;
      const GpuRef& gpu = spec.gpus[d.gpus.front()];
      auto it =
          std::find_if(out.begin(), out.end(), [&](const MpsGpu& m) { return m.uuid == gpu.uuid; });
      if (it != out.end()) {
        ++it->replicas;
        continue;
      }
      std::string log_dir = d.mps->pipe_directory;
      log_dir.replace(log_dir.rfind("/pipe"), 5, "/log");
      out.push_back(MpsGpu{gpu.uuid, gpu.index, spec.name, 1, d.mps->memory_limit_mib,
                           d.mps->active_thread_percentage, d.mps->pipe_directory, log_dir});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const MpsGpu& a, const MpsGpu& b) { return a.index < b.index; });
  return out;
}

}  // namespace gdp::resources
