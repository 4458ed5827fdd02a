// One GPU shared through MPS, its limits, and what is known of its daemon.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace gdp::mps {

// One GPU shared through MPS and the limits every client of it gets.
struct GpuSpec {
  unsigned index = 0;                     // the host's NVML index, for messages
  std::string uuid;                       // "GPU-..."; names the daemon's directories
  uint64_t pinned_memory_limit_mib = 0;   // per client; 0: none set
  unsigned active_thread_percentage = 0;  // per client, 1..100; 0: none set
  bool operator==(const GpuSpec&) const = default;
};

// What is known of one GPU's daemon.
struct GpuHealth {
  GpuSpec gpu;
  bool healthy = false;  // running, limits set, answering
  absl::Status status;   // why not, when unhealthy
};
using HealthCallback = std::function<void(const GpuHealth&)>;

}  // namespace gdp::mps
