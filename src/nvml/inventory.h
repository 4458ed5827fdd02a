// Inventory: an immutable snapshot of what NVML reports about the node's GPUs.
// Built once by DiscoverInventory() (and again only when the daemon
// re-discovers); shared as std::shared_ptr<const Inventory>, so it is safe to
// read from any thread. Nothing outside src/nvml calls NVML for discovery.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/nvml/nvml_api.h"

namespace gdp::nvml {

// One MIG device (a compute instance inside a GPU instance).
struct MigDevice {
  unsigned index = 0;  // index under its parent (nvmlDeviceGetMigDeviceHandleByIndex)
  std::string uuid;    // "MIG-<uuid>"
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
  std::string profile;  // e.g. "1g.10gb", derived from the attributes
  uint64_t memory_bytes = 0;
  unsigned multiprocessor_count = 0;
  unsigned gpu_instance_slices = 0;  // the "1g" of 1g.10gb
  unsigned compute_instance_slices = 0;

  bool operator==(const MigDevice&) const = default;
};

struct Gpu {
  unsigned index = 0;        // NVML index
  unsigned minor = 0;        // /dev/nvidia<minor>
  std::string uuid;          // "GPU-<uuid>"
  std::string name;          // product name, e.g. "NVIDIA H100 80GB HBM3"
  std::string brand;         // e.g. "Tesla", "GeForce", "NVIDIA"
  std::string architecture;  // e.g. "Hopper"; "unknown" when NVML does not say
  int cuda_compute_major = 0;
  int cuda_compute_minor = 0;
  uint64_t memory_bytes = 0;   // total framebuffer
  std::string pci_bus_id;      // canonical lower-case "0000:1b:00.0"
  uint32_t pci_device_id = 0;  // (device << 16) | vendor, as NVML reports
  int numa_node = -1;          // -1: unknown / not NUMA
  bool mig_enabled = false;    // current MIG mode
  bool mig_capable = false;    // nvmlDeviceGetMigMode answered: the GPU supports MIG
  bool vgpu_guest = false;     // a vGPU of a virtual machine (NVML_GPU_VIRTUALIZATION_MODE_VGPU)
  std::vector<MigDevice> mig_devices;

  bool operator==(const Gpu&) const = default;
};

// How two GPUs are connected, best first. The PCIe levels follow
// nvmlGpuTopologyLevel_t.
enum class PathKind {
  kSelf = 0,
  kNvLink,           // at least one active NVLink between them (direct or through NVSwitch)
  kPcieSwitch,       // NVML_TOPOLOGY_SINGLE (one PCIe switch)
  kPcieMultiSwitch,  // NVML_TOPOLOGY_MULTIPLE
  kHostBridge,       // NVML_TOPOLOGY_HOSTBRIDGE
  kNumaNode,         // NVML_TOPOLOGY_NODE (same NUMA node, across host bridges)
  kSystem,           // NVML_TOPOLOGY_SYSTEM (across NUMA nodes) or unknown
};

struct Link {
  PathKind path = PathKind::kSystem;
  unsigned nvlinks = 0;  // number of active NVLinks between the pair

  bool operator==(const Link&) const = default;
};

struct Inventory {
  std::string driver_version;   // e.g. "550.54.15"
  std::string nvml_version;     // e.g. "12.550.54.15"
  int cuda_driver_version = 0;  // e.g. 12040 for 12.4
  std::vector<Gpu> gpus;        // sorted by index
  // links[i][j]: the connection between gpus[i] and gpus[j] (symmetric).
  std::vector<std::vector<Link>> links;

  const Gpu* FindByUuid(const std::string& uuid) const;
  // "12.4" for 12040; "unknown" when NVML did not say (0).
  std::string CudaDriverVersionString() const;

  bool operator==(const Inventory&) const = default;
};

struct DiscoveryOptions {
  // Read a GPU's NUMA node from <sysfs_root>/bus/pci/devices/<bus id>/numa_node
  // when nvmlDeviceGetNumaNodeId is missing. Empty: skip the fallback.
  std::string sysfs_root = "/sys";
  // Where sysfs_root is read from; nullptr means PosixFileSystem::Get().
  // Not owned; must outlive the DiscoverInventory() call.
  const FileSystem* fs = nullptr;
};

// Queries NVML (already initialised) for everything above. A failure on a
// required field (count, handle, UUID, minor, memory, PCI) is an error naming
// the GPU and the call; optional fields that NVML does not support are left
// at their defaults.
absl::StatusOr<std::shared_ptr<const Inventory>> DiscoverInventory(NvmlApi& api,
                                                                   const DiscoveryOptions& options);

// What differs between two inventories, one line each, for the log and node
// events: GPUs added and removed (by UUID), MIG mode and MIG devices per GPU,
// the driver version. Empty when they describe the same node (indices may
// differ: NVML renumbers after a change, and devices are keyed by UUID).
std::vector<std::string> InventoryChanges(const Inventory& before, const Inventory& after);

// "major.minor" of a driver version string; false when it does not parse.
bool ParseDriverVersion(const std::string& version, int* major, int* minor);

// The oldest driver and CUDA driver API the plugin supports.
inline constexpr int kMinimumDriverMajor = 450;
inline constexpr int kMinimumCudaDriverVersion = 10000;  // 10.0

// FailedPrecondition, saying what to upgrade, when the inventory's driver is
// older than kMinimumDriverMajor or its CUDA driver version older than
// kMinimumCudaDriverVersion (or either cannot be read).
absl::Status CheckMinimumVersions(const Inventory& inventory);

// The name NVIDIA gives a MIG profile ("1g.10gb", "1c.3g.40gb"), from the
// device's attributes and its parent's total memory: the MIG memory as a
// fraction of the parent's, rounded up to eighths, times the parent's memory
// in whole GiB (rounded up), rounded to the nearest integer. Same rule as
// NVIDIA's go-nvlib, so resource names match NVIDIA's plugin. The +me/+gfx
// attribute suffixes come from profile info, not device attributes, and are
// not derived here.
std::string MigProfileName(unsigned gpu_instance_slices, unsigned compute_instance_slices,
                           uint64_t mig_memory_mib, uint64_t parent_memory_bytes);

// Canonical PCI address: lower-case, 4-digit domain when it fits
// ("00000000:1B:00.0" -> "0000:1b:00.0"). Returns "" when `bus_id` is not of
// the form [domain:]bus:device.function.
std::string NormalizePciBusId(const std::string& bus_id);

}  // namespace gdp::nvml
