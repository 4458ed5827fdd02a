// The driver's user space in a simulated root, laid out as a real driver root
// has it, so what looks for it there (the plugin's CDI spec, NVIDIA's
// `nvidia-ctk cdi generate`) finds it the real way:
//   usr/lib/x86_64-linux-gnu/libnvidia-ml.so.<version>   the simulator library
//   usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1           -> libnvidia-ml.so.<version>
//   etc/ld.so.cache                                      names it (glibc's format)
//   lib/firmware/nvidia/<version>/gsp_*.bin              stand-ins for GSP firmware
//   usr/lib/x86_64-linux-gnu/libcuda.so.<version>        the simulated libcuda (sim/cuda_sim.cc),
//     with libcuda.so.1 -> it and libcuda.so -> libcuda.so.1
//   usr/lib/x86_64-linux-gnu/libgpusim_*.so.<version>    the libraries' dependencies
//   usr/bin/nvidia-smi, nvidia-persistenced             stand-ins (sim/nvidia_smi.cc,
//                                                        sim/persistenced_standin.cc)
// Only gpusim calls these (never the simulator library); not thread-safe
// (gpusim holds the layout lock).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace gdp::sim {

// Lays the user space of driver `version` in `root`, replacing another
// version's: the library (found at its soname path, as a file or a link) is
// renamed to its versioned name and linked from the soname, the ld cache and
// the firmware folder are rewritten; each of `binaries` is installed in
// usr/bin under its own name, and `libcuda` (when not empty) as the
// simulated libcuda. Every file is replaced atomically.
absl::Status LayDriverUserSpace(const std::string& root, const std::string& version,
                                const std::vector<std::string>& binaries,
                                const std::string& libcuda);

}  // namespace gdp::sim
