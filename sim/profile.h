// Profile: the description of a simulated machine (its GPUs, their MIG
// layout, interconnect and driver versions), parsed from YAML.
//
// Profiles are plain values: ParseProfile() builds one from YAML text,
// BuiltinProfile() from the YAML files under sim/profiles/ that are embedded
// into the library at build time, LoadProfile() from a built-in name or a file
// path. Every error names the source (file or built-in name) and the field.
//
// A profile's GPUs are kept in PCI bus order, the order NVML enumerates them
// in. A driver root whose layout was changed by gpusim (add, remove, mig)
// keeps the changed GPU list in a layout file: LayoutYaml() writes it and
// ApplyLayout() puts it over the profile it came from, so the models, NVLink
// switches and versions stay the profile's own.
//
// Thread-safety: all functions are reentrant; a Profile is immutable after
// construction and may be shared between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::sim {

// One MIG device (a GPU instance with a single compute instance over it).
struct MigDeviceSpec {
  std::string profile;  // e.g. "1g.10gb"
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
  unsigned slices = 0;  // GPU instance slice count
  unsigned multiprocessors = 0;
  uint64_t memory_mib = 0;
  std::string uuid;  // MIG-xxxxxxxx-...
};

// One MIG profile of a model (a GPU instance size).
struct MigProfile {
  unsigned slices = 0;
  unsigned multiprocessors = 0;
  uint64_t memory_mib = 0;
};

struct GpuSpec {
  // Model.
  std::string model;          // the profile's key for the model, e.g. "h100-sxm5-80gb"
  std::string name;           // "NVIDIA H100 80GB HBM3"
  std::string brand;          // "nvidia", "tesla", "geforce", "quadro"
  unsigned architecture = 0;  // NVML_DEVICE_ARCH_*
  int cc_major = 0;
  int cc_minor = 0;
  uint64_t memory_mib = 0;
  uint64_t reserved_mib = 0;  // set aside by the driver/firmware (nvmlMemory_v2_t.reserved)
  uint64_t bar1_mib = 0;
  uint32_t pci_device_id = 0;  // (device << 16) | vendor, e.g. 0x233010DE
  uint32_t pci_subsystem_id = 0;
  unsigned multiprocessors = 0;
  unsigned copy_engines = 0;
  unsigned decoders = 0;
  unsigned encoders = 0;
  unsigned jpeg = 0;
  unsigned ofa = 0;
  unsigned power_limit_w = 0;
  unsigned idle_power_w = 0;
  unsigned max_sm_clock_mhz = 0;
  unsigned max_mem_clock_mhz = 0;
  bool ecc = false;  // ECC supported (and enabled)
  bool mig_capable = false;
  unsigned max_mig_devices = 0;                    // 7 on A100/H100
  std::map<std::string, MigProfile> mig_profiles;  // by name, e.g. "1g.10gb"
  unsigned nvlinks = 0;                            // active NVLinks (0: none)
  unsigned nvlink_version = 0;

  // Placement in this machine.
  std::string uuid;  // GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  std::string serial;
  unsigned minor = 0;  // /dev/nvidia<minor>; profile key minor, default the position listed
  // The GPU's telemetry slot in the shared state (state.h): stays with the GPU
  // while others come and go. Profile key stateSlot, default the position listed.
  unsigned slot = 0;
  unsigned domain = 0, bus = 0, device = 0;  // PCI address
  unsigned numa_node = 0;
  unsigned compute_mode = 0;  // NVML_COMPUTEMODE_*; profile key computeMode (nvidia-smi's names)
  int pcie_switch = -1;       // GPUs with the same switch id share a PCIe switch
  std::vector<std::string> nvswitch_bus_ids;  // remote end of the links (round robin)

  bool mig_enabled = false;
  std::vector<MigDeviceSpec> mig_devices;
};

struct Profile {
  std::string name;
  std::string description;
  std::string source;           // "built-in dgx-h100" or a file path, for messages
  std::string driver_version;   // "550.54.15"
  int cuda_driver_version = 0;  // 12040
  std::vector<GpuSpec> gpus;

  // "12.550.54.15": the CUDA major version, then the driver version.
  std::string NvmlVersion() const;
};

// Checks MIG devices against what `gpu`'s model offers: 7 compute slices, the
// memory of its largest MIG profile, and its maximum number of MIG devices.
absl::Status CheckMigBudget(const GpuSpec& gpu, const std::vector<MigDeviceSpec>& devices);

// The most GPUs a profile (or a root over its life) may have.
inline constexpr unsigned kMaxProfileGpus = 64;
// Device minors 254 and 255 are nvidia-modeset and nvidiactl.
inline constexpr unsigned kMaxGpuMinor = 253;

// Parses a profile; `source` names the text in error messages.
absl::StatusOr<Profile> ParseProfile(std::string_view yaml, const std::string& source);

// The YAML text of a built-in profile or a profile file (as LoadProfile names it).
absl::StatusOr<std::string> ProfileText(const std::string& name_or_path);

// The profile `base_yaml` with its `gpus` list replaced by the one in
// `layout_yaml` (as LayoutYaml writes it; the list may be empty there).
absl::StatusOr<Profile> ApplyLayout(std::string_view base_yaml, std::string_view layout_yaml,
                                    const std::string& source);

// The GPU list of `profile` as a layout file: every GPU with its model key,
// placement, identity (UUID, serial, minor, state slot) and MIG devices with
// their UUIDs, so that ApplyLayout over the same base gives `profile` back.
std::string LayoutYaml(const Profile& profile);

// A fresh UUID-shaped identifier ("GPU", "MIG") from the system's random source.
std::string RandomUuid(const std::string& prefix);
// A fresh 13-digit board serial number.
std::string RandomSerial();

// The GPU's PCI address as the driver's 32-bit GPU id: (domain & 0xffff) << 16
// | bus << 8 | device (open-gpu-kernel-modules, gpuGenerate32BitId).
uint32_t PciGpuId(const GpuSpec& gpu);
// "0000:18:00.0".
std::string BusIdString(const GpuSpec& gpu);

// The names of the built-in profiles, sorted.
std::vector<std::string> BuiltinProfileNames();

// A built-in profile by name; NotFound lists the known names.
absl::StatusOr<Profile> BuiltinProfile(const std::string& name);

// A built-in name, or a path (anything containing '/' or ending in .yaml).
absl::StatusOr<Profile> LoadProfile(const std::string& name_or_path);

// Driver versions "550.54.15" must be numeric dot-separated; CUDA versions are
// 1000*major + 10*minor (12040 = 12.4).
absl::Status ValidateDriverVersion(const std::string& v);
absl::Status ValidateCudaVersion(int v);

}  // namespace gdp::sim
