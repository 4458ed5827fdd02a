#include "src/metrics/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace gdp::metrics {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

template <typename Pred>
bool WaitUntil(Pred pred, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Emits `value` as test_value; blocks in Collect while the gate is closed;
// fails when told to.
class FakeCollector final : public Collector {
 public:
  explicit FakeCollector(std::string name) : name_(std::move(name)) {}
  std::string Name() const override { return name_; }
  absl::Status Collect(std::vector<MetricFamily>* out) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    if (fail_) return absl::UnavailableError("kubelet gone");
    MetricFamily f{"test_value", "A value.", MetricType::kGauge, {}};
    f.Add({{"from", name_}}, value_);
    out->push_back(std::move(f));
    return absl::OkStatus();
  }
  void Set(double v, bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    value_ = v;
    fail_ = fail;
  }
  // Returns how many Collect calls had begun.
  int Gate(bool open) {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = open;
    cv_.notify_all();
    return calls_;
  }
  bool WaitCalls(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return calls_ >= n; });
  }

 private:
  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  int calls_ = 0;
  bool open_ = true;
  bool fail_ = false;
  double value_ = 0;
};

TEST(SamplerTest, PublishesEveryCollectorWithDurationAndSuccess) {
  FakeCollector a("a"), b("b");
  a.Set(1, false);
  b.Set(2, true);
  SnapshotStore store;
  EXPECT_EQ(*store.Get(), "");
  Sampler sampler({}, {&a, &b}, store);
  sampler.SampleOnce();
  const std::string text = *store.Get();
  EXPECT_THAT(text, HasSubstr("test_value{from=\"a\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("from=\"b\"")));  // a failed collector's families are dropped
  EXPECT_THAT(text, HasSubstr("gdp_collector_success{collector=\"a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gdp_collector_success{collector=\"b\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("gdp_collector_duration_seconds{collector=\"b\"} "));
  b.Set(2, false);
  sampler.SampleOnce();
  EXPECT_THAT(*store.Get(), HasSubstr("test_value{from=\"b\"} 2\n"));
  EXPECT_EQ(sampler.rounds(), 2u);
}

TEST(SamplerTest, ScrapesNeverWaitForACollectorInProgress) {
  FakeCollector slow("slow");
  slow.Set(7, false);
  SnapshotStore store;
  Sampler sampler({milliseconds(1)}, {&slow}, store);
  sampler.Start();
  ASSERT_TRUE(WaitUntil([&] { return sampler.rounds() >= 1; }, milliseconds(10000)));
  const int before = slow.Gate(false);  // the next round blocks inside Collect
  slow.Set(8, false);
  ASSERT_TRUE(slow.WaitCalls(before + 1));
  // The round is stuck in the collector; the snapshot is still served at once.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) {
    EXPECT_THAT(*store.Get(), HasSubstr("test_value{from=\"slow\"} 7\n"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  slow.Gate(true);
  EXPECT_TRUE(WaitUntil([&] { return store.Get()->find("} 8\n") != std::string::npos; },
                        milliseconds(10000)));
  sampler.Stop();
}

TEST(SamplerTest, StopsPromptlyDuringALongInterval) {
  FakeCollector c("c");
  SnapshotStore store;
  Sampler sampler({std::chrono::hours(1)}, {&c}, store);
  sampler.Start();
  ASSERT_TRUE(WaitUntil([&] { return sampler.rounds() >= 1; }, milliseconds(10000)));
  const auto start = std::chrono::steady_clock::now();
  sampler.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  sampler.Stop();  // idempotent
}

}  // namespace
}  // namespace gdp::metrics
