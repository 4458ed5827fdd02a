// The time seam: components that wait or measure take a Clock so tests can
// drive time by hand (tests/mocks/fake_clock.h). Implementations are thread-safe.
#pragma once

#include <chrono>

namespace gdp {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The process's monotonic clock.
class RealClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  // A process-wide instance; never destroyed.
  static Clock& Get();
};

}  // namespace gdp
