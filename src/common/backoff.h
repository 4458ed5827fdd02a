// Exponential backoff with full jitter, for retries of things the environment
// takes away (kubelet, NVML, API server). Not thread-safe: one owner per retry loop.
#pragma once

#include <chrono>
#include <cstdint>

namespace gdp {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;
  Backoff(Duration initial, Duration max, uint64_t seed = 0x9e3779b97f4a7c15ULL);

  // The delay before the next attempt; grows by 2x up to max, jittered to [d/2, d].
  Duration Next();
  void Reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  Duration initial_;
  Duration max_;
  int attempt_ = 0;
  uint64_t state_;
};

}  // namespace gdp
