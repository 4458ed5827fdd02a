// The driver root: the directory tree the simulator lives in, laid out like a
// real driver installation so that the daemon is pointed at it exactly as at
// a containerised driver (its driver-root setting).
//
//   <root>/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1   the simulator library
//   <root>/usr/bin/nvidia-cuda-mps-control               the MPS control stand-in
//                                                        (sim/mps_control_standin.cc)
//   <root>/etc/gpusim/config.yaml                       profile + version overrides
//   <root>/etc/gpusim/layout.yaml                       the GPU list once gpusim changed it
//   <root>/run/gpusim/state                             shared mutable state (state.h)
//   <root>/run/gpusim/driver.lock                       held shared by every NVML session
//   <root>/run/gpusim/layout.lock                       orders layout writers and readers
//   <root>/dev/nvidia0..N-1, nvidiactl, nvidia-modeset, nvidia-uvm,
//   nvidia-uvm-tools, nvidia-caps/nvidia-cap*           device nodes
//   <root>/proc/driver/nvidia-caps/mig-minors            MIG capability minors
//   <root>/sys/bus/pci/devices/<bus id>/numa_node        each GPU's NUMA node, as the
//                                                        host's sysfs says it
//
// The library finds its root from its own path (RootFromLibraryPath), or from
// $GPUSIM_ROOT when set. Functions here are reentrant and thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/profile.h"

namespace gdp::sim {

inline constexpr char kLibraryRelPath[] = "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1";
inline constexpr char kMpsControlRelPath[] = "usr/bin/nvidia-cuda-mps-control";
inline constexpr char kRootEnv[] = "GPUSIM_ROOT";
// Majors for the nodes whose major is dynamic on a real system (read from
// /proc/devices there). Documented in docs/simulator.md.
inline constexpr unsigned kNvidiaMajor = 195;
inline constexpr unsigned kUvmMajor = 510;
inline constexpr unsigned kCapsMajor = 511;

struct RootConfig {
  std::string profile;          // built-in name, or a path (relative to etc/gpusim/)
  std::string driver_version;   // empty: the profile's
  int cuda_driver_version = 0;  // 0: the profile's
  // The live GPU list (relative to etc/gpusim/), written by gpusim once the
  // layout changed; empty: the profile's own GPUs.
  std::string layout;
  // Device nodes are character devices (false: regular files, `root --no-mknod`).
  bool char_devices = true;
  // The driver delivers the events that announce node changes (system
  // bind/unbind events, nvmlEventMigConfigChange); false models an older
  // driver branch without them (`root --no-change-events`).
  bool change_events = true;
  // The driver branch the root stands for (`root --driver-branch`; FindDriverBranch): empty
  // for the simulator's newest behaviour.
  std::string driver_branch;
};

// A driver branch the simulator can stand for: a release of it (driver and CUDA versions)
// and what its NVML delivers beyond its functions (those come from the branch's own library,
// built from its nvml.h: sim/CMakeLists.txt). Sources: docs/simulator.md.
struct DriverBranch {
  const char* name;            // "r535"
  const char* driver_version;  // a release of the branch
  int cuda_driver_version;     // 1000*major + 10*minor
  // NVML_FI_DEV_GET_GPU_RECOVERY_ACTION and the event types R570 added (GPU recovery
  // action, GPU unavailable, SBE storm, DRAM retirement, poison).
  bool recovery_action;
};
// nullptr when `name` is no known branch.
const DriverBranch* FindDriverBranch(const std::string& name);
// "r535, r550, r570, r580"
std::string DriverBranchNames();

std::string ConfigPath(const std::string& root);
std::string StatePath(const std::string& root);
std::string LibraryPath(const std::string& root);
std::string LayoutPath(const std::string& root);  // etc/gpusim/layout.yaml
// The lock every NVML session holds shared (flock LOCK_SH) while it is open,
// as a real process holds the driver's device files open; `gpusim driver
// stop` needs it exclusively.
std::string DriverLockPath(const std::string& root);
// Held exclusively while gpusim rewrites the layout and bumps the state's
// layout generation, shared while the library reads them.
std::string LayoutLockPath(const std::string& root);
// Where `gpusim driver stop` keeps the library while the driver is away.
std::string AsideLibraryPath(const std::string& root);

// "/x/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1" -> "/x"; "/usr/lib/..." -> "/";
// empty when the library is not installed under a driver root.
std::string RootFromLibraryPath(const std::string& library_path);
// <root>/run/gpusim/contexts: what workloads hold (sim/contexts.h).
std::string ContextsPath(const std::string& root);

absl::StatusOr<RootConfig> ReadConfig(const std::string& root);
absl::Status WriteConfig(const std::string& root, const RootConfig& config);

// Reads the config and loads its profile with the version overrides applied.
absl::StatusOr<Profile> LoadRootProfile(const std::string& root);

// A device node to create: path relative to the root, major, minor.
struct DeviceNode {
  std::string path;
  unsigned major = 0;
  unsigned minor = 0;
};
// The nodes a real driver would create for `profile`, MIG capabilities included.
std::vector<DeviceNode> DeviceNodes(const Profile& profile);
// The lines of /proc/driver/nvidia-caps/mig-minors for the GPUs of `profile`.
std::string MigMinorsFile(const Profile& profile);

// Makes <root>/dev hold exactly the nodes of `profile` (removing those of GPUs
// and MIG devices that are gone, creating the new ones; character devices or
// regular files) and rewrites proc/driver/nvidia-caps/mig-minors.
absl::Status SyncDeviceNodes(const std::string& root, const Profile& profile, bool char_devices);
// Removes every /dev/nvidia* node and dev/nvidia-caps, as unloading the driver does.
void RemoveDeviceNodes(const std::string& root);

// Writes `profile`'s GPU list as the root's layout file (atomically) and points
// the config at it.
absl::Status WriteLayout(const std::string& root, const Profile& profile);

struct LayoutOptions {
  std::string library;  // the built libnvidia-ml.so.1 to copy into the root
  // The MPS control stand-in to install as usr/bin/nvidia-cuda-mps-control;
  // empty: none is installed.
  std::string mps_control;
  RootConfig config;
  // mknod needs CAP_MKNOD; without it the call fails unless this is set, in
  // which case empty regular files stand in for the nodes (and it is said so).
  bool allow_regular_files = false;
  // Device nodes of other drivers a GPU node may carry (DeviceExtraNames):
  // gdrcopy (/dev/gdrdrv), gds (/dev/nvidia-fs0, 1), mofed
  // (/dev/infiniband/uverbs0, rdma_cm), imex
  // (/dev/nvidia-caps-imex-channels/channel0).
  std::vector<std::string> extras;
};
// The names LayoutOptions::extras accepts.
const std::vector<std::string>& DeviceExtraNames();
struct LayoutResult {
  bool char_devices = false;  // real character devices were created
  size_t nodes = 0;
  std::string driver_version;  // the driver the root has
};
// Lays out `root` for the profile named by options.config: validates first, so
// that bad input changes nothing.
absl::StatusOr<LayoutResult> LayoutRoot(const std::string& root, const LayoutOptions& options);

}  // namespace gdp::sim
