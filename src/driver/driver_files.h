// What a container needs of the driver besides its device nodes, found under
// the driver root as NVIDIA's container toolkit finds it (`nvidia-ctk cdi
// generate`): the driver's user-space libraries of the running version, by
// the driver root's ld cache rather than a fixed list, each also under the
// names the ld cache gives it (libcuda.so.1 for libcuda.so.<version>); the
// GSP firmware of that version; the driver's binaries (nvidia-smi, the MPS
// and IMEX tools, ...); and the IPC sockets of its daemons that exist.
//
// Everything is found as a bind mount; a library's other names (those the
// toolkit makes with a `create-symlinks` hook) are mounts of the library file
// that say which file they name (Mount::link_to), so the spec builder can
// mount them, with no hook binary running on the host at container start, or
// hand them to NVIDIA's hook where the operator has one. The libraries keep
// the folder they have in the driver root (/usr/lib/x86_64-linux-gnu on
// Debian and Ubuntu, whose loader searches it without an ld cache entry).
//
// FindDriverFiles only reads (through the FileSystem seam); it is pure given
// the tree and thread-safe.
#pragma once

#include <string>
#include <vector>

#include "src/common/filesystem.h"

namespace gdp::driver {

struct Mount {
  std::string host_path;       // for the runtime: under the driver root on the host
  std::string container_path;  // where the container sees it
  // For another name of a library (libcuda.so.1): the container path of the
  // library file it names (/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15),
  // which is mounted too. Empty for everything else.
  std::string link_to;
  bool library = false;  // a library file or another name of one
  friend bool operator==(const Mount&, const Mount&) = default;
};

struct DriverFiles {
  std::vector<Mount> mounts;  // libraries, firmware, binaries, IPC sockets; no duplicates
  // What was looked for and not used, one line each for the log ("no ld cache
  // at ...: containers get the device nodes only").
  std::vector<std::string> notes;
  friend bool operator==(const DriverFiles&, const DriverFiles&) = default;
};

struct DriverRootPaths {
  std::string seen;  // where this process sees the driver root (flags.containerDriverRoot)
  std::string host;  // the driver root on the host (flags.nvidiaDriverRoot)
};

// The driver's binaries a container gets when present, and the folders searched for them.
inline const std::vector<std::string> kDriverBinaries = {"nvidia-smi",
                                                         "nvidia-debugdump",
                                                         "nvidia-persistenced",
                                                         "nvidia-cuda-mps-control",
                                                         "nvidia-cuda-mps-server",
                                                         "nvidia-imex",
                                                         "nvidia-imex-ctl"};
inline const std::vector<std::string> kBinaryFolders = {
    "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
// The sockets of the driver's daemons, under the driver root.
inline const std::vector<std::string> kDriverSockets = {"/run/nvidia-persistenced/socket",
                                                        "/run/nvidia-fabricmanager/socket"};

// The files of driver `version` (e.g. "550.54.15") under `root`.
DriverFiles FindDriverFiles(const FileSystem& fs, const DriverRootPaths& root,
                            const std::string& version);

}  // namespace gdp::driver
