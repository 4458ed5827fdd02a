// Resources: turns an Inventory and a Config into the resources the daemon
// advertises (today nvidia.com/gpu made of full GPUs), and implements the
// plugin's ResourceBackend for them: Allocate answers, topology-aware
// preferred allocation, and the device -> GPU mapping health needs.
//
// BuildResources() is a pure function of its inputs (the FileSystem is only
// read, once, to see which control device nodes exist). A Resource is
// immutable after Create() and safe to use from any number of threads; the
// daemon shares it as std::shared_ptr<const plugin::ResourceBackend>.
//
// The types are shaped for what issue #5 adds without reshaping them:
// a time-slicing replica is a DeviceEntry whose id is "<UUID>::<n>" and whose
// gpus, visible_id and device_nodes are its GPU's; a MIG device is an entry
// whose visible_id and cdi_name are the MIG UUID and whose device_nodes add
// the /dev/nvidia-caps nodes; MPS adds per-entry environment. Each would be
// one more builder function producing a ResourceSpec. docs/allocation.md
// explains the choices.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"
#include "src/nvml/inventory.h"
#include "src/plugin/backend.h"
#include "src/resources/topology.h"

namespace gdp::resources {

// A physical GPU a resource uses; its position in ResourceSpec::gpus is its
// position in the topology matrix.
struct GpuRef {
  std::string uuid;
  unsigned index = 0;  // NVML index
};

// One advertised device and everything Allocate needs for it, computed once.
struct DeviceEntry {
  std::string id;                    // the ID the kubelet sees
  std::optional<int64_t> numa_node;  // absent: no topology hint
  // Positions in ResourceSpec::gpus of the physical GPUs behind the device
  // (one for a full GPU, a replica or a MIG device). gpus[0] places the
  // device in the topology.
  std::vector<uint32_t> gpus;
  std::string visible_id;  // its entry in NVIDIA_VISIBLE_DEVICES / the volume-mount name
  std::string cdi_name;    // fully qualified CDI device name, e.g. nvidia.com/gpu=GPU-...
  std::vector<plugin::DeviceSpec> device_nodes;  // its own nodes, e.g. /dev/nvidia3
};

// Everything one resource is made of.
struct ResourceSpec {
  std::string name;  // e.g. nvidia.com/gpu
  std::vector<GpuRef> gpus;
  // gpus.size()^2 pair scores, row-major (see topology.h).
  std::vector<int32_t> gpu_scores;
  std::vector<DeviceEntry> devices;  // the order of ListAndWatch and of every answer
  // Control nodes (nvidiactl, nvidia-uvm, ...) that exist, given to every container.
  std::vector<plugin::DeviceSpec> control_nodes;
  std::vector<config::DeviceListStrategy> list_strategies = {config::DeviceListStrategy::kEnvvar};
  bool pass_device_specs = true;
  SelectOptions select_options;  // exact/greedy switch of preferred allocation
};

// Where the volume-mounts strategy puts one empty file per device; the
// NVIDIA container runtime reads the device list from the file names.
inline constexpr char kVolumeMountsRoot[] = "/var/run/nvidia-container-devices";
inline constexpr char kVisibleDevicesEnv[] = "NVIDIA_VISIBLE_DEVICES";
inline constexpr char kCdiAnnotationPrefix[] = "cdi.k8s.io/";
// The control nodes passed with every allocation when they exist.
inline constexpr const char* kControlDeviceNames[] = {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools",
                                                      "nvidia-modeset"};

// The CDI annotation key for a resource: cdi.k8s.io/gpu-device-plugin_<name
// with every character outside [A-Za-z0-9_.-] replaced by '_'>, shortened with
// a hash when longer than the CDI limit of 63 characters after the prefix.
// One key per resource, so several resources in one container do not clash.
std::string CdiAnnotationKey(const std::string& resource_name);

class Resource final : public plugin::ResourceBackend {
 public:
  // InvalidArgument when the spec is inconsistent (empty name, duplicate IDs,
  // a GPU position out of range, a score matrix of the wrong size).
  static absl::StatusOr<std::shared_ptr<const Resource>> Create(ResourceSpec spec);

  const std::string& ResourceName() const override { return spec_.name; }
  const std::vector<plugin::Device>& Devices() const override { return devices_; }
  absl::StatusOr<plugin::ContainerAllocation> Allocate(
      const std::vector<std::string>& device_ids) const override;
  absl::StatusOr<std::vector<std::string>> PreferredAllocation(
      const std::vector<std::string>& available, const std::vector<std::string>& must_include,
      int size) const override;
  std::vector<std::string> GpusBehind(const std::string& device_id) const override;

  const ResourceSpec& spec() const { return spec_; }
  const ScoreTable& scores() const { return scores_; }

 private:
  explicit Resource(ResourceSpec spec);
  // Maps IDs to device positions, sorted; InvalidArgument naming an unknown
  // or repeated ID. `what` names the list in messages.
  absl::Status Resolve(const std::vector<std::string>& ids, const char* what,
                       std::vector<uint32_t>* positions) const;
  absl::Status UnknownId(const std::string& id) const;

  ResourceSpec spec_;
  std::vector<plugin::Device> devices_;
  absl::flat_hash_map<std::string, uint32_t> position_;
  ScoreTable scores_;
  std::string known_ids_;  // for error messages, shortened
  std::string annotation_key_;
};

// The resources to advertise for this inventory and config. With migStrategy
// none every GPU is advertised as one device of config.resource_name, MIG
// mode or not (as NVIDIA's plugin does). With single or mixed, a node without
// MIG-enabled GPUs gets the same; MIG devices themselves are not supported
// yet (Unimplemented naming the GPU). No GPUs: no resources.
absl::StatusOr<std::vector<std::shared_ptr<const plugin::ResourceBackend>>> BuildResources(
    const nvml::Inventory& inventory, const config::Config& config, const FileSystem& fs);

}  // namespace gdp::resources
