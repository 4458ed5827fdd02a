// Resources: turns an Inventory and a Config into the resources the daemon
// advertises (full GPUs, MIG devices under the single or mixed strategy,
// time-slicing and MPS replicas), and implements the plugin's ResourceBackend
// for them: Allocate answers, topology-aware (or, for replicas, policy-driven)
// preferred allocation, and the device -> GPU mapping health needs.
// docs/sharing.md says what each sharing mode isolates.
//
// BuildResources() is a pure function of its inputs (the FileSystem is only
// read, once, to see which control device nodes exist). A Resource is
// immutable after Create() and safe to use from any number of threads; the
// daemon shares it as std::shared_ptr<const plugin::ResourceBackend>.
//
// A time-slicing replica is a DeviceEntry whose id is "<ID>::<n>" and whose
// gpus, visible_id and device_nodes are its device's; a MIG device is an
// entry whose visible_id and cdi_name name the MIG device and whose
// device_nodes add its /dev/nvidia-caps nodes; an MPS replica also carries
// its client limits. docs/allocation.md explains the choices.
#pragma once

#include <cstdint>
#include <map>
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
  // Replicas only: which replica of its device this is (0-based).
  std::optional<unsigned> replica;
  // MPS replicas only: what the client gets.
  struct MpsClient {
    std::string pipe_directory;  // host path of its GPU's MPS pipe directory
    std::string shm_directory;   // host path shared as /dev/shm by the MPS server and clients
    uint64_t memory_limit_mib = 0;
    unsigned active_thread_percentage = 100;
    bool operator==(const MpsClient&) const = default;
  };
  std::optional<MpsClient> mps;
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
  // Set for a resource of replicas: how GetPreferredAllocation spreads a
  // request over the physical GPUs (instead of by interconnect).
  std::optional<config::AllocationPolicy> replica_policy;
  // A container may hold at most one device of this resource.
  bool fail_requests_greater_than_one = false;
  std::string sharing_mode;                           // "time-slicing", "mps" or "" (for messages)
  std::string cdi_annotation_prefix = "cdi.k8s.io/";  // flags.plugin.cdiAnnotationPrefix
  // Variables every container gets (the device extras': NVIDIA_GDRCOPY, ...).
  std::map<std::string, std::string> extra_envs;
};

// Where the volume-mounts strategy puts one empty file per device; the
// NVIDIA container runtime reads the device list from the file names.
inline constexpr char kVolumeMountsRoot[] = "/var/run/nvidia-container-devices";
inline constexpr char kVisibleDevicesEnv[] = "NVIDIA_VISIBLE_DEVICES";
inline constexpr char kCdiAnnotationPrefix[] = "cdi.k8s.io/";
// The control nodes passed with every allocation when they exist.
inline constexpr const char* kControlDeviceNames[] = {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools",
                                                      "nvidia-modeset"};
// What an MPS client container gets: its GPU's pipe directory at this path
// (CUDA_MPS_PIPE_DIRECTORY) and the MPS shared memory as /dev/shm.
inline constexpr char kMpsPipeContainerPath[] = "/run/nvidia-mps";
inline constexpr char kMpsShmContainerPath[] = "/dev/shm";
// Where the driver lists the /dev/nvidia-caps minors of MIG instances, under
// the driver root as this process sees it, else at this path itself.
inline constexpr char kMigMinorsPath[] = "/proc/driver/nvidia-caps/mig-minors";

// The CDI annotation key for a resource: <prefix>gpu-device-plugin_<name with
// every character outside [A-Za-z0-9_.-] replaced by '_'>, shortened with a
// hash when longer than the CDI limit of 63 characters after the prefix. One
// key per resource, so several resources in one container do not clash.
std::string CdiAnnotationKey(const std::string& resource_name,
                             const std::string& prefix = kCdiAnnotationPrefix);

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
  // The replica policy's choice (spec_.replica_policy set).
  std::vector<uint32_t> SelectReplicas(const std::vector<uint32_t>& available,
                                       const std::vector<uint32_t>& must, size_t size) const;
  absl::Status AddMpsClient(const std::vector<uint32_t>& positions,
                            plugin::ContainerAllocation* out) const;

  ResourceSpec spec_;
  std::vector<uint32_t> devices_per_gpu_;  // by GPU position: devices placed on it
  std::vector<plugin::Device> devices_;
  absl::flat_hash_map<std::string, uint32_t> position_;
  ScoreTable scores_;
  std::string known_ids_;  // for error messages, shortened
  std::string annotation_key_;
};

// The resources to advertise for this inventory and config:
// - migStrategy none: every GPU is one device of config.resource_name, MIG
//   mode or not (as NVIDIA's plugin does).
// - mixed: each MIG device of a MIG-enabled GPU is a device of
//   nvidia.com/mig-<profile>; other GPUs are config.resource_name.
// - single: MIG devices are config.resource_name; a node whose MIG-enabled
//   GPUs hold different profiles, or that mixes MIG-enabled and full GPUs, is
//   refused (FailedPrecondition naming the GPUs and suggesting mixed).
// Then sharing: each sharing entry replaces the devices it selects from its
// resource by their replicas, advertised under the entry's name (or rename).
// A sharing entry naming a resource this node does not have is skipped with
// a log line (one config can serve different nodes); one naming a device the
// resource lacks is an error. No GPUs: no resources.
// The resource a full GPU is advertised under (and a MIG device under
// migStrategy single): the first resources.gpus pattern its product name
// matches when flags.plugin.useResourcePatterns is on, else resourceName.
std::string GpuResourceName(const config::Config& config, const nvml::Gpu& gpu);
// A MIG device's under migStrategy mixed: the first resources.mig pattern its
// profile matches, else nvidia.com/mig-<profile>.
std::string MigResourceName(const config::Config& config, const nvml::MigDevice& mig);

absl::StatusOr<std::vector<std::shared_ptr<const plugin::ResourceBackend>>> BuildResources(
    const nvml::Inventory& inventory, const config::Config& config, const FileSystem& fs);

// The concrete Resource behind a backend BuildResources made; nullptr for
// another implementation.
inline const Resource* AsResource(const plugin::ResourceBackend& backend) {
  return dynamic_cast<const Resource*>(&backend);
}

// One GPU that MPS shares: what its control daemon must enforce.
struct MpsGpu {
  std::string uuid;
  unsigned index = 0;
  std::string resource;  // the advertised resource its replicas belong to
  unsigned replicas = 0;
  uint64_t memory_limit_mib = 0;  // per client
  unsigned active_thread_percentage = 100;
  std::string pipe_directory;  // host paths
  std::string log_directory;
  bool operator==(const MpsGpu&) const = default;
};

// The GPUs shared by MPS among `resources`, in index order.
std::vector<MpsGpu> MpsGpus(
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources);

}  // namespace gdp::resources
