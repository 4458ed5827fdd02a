// CDI: the Container Device Interface spec of every advertised device, so a
// CDI-aware runtime (containerd 2.x) can give a container its GPUs from the
// device names Allocate returns (deviceListStrategy cdi-cri or
// cdi-annotations), with no NVIDIA runtime hook.
//
// One spec file of kind nvidia.com/gpu holds every device of every resource:
// full GPUs (GPU-<uuid>), MIG devices (MIG-<uuid>) and replicas (<name>::<n>),
// each with its device nodes; the control nodes (nvidiactl, nvidia-uvm, ...)
// and the driver's user space (src/driver/driver_files.h: its libraries,
// firmware, binaries and sockets, as read-only bind mounts) are the spec's
// common edits. Paths are host paths (the driver root on the host), since the
// runtime reads the spec on the host.
//
// The libraries' other names (libcuda.so.1) are mounts of the library file,
// and no hook runs, unless a hook binary is given (NVIDIA's nvidia-cdi-hook or
// nvidia-ctk, flags.plugin.nvidiaCTKPath): then its create-symlinks hook makes
// them links and its update-ldcache hook adds the libraries' folders to the
// container's ld cache, as NVIDIA's specs do. Every spec sets
// NVIDIA_VISIBLE_DEVICES=void (and the matching volume-mounts entry), so that
// an NVIDIA runtime in the path adds nothing to what the spec gave: an image
// whose environment says NVIDIA_VISIBLE_DEVICES=all gets no other GPU.
//
// BuildSpec is pure. SpecWriter writes through the FileSystem seam with an
// atomic rename, so the runtime never reads half a spec, and removes specs of
// ours that are stale; it is not thread-safe (the daemon's thread owns it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/common/filesystem.h"
#include "src/driver/driver_files.h"
#include "src/plugin/backend.h"

namespace gdp::cdi {

inline constexpr char kKind[] = "nvidia.com/gpu";
// The spec version: the oldest whose features the spec uses.
inline constexpr char kCdiVersion[] = "0.5.0";
// Our spec file in the CDI directory; other files there are never touched.
inline constexpr char kSpecFile[] = "gpu-device-plugin.nvidia.com-gpu.json";
// Files named with this prefix are ours: a spec file not named kSpecFile is a
// leftover (of an older version) and is removed.
inline constexpr char kOwnedPrefix[] = "gpu-device-plugin.";

// The options of the driver's mounts, as NVIDIA's container toolkit gives them.
inline const std::vector<std::string> kMountOptions = {"ro", "nosuid", "nodev", "rbind",
                                                       "rprivate"};

// How the spec gives a container the driver's files.
struct DriverEdits {
  driver::DriverFiles files;
  // Host path of nvidia-cdi-hook or nvidia-ctk for the links and the ld
  // cache; empty: mounts only, no hook.
  std::string hook_path;
};

// The spec, as JSON text (stable: devices in resource and device order, no
// timestamps), for the devices of `resources` (built by resources::BuildResources),
// every one of them with the driver's files.
std::string BuildSpec(const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources,
                      const DriverEdits& driver = {});

// `configured` (flags.plugin.nvidiaCTKPath) when this process sees a file
// there, else "" with a note saying why the spec mounts the links instead (a
// spec naming a hook that is missing on the host would fail every container).
std::string UsableHook(const FileSystem& fs, const std::string& configured,
                       std::vector<std::string>* notes);

class SpecWriter {
 public:
  // `dir`: the CDI directory as this process sees it (e.g. /var/run/cdi).
  SpecWriter(const FileSystem& fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

  // Writes the spec for `resources` unless the file already holds exactly it,
  // then removes stale files of ours. Errors name the path and say what to check.
  absl::Status Write(const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources,
                     const DriverEdits& driver = {});
  // Removes every spec file of ours (CDI switched off); NotFound is not an error.
  absl::Status RemoveAll();

  const std::string& dir() const { return dir_; }

 private:
  absl::Status RemoveOwned(bool keep_current);

  const FileSystem& fs_;
  std::string dir_;
};

}  // namespace gdp::cdi
