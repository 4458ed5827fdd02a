// The simulated MPS server: started by the control daemon stand-in for the
// first CUDA client that asks (a forked child of the daemon, as the real
// daemon starts nvidia-cuda-mps-server), it enforces the limits the daemon
// had when it started on every client it serves: an allocation that would
// take a client past its pinned device memory limit is refused (the client's
// libcuda returns CUDA_ERROR_OUT_OF_MEMORY), and a client's active thread
// percentage is the lower of the daemon's default and the client's own.
// Protocol: sim/mps_protocol.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace gdp::sim::mps {

struct ServerSettings {
  // The devices the server serves, in order (UUIDs from the daemon's
  // CUDA_VISIBLE_DEVICES); empty: every device the client sees.
  std::vector<std::string> devices;
  std::map<int, uint64_t> pinned_limits;  // device -> bytes, per client
  double active_thread_percentage = 100;  // per client
  uid_t uid = 0;                          // the user it serves
  FILE* log = nullptr;                    // server.log, owned by the server
};

// Appends "[YYYY-MM-DD HH:MM:SS.mmm <role> <pid>] <message>" to `log`, the
// format of the real control.log and server.log, and flushes it.
void LogLine(FILE* log, const char* role, const std::string& message);

// Serves clients on `listen_fd` until the process is signalled; never returns.
[[noreturn]] void Serve(int listen_fd, ServerSettings settings);

}  // namespace gdp::sim::mps
