// Profile: the description of a simulated machine (its GPUs, their MIG
// layout, interconnect and driver versions), parsed from YAML.
//
// Profiles are plain values: ParseProfile() builds one from YAML text,
// BuiltinProfile() from the YAML files under sim/profiles/ that are embedded
// into the library at build time, LoadProfile() from a built-in name or a file
// path. Every error names the source (file or built-in name) and the field.
//
// Thread-safety: all functions are reentrant; a Profile is immutable after
// construction and may be shared between threads.
#pragma once

#include <cstdint>
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

struct GpuSpec {
  // Model.
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
  unsigned max_mig_devices = 0;  // 7 on A100/H100
  unsigned nvlinks = 0;          // active NVLinks (0: none)
  unsigned nvlink_version = 0;

  // Placement in this machine.
  std::string uuid;  // GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  std::string serial;
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

// Parses a profile; `source` names the text in error messages.
absl::StatusOr<Profile> ParseProfile(std::string_view yaml, const std::string& source);

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
