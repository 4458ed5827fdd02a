// How a simulated driver library (libnvidia-ml, libcuda) finds its driver
// root: $GPUSIM_ROOT; else the root around it (a library at
// <root>/usr/lib/x86_64-linux-gnu/<name> has root <root>, the path as loaded
// or through the real path of its folder); else, in a container, which has
// only the files a CDI spec mounts, the root the nvidia-persistenced
// stand-in hands over on /run/nvidia-persistenced/socket
// ($GPUSIM_PERSISTENCED_SOCKET for tests), used as /proc/self/fd/<fd>.
//
// Compiled into each library (hidden); not thread-safe: each library calls it
// under its own lock.
#pragma once

#include <string>

namespace gdp::sim {

struct FoundRoot {
  std::string path;     // "" when none
  bool handed = false;  // from the stand-in's socket: the process is in a container
};

// `self`: any address inside the calling library (for dladdr).
FoundRoot FindDriverRoot(const void* self);

// Whether this process may use the GPU with device node /dev/nvidia<minor>:
// the node is there and opens as far as the driver (ENXIO: the device cgroup
// allows it, and no real driver is behind it), as a container's device nodes
// and cgroup decide for the real driver. $GPUSIM_DEV_DIR stands for /dev in tests.
bool UsableInThisProcess(unsigned minor);

}  // namespace gdp::sim
