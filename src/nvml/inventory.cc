// DiscoverInventory and the pure helpers around it. Everything NVML says about
// the node is read here, once, into an immutable Inventory.
#include "src/nvml/inventory.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/common/log.h"

namespace gdp::nvml {
namespace {

constexpr uint64_t kMiB = 1024ull * 1024;
constexpr uint64_t kGiB = 1024ull * kMiB;
// Comfortably larger than every NVML string buffer (UUIDs 96, names 96,
// versions 80 in the pinned header).
constexpr unsigned kBufferSize = 256;

bool Unsupported(nvmlReturn_t r) {
  return r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_FUNCTION_NOT_FOUND;
}

std::string GpuSubject(unsigned index) { return absl::StrCat("GPU ", index); }

std::string FromBuffer(const char* buf, size_t size) {
  return std::string(buf, strnlen(buf, size));
}

// Optional fields: success says use the value; NOT_SUPPORTED and
// FUNCTION_NOT_FOUND quietly leave the default; any other error leaves the
// default too, with a warning, because an optional field is not worth losing
// the whole node for.
bool Optional(NvmlApi& api, nvmlReturn_t r, const char* call, const std::string& subject) {
  if (r == NVML_SUCCESS) return true;
  if (!Unsupported(r)) {
    log::Warn("optional NVML query failed; using the default",
              {{"error", NvmlStatus(api, r, call, subject).ToString()}});
  }
  return false;
}

const char* BrandName(nvmlBrandType_t brand) {
  switch (brand) {
    case NVML_BRAND_QUADRO:
      return "Quadro";
    case NVML_BRAND_TESLA:
      return "Tesla";
    case NVML_BRAND_NVS:
      return "NVS";
    case NVML_BRAND_GRID:
      return "GRID";
    case NVML_BRAND_GEFORCE:
      return "GeForce";
    case NVML_BRAND_TITAN:
      return "Titan";
    case NVML_BRAND_NVIDIA_VAPPS:
      return "NVIDIA Virtual Applications";
    case NVML_BRAND_NVIDIA_VPC:
      return "NVIDIA Virtual PC";
    case NVML_BRAND_NVIDIA_VCS:
      return "NVIDIA Virtual Compute Server";
    case NVML_BRAND_NVIDIA_VWS:
      return "NVIDIA RTX Virtual Workstation";
    case NVML_BRAND_NVIDIA_CLOUD_GAMING:
      return "NVIDIA Cloud Gaming";
    case NVML_BRAND_QUADRO_RTX:
      return "Quadro RTX";
    case NVML_BRAND_NVIDIA_RTX:
      return "NVIDIA RTX";
    case NVML_BRAND_NVIDIA:
      return "NVIDIA";
    case NVML_BRAND_GEFORCE_RTX:
      return "GeForce RTX";
    case NVML_BRAND_TITAN_RTX:
      return "Titan RTX";
    default:
      return "Unknown";
  }
}

const char* ArchitectureName(nvmlDeviceArchitecture_t arch) {
  switch (arch) {
    case NVML_DEVICE_ARCH_KEPLER:
      return "Kepler";
    case NVML_DEVICE_ARCH_MAXWELL:
      return "Maxwell";
    case NVML_DEVICE_ARCH_PASCAL:
      return "Pascal";
    case NVML_DEVICE_ARCH_VOLTA:
      return "Volta";
    case NVML_DEVICE_ARCH_TURING:
      return "Turing";
    case NVML_DEVICE_ARCH_AMPERE:
      return "Ampere";
    case NVML_DEVICE_ARCH_ADA:
      return "Ada Lovelace";
    case NVML_DEVICE_ARCH_HOPPER:
      return "Hopper";
    case NVML_DEVICE_ARCH_BLACKWELL:
      return "Blackwell";
    default:
      return "unknown";
  }
}

PathKind PathFromLevel(nvmlGpuTopologyLevel_t level) {
  switch (level) {
    case NVML_TOPOLOGY_INTERNAL:  // two GPUs on one board: as close as PCIe gets
    case NVML_TOPOLOGY_SINGLE:
      return PathKind::kPcieSwitch;
    case NVML_TOPOLOGY_MULTIPLE:
      return PathKind::kPcieMultiSwitch;
    case NVML_TOPOLOGY_HOSTBRIDGE:
      return PathKind::kHostBridge;
    case NVML_TOPOLOGY_NODE:
      return PathKind::kNumaNode;
    case NVML_TOPOLOGY_SYSTEM:
      return PathKind::kSystem;
  }
  return PathKind::kSystem;
}

bool ParseHex(absl::string_view text, size_t max_digits, unsigned* out) {
  if (text.empty() || text.size() > max_digits) return false;
  unsigned value = 0;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    value = value * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(c))
                                                   ? c - '0'
                                                   : std::tolower(c) - 'a' + 10);
  }
  *out = value;
  return true;
}

// The bus id of an nvmlPciInfo_t, whichever struct version filled it: v3/v2
// fill busId, v1 wrote into the bytes that are now busIdLegacy, and the
// numeric fields are always there.
std::string BusIdOf(const nvmlPciInfo_t& pci) {
  std::string id = NormalizePciBusId(FromBuffer(pci.busId, sizeof(pci.busId)));
  if (id.empty()) id = NormalizePciBusId(FromBuffer(pci.busIdLegacy, sizeof(pci.busIdLegacy)));
  if (id.empty()) id = absl::StrFormat("%04x:%02x:%02x.0", pci.domain, pci.bus, pci.device);
  return id;
}

int NumaFromSysfs(const FileSystem& fs, const std::string& sysfs_root, const std::string& bus_id) {
  if (sysfs_root.empty()) return -1;
  const std::string path = JoinRoot(sysfs_root, "/bus/pci/devices/" + bus_id + "/numa_node");
  auto text = fs.ReadFile(path);
  int node = -1;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &node) || node < 0) {
    return -1;
  }
  return node;
}

absl::Status DiscoverMig(NvmlApi& api, nvmlDevice_t handle, Gpu& gpu) {
  const std::string subject = GpuSubject(gpu.index);
  unsigned current = 0, pending = 0;
  if (!Optional(api, api.DeviceGetMigMode(handle, &current, &pending), "nvmlDeviceGetMigMode",
                subject)) {
    return absl::OkStatus();
  }
  gpu.mig_capable = true;
  gpu.mig_enabled = current == NVML_DEVICE_MIG_ENABLE;
  if (!gpu.mig_enabled) return absl::OkStatus();

  unsigned max_count = 0;
  if (nvmlReturn_t r = api.DeviceGetMaxMigDeviceCount(handle, &max_count); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetMaxMigDeviceCount", subject);
  }
  for (unsigned j = 0; j < max_count; ++j) {
    const std::string mig_subject = absl::StrCat(subject, " MIG device ", j);
    nvmlDevice_t mig = nullptr;
    nvmlReturn_t r = api.DeviceGetMigDeviceHandleByIndex(handle, j, &mig);
    if (r == NVML_ERROR_NOT_FOUND) continue;  // an empty slot
    if (r != NVML_SUCCESS)
      return NvmlStatus(api, r, "nvmlDeviceGetMigDeviceHandleByIndex", mig_subject);

    MigDevice m;
    m.index = j;
    char buf[kBufferSize] = {};
    if (r = api.DeviceGetUUID(mig, buf, kBufferSize); r != NVML_SUCCESS) {
      return NvmlStatus(api, r, "nvmlDeviceGetUUID", mig_subject);
    }
    m.uuid = FromBuffer(buf, kBufferSize);
    if (r = api.DeviceGetGpuInstanceId(mig, &m.gpu_instance_id); r != NVML_SUCCESS) {
      return NvmlStatus(api, r, "nvmlDeviceGetGpuInstanceId", mig_subject);
    }
    if (r = api.DeviceGetComputeInstanceId(mig, &m.compute_instance_id); r != NVML_SUCCESS) {
      return NvmlStatus(api, r, "nvmlDeviceGetComputeInstanceId", mig_subject);
    }
    nvmlDeviceAttributes_t attrs = {};
    if (r = api.DeviceGetAttributes(mig, &attrs); r != NVML_SUCCESS) {
      return NvmlStatus(api, r, "nvmlDeviceGetAttributes", mig_subject);
    }
    m.memory_bytes = attrs.memorySizeMB * kMiB;
    m.multiprocessor_count = attrs.multiprocessorCount;
    m.gpu_instance_slices = attrs.gpuInstanceSliceCount;
    m.compute_instance_slices = attrs.computeInstanceSliceCount;
    m.profile = MigProfileName(m.gpu_instance_slices, m.compute_instance_slices, attrs.memorySizeMB,
                               gpu.memory_bytes);
    gpu.mig_devices.push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::StatusOr<Gpu> DiscoverGpu(NvmlApi& api, const DiscoveryOptions& options, const FileSystem& fs,
                                unsigned index, nvmlDevice_t handle) {
  Gpu gpu;
  gpu.index = index;
  const std::string subject = GpuSubject(index);
  char buf[kBufferSize] = {};
  nvmlReturn_t r;

  // Required.
  if (r = api.DeviceGetMinorNumber(handle, &gpu.minor); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetMinorNumber", subject);
  }
  if (r = api.DeviceGetUUID(handle, buf, kBufferSize); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetUUID", subject);
  }
  gpu.uuid = FromBuffer(buf, kBufferSize);
  nvmlMemory_t memory = {};
  if (r = api.DeviceGetMemoryInfo(handle, &memory); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetMemoryInfo", subject);
  }
  gpu.memory_bytes = memory.total;
  nvmlPciInfo_t pci = {};
  if (r = api.DeviceGetPciInfo(handle, &pci); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetPciInfo", subject);
  }
  gpu.pci_bus_id = BusIdOf(pci);
  gpu.pci_device_id = pci.pciDeviceId;

  // Optional.
  std::memset(buf, 0, sizeof(buf));
  if (Optional(api, api.DeviceGetName(handle, buf, kBufferSize), "nvmlDeviceGetName", subject)) {
    gpu.name = FromBuffer(buf, kBufferSize);
  }
  nvmlBrandType_t brand = NVML_BRAND_UNKNOWN;
  gpu.brand =
      BrandName(Optional(api, api.DeviceGetBrand(handle, &brand), "nvmlDeviceGetBrand", subject)
                    ? brand
                    : NVML_BRAND_UNKNOWN);
  nvmlDeviceArchitecture_t arch = NVML_DEVICE_ARCH_UNKNOWN;
  gpu.architecture = ArchitectureName(
      Optional(api, api.DeviceGetArchitecture(handle, &arch), "nvmlDeviceGetArchitecture", subject)
          ? arch
          : NVML_DEVICE_ARCH_UNKNOWN);
  int cc_major = 0, cc_minor = 0;
  if (Optional(api, api.DeviceGetCudaComputeCapability(handle, &cc_major, &cc_minor),
               "nvmlDeviceGetCudaComputeCapability", subject)) {
    gpu.cuda_compute_major = cc_major;
    gpu.cuda_compute_minor = cc_minor;
  }
  unsigned node = 0;
  r = api.DeviceGetNumaNodeId(handle, &node);
  if (r == NVML_SUCCESS) {
    gpu.numa_node = static_cast<int>(node);
  } else {
    if (!Unsupported(r)) {
      log::Warn("NUMA node not available from NVML; reading sysfs",
                {{"error", NvmlStatus(api, r, "nvmlDeviceGetNumaNodeId", subject).ToString()}});
    }
    gpu.numa_node = NumaFromSysfs(fs, options.sysfs_root, gpu.pci_bus_id);
  }

  nvmlGpuVirtualizationMode_t mode = NVML_GPU_VIRTUALIZATION_MODE_NONE;
  gpu.vgpu_guest = Optional(api, api.DeviceGetVirtualizationMode(handle, &mode),
                            "nvmlDeviceGetVirtualizationMode", subject) &&
                   mode == NVML_GPU_VIRTUALIZATION_MODE_VGPU;

  if (absl::Status s = DiscoverMig(api, handle, gpu); !s.ok()) return s;
  return gpu;
}

// Counts, per GPU, its active NVLinks to each other GPU (direct) and to
// NVSwitches.
void CountNvLinks(NvmlApi& api, const std::vector<nvmlDevice_t>& handles,
                  const std::vector<Gpu>& gpus, std::vector<std::vector<unsigned>>& direct,
                  std::vector<unsigned>& to_switch) {
  const size_t n = gpus.size();
  for (size_t i = 0; i < n; ++i) {
    const std::string subject = GpuSubject(gpus[i].index);
    for (unsigned link = 0; link < NVML_NVLINK_MAX_LINKS; ++link) {
      nvmlEnableState_t state = NVML_FEATURE_DISABLED;
      nvmlReturn_t r = api.DeviceGetNvLinkState(handles[i], link, &state);
      if (r == NVML_ERROR_FUNCTION_NOT_FOUND) return;         // no NVLink API at all
      if (r == NVML_ERROR_NOT_SUPPORTED && link == 0) break;  // this GPU has no NVLink
      // Past the GPU's last link NVML answers INVALID_ARGUMENT: not an error.
      if (r != NVML_SUCCESS || state != NVML_FEATURE_ENABLED) continue;

      nvmlPciInfo_t remote = {};
      r = api.DeviceGetNvLinkRemotePciInfo(handles[i], link, &remote);
      if (r != NVML_SUCCESS) {
        log::Warn("active NVLink with unreadable remote end; ignoring it",
                  {{"link", link},
                   {"error",
                    NvmlStatus(api, r, "nvmlDeviceGetNvLinkRemotePciInfo", subject).ToString()}});
        continue;
      }
      const std::string remote_bus = BusIdOf(remote);
      auto peer = std::find_if(gpus.begin(), gpus.end(),
                               [&](const Gpu& g) { return g.pci_bus_id == remote_bus; });
      nvmlIntNvLinkDeviceType_t type = NVML_NVLINK_DEVICE_TYPE_UNKNOWN;
      r = api.DeviceGetNvLinkRemoteDeviceType(handles[i], link, &type);
      if (r != NVML_SUCCESS) {
        // Older NVML cannot say: a bus id that is none of our GPUs is a switch.
        type = peer != gpus.end() ? NVML_NVLINK_DEVICE_TYPE_GPU : NVML_NVLINK_DEVICE_TYPE_SWITCH;
      }
      if (type == NVML_NVLINK_DEVICE_TYPE_SWITCH) {
        ++to_switch[i];
      } else if (type == NVML_NVLINK_DEVICE_TYPE_GPU && peer != gpus.end()) {
        const size_t j = static_cast<size_t>(peer - gpus.begin());
        if (j != i) ++direct[i][j];
      }
    }
  }
}

absl::Status DiscoverLinks(NvmlApi& api, const std::vector<nvmlDevice_t>& handles, Inventory& inv) {
  const size_t n = inv.gpus.size();
  std::vector<std::vector<unsigned>> direct(n, std::vector<unsigned>(n, 0));
  std::vector<unsigned> to_switch(n, 0);
  CountNvLinks(api, handles, inv.gpus, direct, to_switch);

  inv.links.assign(n, std::vector<Link>(n));
  for (size_t i = 0; i < n; ++i) {
    inv.links[i][i] = Link{PathKind::kSelf, 0};
    for (size_t j = i + 1; j < n; ++j) {
      unsigned nvlinks = std::max(direct[i][j], direct[j][i]);
      // Through NVSwitches every GPU reaches every other with as many links as
      // the less connected of the two has.
      if (to_switch[i] > 0 && to_switch[j] > 0) nvlinks += std::min(to_switch[i], to_switch[j]);
      Link link{PathKind::kSystem, nvlinks};
      if (nvlinks > 0) {
        link.path = PathKind::kNvLink;
      } else {
        nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SYSTEM;
        if (Optional(
                api, api.DeviceGetTopologyCommonAncestor(handles[i], handles[j], &level),
                "nvmlDeviceGetTopologyCommonAncestor",
                absl::StrCat(GpuSubject(inv.gpus[i].index), ", ", GpuSubject(inv.gpus[j].index)))) {
          link.path = PathFromLevel(level);
        }
      }
      inv.links[i][j] = link;
      inv.links[j][i] = link;
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string NormalizePciBusId(const std::string& bus_id) {
  std::vector<absl::string_view> parts = absl::StrSplit(bus_id, ':');
  if (parts.size() == 2) parts.insert(parts.begin(), "0");
  if (parts.size() != 3) return "";
  std::vector<absl::string_view> dev_fn = absl::StrSplit(parts[2], '.');
  if (dev_fn.size() != 2) return "";
  unsigned domain = 0, bus = 0, device = 0, function = 0;
  if (!ParseHex(parts[0], 8, &domain) || !ParseHex(parts[1], 2, &bus) ||
      !ParseHex(dev_fn[0], 2, &device) || !ParseHex(dev_fn[1], 1, &function)) {
    return "";
  }
  if (domain > 0xffff) return absl::StrFormat("%08x:%02x:%02x.%x", domain, bus, device, function);
  return absl::StrFormat("%04x:%02x:%02x.%x", domain, bus, device, function);
}

std::string MigProfileName(unsigned gpu_instance_slices, unsigned compute_instance_slices,
                           uint64_t mig_memory_mib, uint64_t parent_memory_bytes) {
  uint64_t gb = 0;
  if (parent_memory_bytes == 0) {
    gb = static_cast<uint64_t>(std::llround(static_cast<double>(mig_memory_mib) / 1024.0));
  } else {
    constexpr double kEighths = 8;
    double fraction =
        static_cast<double>(mig_memory_mib * kMiB) / static_cast<double>(parent_memory_bytes);
    fraction = std::ceil(fraction * kEighths) / kEighths;
    // Whole GiB, rounded up (integer division on purpose).
    const uint64_t parent_gib = (parent_memory_bytes + kGiB - 1) / kGiB;
    const double parent_gb = static_cast<double>(parent_gib);
    gb = static_cast<uint64_t>(std::llround(fraction * parent_gb));
  }
  if (compute_instance_slices == gpu_instance_slices || compute_instance_slices == 0) {
    return absl::StrCat(gpu_instance_slices, "g.", gb, "gb");
  }
  return absl::StrCat(compute_instance_slices, "c.", gpu_instance_slices, "g.", gb, "gb");
}

const Gpu* Inventory::FindByUuid(const std::string& uuid) const {
  for (const Gpu& gpu : gpus) {
    if (gpu.uuid == uuid) return &gpu;
  }
  return nullptr;
}

std::string Inventory::CudaDriverVersionString() const {
  if (cuda_driver_version <= 0) return "unknown";
  return absl::StrCat(cuda_driver_version / 1000, ".", (cuda_driver_version % 1000) / 10);
}

bool ParseDriverVersion(const std::string& version, int* major, int* minor) {
  std::vector<absl::string_view> parts = absl::StrSplit(version, '.');
  if (parts.size() < 2) return false;
  for (absl::string_view p : parts) {
    if (p.empty() || !std::all_of(p.begin(), p.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c));
        })) {
      return false;
    }
  }
  return absl::SimpleAtoi(parts[0], major) && absl::SimpleAtoi(parts[1], minor);
}

absl::Status CheckMinimumVersions(const Inventory& inventory) {
  int major = 0, minor = 0;
  if (!ParseDriverVersion(inventory.driver_version, &major, &minor)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot parse the NVIDIA driver version \"", inventory.driver_version,
                     "\" reported by NVML; expected major.minor[.patch]"));
  }
  if (major < kMinimumDriverMajor) {
    return absl::FailedPreconditionError(
        absl::StrCat("driver ", inventory.driver_version, " is older than the minimum ",
                     kMinimumDriverMajor, "; upgrade the NVIDIA driver"));
  }
  if (inventory.cuda_driver_version <= 0) {
    return absl::FailedPreconditionError(
        "the CUDA driver version could not be read from NVML; the minimum is 10.0; upgrade the "
        "NVIDIA driver");
  }
  if (inventory.cuda_driver_version < kMinimumCudaDriverVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA driver version ", inventory.CudaDriverVersionString(),
                     " is older than the minimum 10.0; upgrade the NVIDIA driver"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Inventory>> DiscoverInventory(
    NvmlApi& api, const DiscoveryOptions& options) {
  const FileSystem& fs = options.fs != nullptr ? *options.fs : PosixFileSystem::Get();
  auto inv = std::make_shared<Inventory>();
  char buf[kBufferSize] = {};
  nvmlReturn_t r = api.SystemGetDriverVersion(buf, kBufferSize);
  if (r != NVML_SUCCESS) return NvmlStatus(api, r, "nvmlSystemGetDriverVersion");
  inv->driver_version = FromBuffer(buf, kBufferSize);
  std::memset(buf, 0, sizeof(buf));
  if (Optional(api, api.SystemGetNVMLVersion(buf, kBufferSize), "nvmlSystemGetNVMLVersion", "")) {
    inv->nvml_version = FromBuffer(buf, kBufferSize);
  }
  int cuda = 0;
  if (Optional(api, api.SystemGetCudaDriverVersion(&cuda), "nvmlSystemGetCudaDriverVersion", "")) {
    inv->cuda_driver_version = cuda;
  }

  unsigned count = 0;
  if (r = api.DeviceGetCount(&count); r != NVML_SUCCESS) {
    return NvmlStatus(api, r, "nvmlDeviceGetCount");
  }
  std::vector<nvmlDevice_t> handles;
  for (unsigned i = 0; i < count; ++i) {
    nvmlDevice_t handle = nullptr;
    if (r = api.DeviceGetHandleByIndex(i, &handle); r != NVML_SUCCESS) {
      return NvmlStatus(api, r, "nvmlDeviceGetHandleByIndex", GpuSubject(i));
    }
    absl::StatusOr<Gpu> gpu = DiscoverGpu(api, options, fs, i, handle);
    if (!gpu.ok()) return gpu.status();
    inv->gpus.push_back(*std::move(gpu));
    handles.push_back(handle);
  }
  if (absl::Status s = DiscoverLinks(api, handles, *inv); !s.ok()) return s;
  return std::shared_ptr<const Inventory>(std::move(inv));
}

std::vector<std::string> InventoryChanges(const Inventory& before, const Inventory& after) {
  std::vector<std::string> changes;
  if (before.driver_version != after.driver_version) {
    changes.push_back(absl::StrCat("driver ", before.driver_version, " -> ", after.driver_version));
  }
  for (const Gpu& g : after.gpus) {
    const Gpu* old = before.FindByUuid(g.uuid);
    if (old == nullptr) {
      changes.push_back(absl::StrCat("GPU added: ", g.uuid, " (", g.name, ", ", g.pci_bus_id,
                                     ", /dev/nvidia", g.minor, ")"));
      continue;
    }
    if (old->mig_enabled != g.mig_enabled) {
      changes.push_back(
          absl::StrCat("MIG ", g.mig_enabled ? "enabled" : "disabled", " on GPU ", g.uuid));
    }
    std::vector<std::string> was;
    std::vector<std::string> now;
    for (const MigDevice& m : old->mig_devices) was.push_back(m.uuid + " " + m.profile);
    for (const MigDevice& m : g.mig_devices) now.push_back(m.uuid + " " + m.profile);
    std::sort(was.begin(), was.end());
    std::sort(now.begin(), now.end());
    if (was != now) {
      std::vector<std::string> profiles;
      for (const MigDevice& m : g.mig_devices) profiles.push_back(m.profile);
      changes.push_back(absl::StrCat("MIG layout of GPU ", g.uuid, ": ", was.size(), " -> ",
                                     now.size(), " MIG devices [", absl::StrJoin(profiles, ","),
                                     "]"));
    }
  }
  for (const Gpu& g : before.gpus) {
    if (after.FindByUuid(g.uuid) == nullptr) {
      changes.push_back(absl::StrCat("GPU removed: ", g.uuid, " (", g.pci_bus_id, ")"));
    }
  }
  return changes;
}

}  // namespace gdp::nvml
