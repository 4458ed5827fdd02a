#include "src/common/backoff.h"

#include <algorithm>

namespace gdp {

Backoff::Backoff(Duration initial, Duration max, uint64_t seed)
    : initial_(initial), max_(std::max(initial, max)), state_(seed | 1) {}

Backoff::Duration Backoff::Next() {
  // Cap the shift so the multiplication cannot overflow.
  const int shift = std::min(attempt_, 30);
  ++attempt_;
  const int64_t base = std::min<int64_t>(initial_.count() << shift, max_.count());
  // xorshift64: deterministic for a seed, good enough for jitter.
  state_ ^= state_ << 13;
  state_ ^= state_ >> 7;
  state_ ^= state_ << 17;
  const int64_t half = base / 2;
  const int64_t jitter =
      half > 0 ? static_cast<int64_t>(state_ % static_cast<uint64_t>(half + 1)) : 0;
  return Duration(half + jitter + (base % 2));
}

}  // namespace gdp
