#include "src/common/backoff.h"

#include <gtest/gtest.h>

namespace gdp {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, GrowsWithinJitterBoundsUpToMax) {
  Backoff b(milliseconds(100), milliseconds(1000));
  const int64_t bases[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t base : bases) {
    const int64_t d = b.Next().count();
    EXPECT_GE(d, base / 2);
    EXPECT_LE(d, base);
  }
  EXPECT_EQ(b.attempts(), 7);
  b.Reset();
  EXPECT_LE(b.Next().count(), 100);
}

TEST(BackoffTest, NeverOverflowsAfterManyAttempts) {
  Backoff b(milliseconds(1), milliseconds(30000));
  for (int i = 0; i < 200; ++i) {
    const int64_t d = b.Next().count();
    ASSERT_GT(d, 0);
    ASSERT_LE(d, 30000);
  }
}

}  // namespace
}  // namespace gdp
