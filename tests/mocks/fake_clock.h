// A Clock that moves only when a test says so. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>

#include "src/common/clock.h"

namespace gdp {

class FakeClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(std::chrono::nanoseconds(now_ns_.load())); }
  void Advance(std::chrono::nanoseconds d) { now_ns_ += d.count(); }

 private:
  std::atomic<int64_t> now_ns_{1'000'000'000};
};

}  // namespace gdp
