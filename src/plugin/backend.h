// The interface the plugin component owns and the resources component
// implements: what one advertised resource (e.g. nvidia.com/gpu) is made of
// and how its devices are handed out. The plugin knows the kubelet and nothing
// about NVIDIA; everything NVIDIA-specific hides behind this interface.
//
// Implementations are immutable after construction and thread-safe: gRPC calls
// Allocate and PreferredAllocation from many threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::plugin {

// One device as the kubelet sees it.
struct Device {
  std::string id;
  bool healthy = true;
  std::optional<int64_t> numa_node;  // absent: no topology hint
  bool operator==(const Device&) const = default;
};

struct Mount {
  std::string container_path;
  std::string host_path;
  bool read_only = true;
};

struct DeviceSpec {
  std::string container_path;
  std::string host_path;
  std::string permissions = "rw";
};

// What one container gets (ContainerAllocateResponse without the proto).
struct ContainerAllocation {
  std::map<std::string, std::string> envs;
  std::vector<Mount> mounts;
  std::vector<DeviceSpec> devices;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> cdi_devices;  // fully qualified CDI names
};

class ResourceBackend {
 public:
  virtual ~ResourceBackend() = default;

  // Extended resource name, e.g. "nvidia.com/gpu".
  virtual const std::string& ResourceName() const = 0;

  // The devices, all Healthy; the plugin overlays health it is told about.
  virtual const std::vector<Device>& Devices() const = 0;

  // What a container holding `device_ids` gets. InvalidArgument naming the ID
  // for an unknown or duplicated ID.
  virtual absl::StatusOr<ContainerAllocation> Allocate(
      const std::vector<std::string>& device_ids) const = 0;

  // Chooses `size` devices from `available`, including every `must_include`,
  // best interconnect first; deterministic for the same inputs.
  // InvalidArgument when the request cannot be met (unknown ID, size larger
  // than available, must_include not a subset of available, ...).
  virtual absl::StatusOr<std::vector<std::string>> PreferredAllocation(
      const std::vector<std::string>& available, const std::vector<std::string>& must_include,
      int size) const = 0;

  // The physical GPUs (by UUID) behind a device, so a GPU's health change
  // reaches every device it backs (replicas, MIG devices).
  virtual std::vector<std::string> GpusBehind(const std::string& device_id) const = 0;
};

}  // namespace gdp::plugin
