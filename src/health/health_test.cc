// Tests of the health component: the XID table, the HealthTracker state
// machine (table-driven, with explicit time), and the HealthMonitor thread
// against a StrictMock of NVML whose EventSetWait blocks on a scripted queue.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/health/health_monitor.h"
#include "src/health/health_options.h"
#include "src/health/health_tracker.h"
#include "src/health/xid.h"
#include "tests/mocks/fake_clock.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::health {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::_;
using ::testing::AnyNumber;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;

// ---------------------------------------------------------------- XIDs

TEST(XidTest, WellKnownXidsHaveDescriptions) {
  for (unsigned long long xid :
       {13, 31, 43, 45, 48, 63, 64, 68, 74, 79, 92, 94, 95, 109, 119, 120, 123, 140}) {
    EXPECT_FALSE(XidDescription(xid).empty()) << "XID " << xid;
  }
  EXPECT_EQ(XidReason(79), "XID 79: GPU has fallen off the bus");
  EXPECT_EQ(XidReason(48), "XID 48: Double Bit ECC Error");
  EXPECT_EQ(XidReason(200), "XID 200");
  EXPECT_TRUE(XidDescription(200).empty());
}

TEST(HealthOptionsTest, FromConfigCopiesEveryField) {
  config::HealthConfig c;
  c.enabled = false;
  c.ignored_xids = {13, 79};
  c.recovery_quiet_period = seconds(42);
  c.probe_interval = milliseconds(1234);
  const HealthOptions o = FromConfig(c);
  EXPECT_FALSE(o.enabled);
  EXPECT_EQ(o.ignored_xids, (std::set<unsigned long long>{13, 79}));
  EXPECT_EQ(o.quiet_period, seconds(42));
  EXPECT_EQ(o.probe_interval, milliseconds(1234));
  // The defaults of both structs agree.
  const HealthOptions d = FromConfig(config::HealthConfig{});
  EXPECT_EQ(d.ignored_xids, HealthOptions{}.ignored_xids);
  EXPECT_EQ(d.quiet_period, HealthOptions{}.quiet_period);
  EXPECT_EQ(d.probe_interval, HealthOptions{}.probe_interval);
}

// ---------------------------------------------------------------- tracker

enum class Input { kXid, kEcc, kLost, kProbeOk, kProbeFail, kAdvance };
enum class Expect { kNothing, kUnhealthy, kHealthy };

struct Step {
  Input input;
  unsigned long long arg = 0;  // XID for kXid, seconds for kAdvance
  Expect expect = Expect::kNothing;
  std::string reason = {};  // substring of the event's reason, when one is expected
};

struct TrackerCase {
  std::string name;
  std::vector<Step> steps;
  bool healthy_at_end;
  std::chrono::milliseconds quiet_period = seconds(60);
  std::optional<std::set<unsigned long long>> ignored = std::nullopt;
};

// Names the case in test output instead of dumping its bytes.
void PrintTo(const TrackerCase& c, std::ostream* os) { *os << c.name; }

class TrackerTest : public ::testing::TestWithParam<TrackerCase> {};

TEST_P(TrackerTest, FollowsTheRules) {
  const TrackerCase& c = GetParam();
  HealthOptions options;
  options.quiet_period = c.quiet_period;
  if (c.ignored) options.ignored_xids = *c.ignored;
  const std::string gpu = "GPU-target";
  const std::string other = "GPU-other";
  HealthTracker tracker({other, gpu}, options);
  Clock::TimePoint now = Clock::TimePoint(seconds(1000));

  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& s = c.steps[i];
    SCOPED_TRACE("step " + std::to_string(i));
    std::optional<HealthEvent> event;
    switch (s.input) {
      case Input::kXid:
        event = tracker.OnXid(gpu, s.arg, now);
        break;
      case Input::kEcc:
        event = tracker.OnDoubleBitEcc(gpu, now);
        break;
      case Input::kLost:
        event = tracker.OnLost(gpu, now);
        break;
      case Input::kProbeOk:
        event = tracker.OnProbe(gpu, true, now);
        break;
      case Input::kProbeFail:
        event = tracker.OnProbe(gpu, false, now);
        break;
      case Input::kAdvance:
        now += seconds(s.arg);
        break;
    }
    if (s.expect == Expect::kNothing) {
      EXPECT_FALSE(event.has_value()) << event->reason;
      continue;
    }
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->uuid, gpu);
    EXPECT_EQ(event->healthy, s.expect == Expect::kHealthy);
    EXPECT_THAT(event->reason, HasSubstr(s.reason));
    EXPECT_EQ(tracker.Get(gpu)->healthy, event->healthy);
    if (!event->healthy) {
      EXPECT_EQ(tracker.Get(gpu)->reason, event->reason);
    }
  }
  EXPECT_EQ(tracker.Get(gpu)->healthy, c.healthy_at_end);
  EXPECT_EQ(tracker.Get(gpu)->reason.empty(), c.healthy_at_end);
  // Nothing leaks onto another GPU.
  EXPECT_TRUE(tracker.Get(other)->healthy);
}

const TrackerCase kTrackerCases[] = {
    {"IgnoredXidChangesNothing",
     {{Input::kXid, 13}, {Input::kXid, 31}, {Input::kXid, 43}, {Input::kXid, 109}},
     true},
    {"CriticalXidMarksUnhealthy",
     {{Input::kXid, 79, Expect::kUnhealthy, "XID 79: GPU has fallen off the bus"}},
     false},
    {"UnknownXidIsCritical", {{Input::kXid, 200, Expect::kUnhealthy, "XID 200"}}, false},
    {"NvmlUndecodedXidIsCritical", {{Input::kXid, 999, Expect::kUnhealthy, "XID 999"}}, false},
    {"EmptyIgnoredSetMakesXid13Critical",
     {{Input::kXid, 13, Expect::kUnhealthy, "XID 13: Graphics Engine Exception"}},
     false,
     seconds(60),
     std::set<unsigned long long>{}},
    {"ConfiguredIgnoredXid",
     {{Input::kXid, 79}},
     true,
     seconds(60),
     std::set<unsigned long long>{79}},
    {"RecoversOnceQuietPeriodHasPassed",
     {{Input::kXid, 48, Expect::kUnhealthy, "XID 48"},
      {Input::kAdvance, 59},
      {Input::kProbeOk},
      {Input::kAdvance, 1},
      {Input::kProbeOk, 0, Expect::kHealthy, "no critical error for 60s"}},
     true},
    {"RepeatXidsExtendTheQuietPeriod",
     {{Input::kXid, 48, Expect::kUnhealthy, "XID 48"},
      {Input::kAdvance, 50},
      {Input::kXid, 94},  // already unhealthy: no event, but the clock restarts
      {Input::kAdvance, 50},
      {Input::kProbeOk},  // 100s after the first, only 50s after the last
      {Input::kAdvance, 10},
      {Input::kProbeOk, 0, Expect::kHealthy, "XID 94: Contained ECC error"}},
     true},
    {"ZeroQuietPeriodNeverRecovers",
     {{Input::kXid, 79, Expect::kUnhealthy, "XID 79"},
      {Input::kAdvance, 10ULL * 24 * 3600},
      {Input::kProbeOk}},
     false,
     seconds(0)},
    {"FailingProbeKeepsItUnhealthy",
     {{Input::kXid, 95, Expect::kUnhealthy, "XID 95: Uncontained ECC error"},
      {Input::kAdvance, 3600},
      {Input::kProbeFail},
      {Input::kProbeFail}},
     false},
    {"FailingThenGoodProbeRecovers",
     {{Input::kXid, 95, Expect::kUnhealthy, "XID 95"},
      {Input::kAdvance, 3600},
      {Input::kProbeFail},
      {Input::kProbeOk, 0, Expect::kHealthy, "recovered"}},
     true},
    {"LostRecoversWhenFoundAgain",
     {{Input::kLost, 0, Expect::kUnhealthy, "NVML_ERROR_GPU_IS_LOST"},
      {Input::kLost},
      {Input::kProbeFail},
      {Input::kProbeOk, 0, Expect::kHealthy, "NVML finds the GPU again"}},
     true},
    {"LostRecoversEvenWithZeroQuietPeriod",
     {{Input::kLost, 0, Expect::kUnhealthy, "lost"},
      {Input::kProbeOk, 0, Expect::kHealthy, "finds the GPU again"}},
     true,
     seconds(0)},
    {"XidThenLostNeedsBothCleared",
     {{Input::kXid, 79, Expect::kUnhealthy, "XID 79"},
      {Input::kLost},
      {Input::kProbeOk},  // found again, but the XID is 0s old
      {Input::kAdvance, 60},
      {Input::kProbeOk, 0, Expect::kHealthy, "XID 79"}},
     true},
    {"DoubleBitEccIsCritical",
     {{Input::kEcc, 0, Expect::kUnhealthy, "double-bit ECC error"},
      {Input::kAdvance, 30},
      {Input::kEcc},
      {Input::kAdvance, 30},
      {Input::kProbeOk},
      {Input::kAdvance, 30},
      {Input::kProbeOk, 0, Expect::kHealthy, "double-bit ECC error"}},
     true},
    {"ProbeOnHealthyGpuIsQuiet", {{Input::kProbeOk}, {Input::kProbeFail}}, true},
    {"UnhealthyAgainAfterRecovery",
     {{Input::kXid, 79, Expect::kUnhealthy, "XID 79"},
      {Input::kAdvance, 60},
      {Input::kProbeOk, 0, Expect::kHealthy},
      {Input::kXid, 74, Expect::kUnhealthy, "XID 74: NVLink Error"}},
     false},
};

INSTANTIATE_TEST_SUITE_P(Cases, TrackerTest, ::testing::ValuesIn(kTrackerCases),
                         [](const ::testing::TestParamInfo<TrackerCase>& p) {
                           return p.param.name;
                         });

// ---------------------------------------------------------------- tracker reconfiguration

class TrackerSetOptionsTest : public ::testing::Test {
 protected:
  TrackerSetOptionsTest() : tracker_({"GPU-a", "GPU-b", "GPU-c"}, Options(seconds(300), {13})) {}

  static HealthOptions Options(std::chrono::milliseconds quiet,
                               std::set<unsigned long long> ignored) {
    HealthOptions o;
    o.quiet_period = quiet;
    o.ignored_xids = std::move(ignored);
    return o;
  }

  HealthTracker tracker_;
  Clock::TimePoint now_ = Clock::TimePoint(seconds(1000));
};

TEST_F(TrackerSetOptionsTest, ShorterQuietPeriodAppliesToAnAlreadyUnhealthyGpu) {
  ASSERT_TRUE(tracker_.OnXid("GPU-a", 79, now_).has_value());
  tracker_.SetOptions(Options(seconds(10), {13}));
  EXPECT_FALSE(tracker_.Get("GPU-a")->healthy);  // the state survives
  EXPECT_FALSE(tracker_.OnProbe("GPU-a", true, now_ + seconds(9)).has_value());
  const auto event = tracker_.OnProbe("GPU-a", true, now_ + seconds(10));
  ASSERT_TRUE(event.has_value());
  EXPECT_TRUE(event->healthy);
  EXPECT_THAT(event->reason, HasSubstr("no critical error for 10s"));
}

TEST_F(TrackerSetOptionsTest, LongerQuietPeriodDelaysRecovery) {
  ASSERT_TRUE(tracker_.OnXid("GPU-a", 79, now_).has_value());
  tracker_.SetOptions(Options(seconds(600), {13}));
  EXPECT_FALSE(tracker_.OnProbe("GPU-a", true, now_ + seconds(300)).has_value());
  EXPECT_TRUE(tracker_.OnProbe("GPU-a", true, now_ + seconds(600)).has_value());
}

TEST_F(TrackerSetOptionsTest, ZeroQuietPeriodStopsRecovery) {
  ASSERT_TRUE(tracker_.OnXid("GPU-a", 79, now_).has_value());
  tracker_.SetOptions(Options(seconds(0), {13}));
  EXPECT_FALSE(tracker_.OnProbe("GPU-a", true, now_ + seconds(100000)).has_value());
  EXPECT_FALSE(tracker_.Get("GPU-a")->healthy);
}

TEST_F(TrackerSetOptionsTest, NewlyIgnoredXidNoLongerMarksButDoesNotClear) {
  ASSERT_TRUE(tracker_.OnXid("GPU-a", 79, now_).has_value());
  tracker_.SetOptions(Options(seconds(300), {13, 79}));
  EXPECT_FALSE(tracker_.OnXid("GPU-b", 79, now_).has_value());
  EXPECT_TRUE(tracker_.Get("GPU-b")->healthy);
  EXPECT_FALSE(tracker_.Get("GPU-a")->healthy);
  // No longer ignored: marks again.
  tracker_.SetOptions(Options(seconds(300), {}));
  EXPECT_TRUE(tracker_.OnXid("GPU-b", 13, now_).has_value());
  EXPECT_EQ(tracker_.options().ignored_xids.size(), 0u);
}

TEST_F(TrackerSetOptionsTest, ClearAllReportsEveryUnhealthyGpuHealthyOnce) {
  ASSERT_TRUE(tracker_.OnXid("GPU-c", 48, now_).has_value());
  ASSERT_TRUE(tracker_.OnLost("GPU-a", now_).has_value());
  ASSERT_FALSE(tracker_.OnXid("GPU-a", 79, now_).has_value());  // lost and critical
  const std::vector<HealthEvent> events = tracker_.ClearAll("checking off");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].uuid, "GPU-a");  // the constructor's order
  EXPECT_EQ(events[1].uuid, "GPU-c");
  for (const auto& e : events) {
    EXPECT_TRUE(e.healthy);
    EXPECT_THAT(e.reason, HasSubstr("checking off"));
  }
  EXPECT_THAT(events[1].reason, HasSubstr("XID 48"));
  for (const auto& [uuid, d] : tracker_.devices()) {
    EXPECT_TRUE(d.healthy) << uuid;
    EXPECT_FALSE(d.lost || d.critical) << uuid;
    EXPECT_TRUE(d.reason.empty()) << uuid;
  }
  EXPECT_TRUE(tracker_.ClearAll("again").empty());
  // Both causes are gone: a good probe has nothing to report.
  EXPECT_FALSE(tracker_.OnProbe("GPU-a", true, now_).has_value());
}

TEST(TrackerUnknownDeviceTest, IsIgnored) {
  HealthTracker tracker({"GPU-a"}, HealthOptions{});
  const auto now = Clock::TimePoint(seconds(1));
  EXPECT_FALSE(tracker.OnXid("GPU-zzz", 79, now).has_value());
  EXPECT_FALSE(tracker.OnLost("GPU-zzz", now).has_value());
  EXPECT_FALSE(tracker.OnProbe("GPU-zzz", true, now).has_value());
  EXPECT_EQ(tracker.Get("GPU-zzz"), nullptr);
  EXPECT_EQ(tracker.devices().size(), 1u);
}

TEST(TrackerRecoveryActionTest, NvmlOutranksTheTableAndOnlyNvmlNoneClears) {
  HealthTracker tracker({"GPU-a"}, HealthOptions{});
  const auto now = Clock::TimePoint(seconds(1));
  ASSERT_TRUE(tracker.OnXid("GPU-a", 79, now).has_value());
  EXPECT_FALSE(tracker.OnRecoveryAction("GPU-a", RecoveryAction::kGpuReset, true, now).has_value());
  // A table guess does not replace NVML's word, and a table "none" clears nothing.
  tracker.OnRecoveryAction("GPU-a", RecoveryAction::kNodeReboot, false, now);
  EXPECT_EQ(tracker.Get("GPU-a")->pending_action, RecoveryAction::kGpuReset);
  tracker.OnRecoveryAction("GPU-a", RecoveryAction::kNone, false, now);
  EXPECT_EQ(tracker.Get("GPU-a")->pending_action, RecoveryAction::kGpuReset);
  EXPECT_FALSE(tracker.OnProbe("GPU-a", true, now + minutes(10)).has_value());
  tracker.OnRecoveryAction("GPU-a", RecoveryAction::kNone, true, now + minutes(10));
  auto e = tracker.OnProbe("GPU-a", true, now + minutes(10));
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->healthy);
  // A reset does not cut the quiet period short.
  ASSERT_TRUE(tracker.OnXid("GPU-a", 48, now + minutes(11)).has_value());
  tracker.OnRecoveryAction("GPU-a", RecoveryAction::kGpuReset, true, now + minutes(11));
  tracker.OnRecoveryAction("GPU-a", RecoveryAction::kNone, true, now + minutes(12));
  EXPECT_FALSE(tracker.OnProbe("GPU-a", true, now + minutes(12)).has_value());
  EXPECT_TRUE(tracker.OnProbe("GPU-a", true, now + minutes(16)).has_value());
}

TEST(XidTest, DocumentedActions) {
  EXPECT_EQ(XidDocumentedAction(79), RecoveryAction::kGpuReset);
  EXPECT_EQ(XidDocumentedAction(48), RecoveryAction::kGpuReset);
  EXPECT_EQ(XidDocumentedAction(94), RecoveryAction::kNone);
  EXPECT_EQ(XidDocumentedAction(13), RecoveryAction::kNone);
  EXPECT_EQ(RecoveryActionFromNvml(NVML_GPU_RECOVERY_ACTION_DRAIN_AND_RESET),
            RecoveryAction::kDrainAndReset);
  EXPECT_EQ(RecoveryActionFromNvml(77), RecoveryAction::kGpuReset);
}

TEST(TrackerRetargetTest, KeepsStateOfGpusStillPresentAndForgetsTheRest) {
  HealthTracker tracker({"GPU-a", "GPU-b"}, HealthOptions{});
  const auto now = Clock::TimePoint(seconds(1));
  ASSERT_TRUE(tracker.OnXid("GPU-b", 79, now).has_value());
  ASSERT_TRUE(tracker.OnLost("GPU-a", now).has_value());
  tracker.Retarget({"GPU-b", "GPU-c"});
  EXPECT_EQ(tracker.uuids(), (std::vector<std::string>{"GPU-b", "GPU-c"}));
  ASSERT_NE(tracker.Get("GPU-b"), nullptr);
  EXPECT_FALSE(tracker.Get("GPU-b")->healthy) << "an Unhealthy GPU stays so";
  EXPECT_THAT(tracker.Get("GPU-b")->reason, HasSubstr("XID 79"));
  ASSERT_NE(tracker.Get("GPU-c"), nullptr);
  EXPECT_TRUE(tracker.Get("GPU-c")->healthy);
  EXPECT_EQ(tracker.Get("GPU-a"), nullptr);
  // GPU-b still recovers after its quiet period, measured from its XID.
  EXPECT_TRUE(tracker.OnProbe("GPU-b", true, now + minutes(5)).has_value());
}

// ---------------------------------------------------------------- monitor

constexpr int kGpus = 4;
constexpr auto kDeadline = seconds(10);

// Opaque handles, as NVML's are: distinct addresses nobody dereferences.
char handle_storage[kGpus];
char set_storage;
nvmlDevice_t Handle(int i) { return reinterpret_cast<nvmlDevice_t>(&handle_storage[i]); }
std::string Uuid(int i) { return "GPU-" + std::to_string(i); }
const nvmlEventSet_t kSet = reinterpret_cast<nvmlEventSet_t>(&set_storage);
constexpr unsigned long long kXidAndEcc =
    nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError;

nvml::Inventory MakeInventory() {
  nvml::Inventory inv;
  for (int i = 0; i < kGpus; ++i) {
    nvml::Gpu gpu;
    gpu.index = i;
    gpu.uuid = Uuid(i);
    inv.gpus.push_back(gpu);
  }
  return inv;
}

// What nvmlEventSetWait returns next: the mock blocks on it for up to the
// caller's timeout, as NVML does, then answers NVML_ERROR_TIMEOUT.
class EventScript {
 public:
  void Push(nvmlReturn_t r, nvmlEventData_t data = {}) {
    {
      std::lock_guard lock(mu_);
      queue_.emplace_back(r, data);
    }
    cv_.notify_all();
  }
  void PushXid(nvmlDevice_t device, unsigned long long xid) {
    nvmlEventData_t d{};
    d.device = device;
    d.eventType = nvmlEventTypeXidCriticalError;
    d.eventData = xid;
    d.gpuInstanceId = d.computeInstanceId = 0xFFFFFFFF;
    Push(NVML_SUCCESS, d);
  }

  nvmlReturn_t Wait(nvmlEventSet_t, nvmlEventData_t* data, unsigned int timeout_ms) {
    std::unique_lock lock(mu_);
    ++waiting_;
    last_timeout_ms_ = timeout_ms;
    cv_.notify_all();
    const bool got = cv_.wait_for(lock, milliseconds(timeout_ms), [&] { return !queue_.empty(); });
    --waiting_;
    if (!got) return NVML_ERROR_TIMEOUT;
    auto [r, d] = queue_.front();
    queue_.pop_front();
    if (r == NVML_SUCCESS) *data = d;
    ++delivered_;
    cv_.notify_all();
    return r;
  }

  // True once every pushed item was delivered and the monitor waits again.
  bool WaitDrained() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kDeadline, [&] { return queue_.empty() && waiting_ > 0; });
  }
  unsigned int last_timeout_ms() {
    std::lock_guard lock(mu_);
    return last_timeout_ms_;
  }
  // How many callers are inside Wait() now.
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<nvmlReturn_t, nvmlEventData_t>> queue_;
  int waiting_ = 0;
  int delivered_ = 0;
  unsigned int last_timeout_ms_ = 0;
};

class RecordingListener : public HealthListener {
 public:
  void OnMigConfigChanged(const std::string& uuid) override {
    {
      std::lock_guard lock(mu_);
      mig_changes_.push_back(uuid);
    }
    cv_.notify_all();
  }
  std::vector<std::string> WaitForMigChanges(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kDeadline, [&] { return mig_changes_.size() >= n; });
    return mig_changes_;
  }
  void OnHealthChanged(const HealthEvent& event) override {
    {
      std::lock_guard lock(mu_);
      events_.push_back(event);
    }
    cv_.notify_all();
  }
  // Waits (with a deadline) until at least n events arrived; returns them all.
  std::vector<HealthEvent> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kDeadline, [&] { return events_.size() >= n; });
    return events_;
  }
  std::vector<HealthEvent> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<HealthEvent> events_;
  std::vector<std::string> mig_changes_;
};

template <typename Pred>
bool Eventually(Pred pred) {
  const auto end = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(2));  // polling interval, not synchronisation
  }
  return pred();
}

class MonitorTest : public ::testing::Test {
 protected:
  MonitorTest() {
    options_.quiet_period = seconds(60);
    options_.probe_interval = seconds(5);  // on the FakeClock: probes only when a test advances it
    options_.wait_timeout = milliseconds(20);
    options_.wait_error_backoff_initial = milliseconds(1);
    options_.wait_error_backoff_max = milliseconds(4);
    options_.recreate_event_set_after = 3;
    for (auto& rc : memory_rc_) rc = NVML_SUCCESS;
    ExpectNvmlQueries();
  }

  // What the monitor may call any number of times: error strings, probes
  // (answering per handle_rc_ and memory_rc_) and waits (from script_).
  void ExpectNvmlQueries() {
    EXPECT_CALL(nvml_, ErrorString(_)).Times(AnyNumber()).WillRepeatedly(Return("an NVML error"));
    EXPECT_CALL(nvml_, DeviceGetHandleByUUID(_, _))
        .Times(AnyNumber())
        .WillRepeatedly(Invoke([this](const char* uuid, nvmlDevice_t* device) {
          for (int i = 0; i < kGpus; ++i) {
            if (Uuid(i) == uuid) {
              if (handle_rc_[i] == NVML_SUCCESS) *device = Handle(i);
              return handle_rc_[i].load();
            }
          }
          return NVML_ERROR_NOT_FOUND;
        }));
    EXPECT_CALL(nvml_, DeviceGetMemoryInfo(_, _))
        .Times(AnyNumber())
        .WillRepeatedly(Invoke([this](nvmlDevice_t device, nvmlMemory_t* memory) {
          for (int i = 0; i < kGpus; ++i) {
            if (Handle(i) == device) {
              *memory = nvmlMemory_t{80ull << 30, 80ull << 30, 0};
              return memory_rc_[i].load();
            }
          }
          return NVML_ERROR_INVALID_ARGUMENT;
        }));
    EXPECT_CALL(nvml_, EventSetWait(kSet, _, _))
        .Times(AnyNumber())
        .WillRepeatedly(Invoke(&script_, &EventScript::Wait));
    // NVML's recovery-action field: action_[i] (-1: the driver lacks it).
    EXPECT_CALL(nvml_, DeviceGetFieldValues(_, 1, _))
        .Times(AnyNumber())
        .WillRepeatedly(Invoke([this](nvmlDevice_t device, int, nvmlFieldValue_t* v) {
          for (int i = 0; i < kGpus; ++i) {
            if (Handle(i) != device) continue;
            if (v->fieldId != NVML_FI_DEV_GET_GPU_RECOVERY_ACTION || action_[i] < 0) {
              return NVML_ERROR_FUNCTION_NOT_FOUND;
            }
            v->nvmlReturn = NVML_SUCCESS;
            v->value.uiVal = static_cast<unsigned>(action_[i].load());
            return NVML_SUCCESS;
          }
          return NVML_ERROR_INVALID_ARGUMENT;
        }));
  }

  // The usual start: one set, every GPU registered for XID and ECC events.
  void ExpectSetUp(int times = 1) {
    EXPECT_CALL(nvml_, EventSetCreate(_))
        .Times(times)
        .WillRepeatedly(Invoke([this](nvmlEventSet_t* set) {
          ++creates_;
          *set = kSet;
          return NVML_SUCCESS;
        }));
    EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(_, _))
        .Times(times * kGpus)
        .WillRepeatedly(DoAll(
            SetArgPointee<1>(kXidAndEcc | nvmlEventTypePState | nvmlEventTypeSingleBitEccError),
            Return(NVML_SUCCESS)));
    for (int i = 0; i < kGpus; ++i) {
      EXPECT_CALL(nvml_, DeviceRegisterEvents(Handle(i), kXidAndEcc, kSet))
          .Times(times)
          .WillRepeatedly(Return(NVML_SUCCESS));
    }
    EXPECT_CALL(nvml_, EventSetFree(kSet)).Times(times).WillRepeatedly(Return(NVML_SUCCESS));
  }

  std::unique_ptr<HealthMonitor> StartMonitor() {
    auto monitor = std::make_unique<HealthMonitor>(nvml_, inventory_, options_, listener_, clock_);
    EXPECT_TRUE(monitor->Start().ok());
    return monitor;
  }

  static std::vector<bool> HealthOf(const HealthMonitor& m) {
    std::vector<bool> healthy;
    for (const auto& [uuid, d] : m.Devices()) healthy.push_back(d.healthy);
    return healthy;
  }

  StrictMock<nvml::MockNvml> nvml_;
  nvml::Inventory inventory_ = MakeInventory();
  HealthOptions options_;
  FakeClock clock_;
  EventScript script_;
  RecordingListener listener_;
  std::atomic<int> creates_{0};
  std::array<std::atomic<nvmlReturn_t>, kGpus> memory_rc_;
  std::array<std::atomic<int>, kGpus> action_{0, 0, 0, 0};
  std::array<std::atomic<nvmlReturn_t>, kGpus> handle_rc_{NVML_SUCCESS, NVML_SUCCESS, NVML_SUCCESS,
                                                          NVML_SUCCESS};
};

TEST_F(MonitorTest, XidEventMarksOnlyThatGpuUnhealthy) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(2), 79);
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (HealthEvent{Uuid(2), false, "XID 79: GPU has fallen off the bus"}));
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(script_.last_timeout_ms(), 20u);
  monitor->Stop();
  const HealthStats stats = monitor->Stats();
  EXPECT_EQ(stats.events, 1u);
  EXPECT_EQ(stats.transitions, 1u);
  EXPECT_EQ(stats.xids, (std::map<unsigned long long, uint64_t>{{79, 1}}));
  EXPECT_EQ(stats.xids_by_gpu,
            (std::map<std::string, std::map<unsigned long long, uint64_t>>{{Uuid(2), {{79, 1}}}}));
  EXPECT_EQ(stats.last_xid_by_gpu, (std::map<std::string, unsigned long long>{{Uuid(2), 79}}));
  EXPECT_EQ(stats.wait_errors, 0u);
  EXPECT_EQ(listener_.events().size(), 1u);
}

TEST_F(MonitorTest, GpuUnavailableEventProbesAtOnce) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  ASSERT_TRUE(script_.WaitDrained()) << "registered and waiting";
  handle_rc_[3] = NVML_ERROR_GPU_IS_LOST;
  nvmlEventData_t d{};
  d.device = Handle(3);
  d.eventType = nvmlEventTypeGpuUnavailableError;
  script_.Push(NVML_SUCCESS, d);  // no clock advance: only the event can make it probe
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(3));
  EXPECT_THAT(events[0].reason, HasSubstr("lost"));
  monitor->Stop();
}

TEST_F(MonitorTest, MigConfigChangeIsPassedOnAndIsNoHealthChange) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  nvmlEventData_t d{};
  d.device = Handle(1);
  d.eventType = nvmlEventMigConfigChange;
  script_.Push(NVML_SUCCESS, d);
  EXPECT_EQ(listener_.WaitForMigChanges(1), (std::vector<std::string>{Uuid(1)}));
  monitor->Stop();
  EXPECT_TRUE(listener_.events().empty());
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>(kGpus, true)));
}

TEST_F(MonitorTest, SetInventoryOnlyWhileStoppedAndKeepsKnownGpusState) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(2), 79);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);
  EXPECT_EQ(monitor->SetInventory(nvml_, inventory_).code(), absl::StatusCode::kFailedPrecondition);
  monitor->Stop();

  nvml::Inventory next = inventory_;
  next.gpus.erase(next.gpus.begin());  // GPU 0 removed
  nvml::Gpu added;
  added.uuid = "GPU-new";
  next.gpus.push_back(added);
  ASSERT_TRUE(monitor->SetInventory(nvml_, next).ok());
  const auto devices = monitor->Devices();
  EXPECT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices.count(Uuid(0)), 0u);
  EXPECT_FALSE(devices.at(Uuid(2)).healthy);
  EXPECT_TRUE(devices.at("GPU-new").healthy);
  EXPECT_EQ(listener_.events().size(), 1u) << "retargeting reports nothing";
}

TEST_F(MonitorTest, GpuNeedingAResetStaysUnhealthyPastTheQuietPeriodUntilNvmlSaysNone) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  action_[1] = NVML_GPU_RECOVERY_ACTION_GPU_RESET;
  script_.PushXid(Handle(1), 79);
  auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].healthy);
  ASSERT_TRUE(Eventually(
      [&] { return monitor->Devices().at(Uuid(1)).pending_action == RecoveryAction::kGpuReset; }));
  EXPECT_THAT(monitor->Devices().at(Uuid(1)).reason,
              HasSubstr("needs a GPU reset before it is used again (NVML recovery action)"));

  // Quiet period long gone: still Unhealthy while the reset is pending.
  uint64_t probes = monitor->Stats().probes;
  clock_.Advance(seconds(120));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  EXPECT_EQ(listener_.events().size(), 1u);

  // The GPU is reset: NVML reports no action, the next probe recovers it.
  action_[1] = NVML_GPU_RECOVERY_ACTION_NONE;
  probes = monitor->Stats().probes;
  clock_.Advance(seconds(5));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  clock_.Advance(seconds(5));
  events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[1].healthy);
  monitor->Stop();
}

TEST_F(MonitorTest, WithoutTheFieldTheXidsDocumentedActionHoldsUntilLostAndFound) {
  ExpectSetUp(2);  // the GPU found again is registered afresh
  for (auto& a : action_) a = -1;
  auto monitor = StartMonitor();
  script_.PushXid(Handle(2), 48);  // documented: reset the GPU
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);
  ASSERT_TRUE(Eventually([&] {
    const DeviceHealth d = monitor->Devices().at(Uuid(2));
    return d.pending_action == RecoveryAction::kGpuReset && !d.action_from_nvml;
  }));
  uint64_t probes = monitor->Stats().probes;
  clock_.Advance(seconds(120));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  EXPECT_EQ(listener_.events().size(), 1u) << "the quiet period alone does not recover it";

  // A reset takes the GPU off the bus and back.
  handle_rc_[2] = NVML_ERROR_GPU_IS_LOST;
  probes = monitor->Stats().probes;
  clock_.Advance(seconds(5));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  handle_rc_[2] = NVML_SUCCESS;
  clock_.Advance(seconds(5));
  const auto events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[1].healthy);
  EXPECT_TRUE(Eventually([&] { return creates_ >= 2; })) << "registered afresh once found";
  monitor->Stop();
}

TEST_F(MonitorTest, RecoveryActionEventAloneMarksAndClears) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  action_[0] = NVML_GPU_RECOVERY_ACTION_NODE_REBOOT;
  nvmlEventData_t d{};
  d.device = Handle(0);
  d.eventType = nvmlEventTypeGpuRecoveryAction;
  script_.Push(NVML_SUCCESS, d);
  auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].reason, HasSubstr("needs a node reboot"));
  action_[0] = NVML_GPU_RECOVERY_ACTION_NONE;
  clock_.Advance(seconds(5));
  const uint64_t probes = monitor->Stats().probes;
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  clock_.Advance(seconds(5));
  events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[1].healthy);
  monitor->Stop();
}

TEST_F(MonitorTest, IgnoredXidIsCountedButChangesNothing) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(1), 13);
  script_.PushXid(Handle(1), 43);
  script_.PushXid(Handle(0), 48);  // delivered after the ignored ones
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (HealthEvent{Uuid(0), false, "XID 48: Double Bit ECC Error"}));
  monitor->Stop();
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(monitor->Stats().xids,
            (std::map<unsigned long long, uint64_t>{{13, 1}, {43, 1}, {48, 1}}));
}

TEST_F(MonitorTest, DoubleBitEccEventMarksUnhealthy) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  nvmlEventData_t d{};
  d.device = Handle(3);
  d.eventType = nvmlEventTypeDoubleBitEccError;
  script_.Push(NVML_SUCCESS, d);
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (HealthEvent{Uuid(3), false, "double-bit ECC error"}));
  monitor->Stop();
  EXPECT_EQ(monitor->Stats().ecc_events, 1u);
}

TEST_F(MonitorTest, XidRecoversAfterQuietPeriodOnGoodProbe) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(1), 94);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);

  // A probe before the quiet period has passed keeps it unhealthy.
  const uint64_t probes = monitor->Stats().probes;
  clock_.Advance(seconds(30));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  EXPECT_EQ(listener_.events().size(), 1u);

  clock_.Advance(seconds(30));
  const auto events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].uuid, Uuid(1));
  EXPECT_TRUE(events[1].healthy);
  EXPECT_THAT(events[1].reason, HasSubstr("XID 94"));
  monitor->Stop();
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>(kGpus, true)));
}

TEST_F(MonitorTest, LostOnProbeThenFoundAgainReRegisters) {
  ExpectSetUp(/*times=*/2);  // the second set is made when GPU 3 comes back
  memory_rc_[3] = NVML_ERROR_GPU_IS_LOST;
  auto monitor = StartMonitor();
  clock_.Advance(options_.probe_interval);
  auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(3));
  EXPECT_FALSE(events[0].healthy);
  EXPECT_THAT(events[0].reason, HasSubstr("NVML_ERROR_GPU_IS_LOST"));
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{true, true, true, false}));

  memory_rc_[3] = NVML_SUCCESS;
  clock_.Advance(options_.probe_interval);
  events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], (HealthEvent{Uuid(3), true, "recovered: NVML finds the GPU again"}));
  // The GPU's old registration died with it: the monitor builds a new set.
  ASSERT_TRUE(Eventually([&] { return creates_ == 2; }));
  ASSERT_TRUE(script_.WaitDrained());  // registered again and back in the wait
  monitor->Stop();
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>(kGpus, true)));
}

TEST_F(MonitorTest, GpuNvmlNoLongerFindsIsLost) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  ASSERT_TRUE(script_.WaitDrained());  // registered while NVML still found it
  handle_rc_[0] = NVML_ERROR_NOT_FOUND;
  clock_.Advance(options_.probe_interval);
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(0));
  EXPECT_FALSE(events[0].healthy);
}

TEST_F(MonitorTest, GpuLostErrorFromWaitProbesAtOnce) {
  ExpectSetUp();
  memory_rc_[2] = NVML_ERROR_GPU_IS_LOST;
  auto monitor = StartMonitor();
  script_.Push(NVML_ERROR_GPU_IS_LOST);  // the clock does not move: only the wait error probes
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(2));
  EXPECT_FALSE(events[0].healthy);
  monitor->Stop();
  EXPECT_EQ(monitor->Stats().wait_errors, 1u);
  EXPECT_EQ(listener_.events().size(), 1u);
}

TEST_F(MonitorTest, WaitErrorsAreRetriedAndNeverMarkDevicesUnhealthy) {
  // 7 errors with recreation every 3: the initial set plus two recreations.
  ExpectSetUp(/*times=*/3);
  auto monitor = StartMonitor();
  for (int i = 0; i < 7; ++i) script_.Push(NVML_ERROR_UNKNOWN);
  script_.PushXid(Handle(1), 79);  // events still arrive afterwards
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(1));
  monitor->Stop();
  EXPECT_EQ(listener_.events().size(), 1u);
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{true, false, true, true}));
  const HealthStats stats = monitor->Stats();
  EXPECT_EQ(stats.wait_errors, 7u);
  EXPECT_EQ(stats.event_set_recreations, 2u);
  EXPECT_EQ(stats.transitions, 1u);
}

TEST_F(MonitorTest, EventWithoutDeviceAppliesToEveryGpuAndRecovers) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(nullptr, 79);
  auto events = listener_.WaitFor(kGpus);
  ASSERT_EQ(events.size(), static_cast<size_t>(kGpus));
  for (int i = 0; i < kGpus; ++i)
    EXPECT_EQ(events[i], (HealthEvent{Uuid(i), false, "XID 79: GPU has fallen off the bus"}));
  EXPECT_EQ(monitor->Stats().unattributed_events, 1u);

  clock_.Advance(options_.quiet_period);
  events = listener_.WaitFor(size_t{2} * kGpus);
  ASSERT_EQ(events.size(), size_t{2} * kGpus);
  for (int i = 0; i < kGpus; ++i) {
    EXPECT_EQ(events[kGpus + i].uuid, Uuid(i));
    EXPECT_TRUE(events[kGpus + i].healthy);
  }
}

TEST_F(MonitorTest, RegistrationHandlesUnsupportedAndLostGpus) {
  EXPECT_CALL(nvml_, EventSetCreate(_))
      .WillOnce(DoAll(SetArgPointee<0>(kSet), Return(NVML_SUCCESS)));
  // GPU 0 supports no health events, GPU 1 supports only XIDs, GPU 2 is lost
  // when registered, GPU 3 cannot even report what it supports.
  EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(Handle(0), _))
      .WillOnce(DoAll(SetArgPointee<1>(nvmlEventTypePState), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(Handle(1), _))
      .WillOnce(DoAll(SetArgPointee<1>(nvmlEventTypeXidCriticalError), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(Handle(2), _))
      .WillOnce(DoAll(SetArgPointee<1>(kXidAndEcc), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(Handle(3), _))
      .WillOnce(Return(NVML_ERROR_UNKNOWN));
  EXPECT_CALL(nvml_, DeviceRegisterEvents(Handle(1), nvmlEventTypeXidCriticalError, kSet))
      .WillOnce(Return(NVML_SUCCESS));
  EXPECT_CALL(nvml_, DeviceRegisterEvents(Handle(2), kXidAndEcc, kSet))
      .WillOnce(Return(NVML_ERROR_GPU_IS_LOST));
  EXPECT_CALL(nvml_, EventSetFree(kSet)).WillOnce(Return(NVML_SUCCESS));

  auto monitor = StartMonitor();
  auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(2));
  EXPECT_FALSE(events[0].healthy);
  // An XID from a GPU that is not registered cannot come, but one from GPU 1 does.
  script_.PushXid(Handle(1), 119);
  events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], (HealthEvent{Uuid(1), false, "XID 119: GSP RPC Timeout"}));
  monitor->Stop();
  EXPECT_EQ(monitor->Stats().registration_failures, 1u);
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{true, false, false, true}));
}

TEST_F(MonitorTest, NoEventSupportMeansProbingOnly) {
  EXPECT_CALL(nvml_, EventSetCreate(_)).WillOnce(Return(NVML_ERROR_NOT_SUPPORTED));
  auto monitor = StartMonitor();
  memory_rc_[0] = NVML_ERROR_GPU_IS_LOST;
  clock_.Advance(options_.probe_interval);
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(0));
  EXPECT_FALSE(events[0].healthy);
}

TEST_F(MonitorTest, EventSetCreateFailureIsRetried) {
  EXPECT_CALL(nvml_, EventSetCreate(_))
      .WillOnce(Return(NVML_ERROR_UNKNOWN))
      .WillOnce(Return(NVML_ERROR_UNKNOWN))
      .WillOnce(DoAll(SetArgPointee<0>(kSet), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml_, DeviceGetSupportedEventTypes(_, _))
      .Times(kGpus)
      .WillRepeatedly(DoAll(SetArgPointee<1>(kXidAndEcc), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml_, DeviceRegisterEvents(_, kXidAndEcc, kSet))
      .Times(kGpus)
      .WillRepeatedly(Return(NVML_SUCCESS));
  EXPECT_CALL(nvml_, EventSetFree(kSet)).WillOnce(Return(NVML_SUCCESS));
  auto monitor = StartMonitor();
  script_.PushXid(Handle(0), 79);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);
  monitor->Stop();
  EXPECT_EQ(monitor->Stats().wait_errors, 2u);
}

TEST_F(MonitorTest, StopReturnsPromptlyWhileBlockedInWait) {
  ExpectSetUp();
  options_.wait_timeout = milliseconds(300);
  auto monitor = StartMonitor();
  ASSERT_TRUE(script_.WaitDrained());  // blocked inside EventSetWait
  const auto start = std::chrono::steady_clock::now();
  monitor->Stop();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, milliseconds(300) + milliseconds(500));
  EXPECT_EQ(script_.last_timeout_ms(), 300u);
}

TEST_F(MonitorTest, StopReturnsPromptlyDuringErrorBackoff) {
  ExpectSetUp();
  options_.wait_error_backoff_initial = seconds(60);
  options_.wait_error_backoff_max = seconds(60);
  auto monitor = StartMonitor();
  script_.Push(NVML_ERROR_UNKNOWN);
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().wait_errors == 1; }));
  const auto start = std::chrono::steady_clock::now();
  monitor->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
}

TEST_F(MonitorTest, StartTwiceFailsAndDisabledStartsNothing) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  const absl::Status again = monitor->Start();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(script_.WaitDrained());  // set up once, by the first Start()
  monitor->Stop();
  monitor->Stop();  // idempotent

  HealthOptions off = options_;
  off.enabled = false;
  HealthMonitor disabled(nvml_, inventory_, off, listener_, clock_);
  EXPECT_TRUE(disabled.Start().ok());  // StrictMock: any NVML call would fail the test
  disabled.Stop();
  EXPECT_EQ(HealthOf(disabled), (std::vector<bool>(kGpus, true)));
}

// ---------------------------------------------------------------- SetOptions

TEST_F(MonitorTest, SetOptionsShorterQuietPeriodRecoversAtTheNewBoundary) {
  ExpectSetUp();
  auto monitor = StartMonitor();  // quiet period 60s, probes every 5s
  script_.PushXid(Handle(1), 94);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);

  HealthOptions shorter = options_;
  shorter.quiet_period = seconds(10);
  monitor->SetOptions(shorter);
  EXPECT_EQ(monitor->Options().quiet_period, seconds(10));
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{true, false, true, true}));

  // 5s after the XID: probed, still inside the new quiet period.
  const uint64_t probes = monitor->Stats().probes;
  clock_.Advance(seconds(5));
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= probes + kGpus; }));
  EXPECT_EQ(listener_.events().size(), 1u);

  // 10s after it: recovered, 50s before the old boundary.
  clock_.Advance(seconds(5));
  const auto events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].uuid, Uuid(1));
  EXPECT_TRUE(events[1].healthy);
  EXPECT_THAT(events[1].reason, HasSubstr("no critical error for 10s"));
  monitor->Stop();
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>(kGpus, true)));
}

TEST_F(MonitorTest, SetOptionsNewlyIgnoredXidNoLongerMarks) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(0), 79);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);

  HealthOptions more = options_;
  more.ignored_xids.insert(79);
  monitor->SetOptions(more);
  script_.PushXid(Handle(1), 79);  // now ignored
  script_.PushXid(Handle(2), 48);  // delivered after it: still critical
  const auto events = listener_.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], (HealthEvent{Uuid(2), false, "XID 48: Double Bit ECC Error"}));
  monitor->Stop();
  // GPU 0 keeps the state the earlier XID 79 gave it.
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(monitor->Stats().xids, (std::map<unsigned long long, uint64_t>{{48, 1}, {79, 2}}));
  EXPECT_EQ(listener_.events().size(), 2u);
}

TEST_F(MonitorTest, SetOptionsProbeIntervalAppliesToThePendingProbe) {
  ExpectSetUp();
  options_.probe_interval = std::chrono::hours(1);
  auto monitor = StartMonitor();
  clock_.Advance(seconds(5));
  // An ignored XID as a marker: once it is handled and the monitor waits
  // again, it has passed ProbeIfDue() with the clock 5s on.
  script_.PushXid(Handle(0), 13);
  ASSERT_TRUE(script_.WaitDrained());
  EXPECT_EQ(monitor->Stats().probes, 0u);

  HealthOptions faster = options_;
  faster.probe_interval = seconds(5);
  monitor->SetOptions(faster);
  // Due already: 5s have passed since Start() under the new interval.
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().probes >= kGpus; }));
}

TEST_F(MonitorTest, SetOptionsWakesTheThreadFromAnErrorBackoff) {
  ExpectSetUp();
  options_.probe_interval = std::chrono::hours(1);
  options_.wait_error_backoff_initial = seconds(60);
  options_.wait_error_backoff_max = seconds(60);
  auto monitor = StartMonitor();
  script_.Push(NVML_ERROR_UNKNOWN);  // the thread then sleeps 30s to 60s
  ASSERT_TRUE(Eventually([&] { return monitor->Stats().wait_errors == 1; }));

  memory_rc_[0] = NVML_ERROR_GPU_IS_LOST;
  clock_.Advance(seconds(5));
  HealthOptions faster = options_;
  faster.probe_interval = seconds(5);
  monitor->SetOptions(faster);
  // Seen well within the backoff (WaitFor's deadline is 10s).
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(0));
  EXPECT_FALSE(events[0].healthy);
}

TEST_F(MonitorTest, DisableReportsUnhealthyGpusHealthyAndStopsCallingNvml) {
  ExpectSetUp();
  auto monitor = StartMonitor();
  script_.PushXid(Handle(2), 79);
  ASSERT_EQ(listener_.WaitFor(1).size(), 1u);
  memory_rc_[3] = NVML_ERROR_GPU_IS_LOST;
  clock_.Advance(options_.probe_interval);
  ASSERT_EQ(listener_.WaitFor(2).size(), 2u);
  memory_rc_[3] = NVML_SUCCESS;

  HealthOptions off = options_;
  off.enabled = false;
  monitor->SetOptions(off);  // returns once the thread has ended

  const auto events = listener_.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2].uuid, Uuid(2));
  EXPECT_EQ(events[3].uuid, Uuid(3));
  for (size_t i = 2; i < 4; ++i) {
    EXPECT_TRUE(events[i].healthy);
    EXPECT_THAT(events[i].reason, HasSubstr("health checking disabled"));
  }
  EXPECT_EQ(HealthOf(*monitor), (std::vector<bool>(kGpus, true)));
  EXPECT_EQ(script_.waiting(), 0);
  // The event set was freed (ExpectSetUp's one EventSetFree); from here on
  // the StrictMock has no expectations, so any NVML call fails the test.
  ASSERT_TRUE(::testing::Mock::VerifyAndClearExpectations(&nvml_));
  clock_.Advance(options_.probe_interval * 10);
  script_.PushXid(Handle(1), 79);  // nobody may take it while disabled
  monitor->SetOptions(off);        // still off: stores only
  EXPECT_EQ(listener_.events().size(), 4u);

  // Enabled again: a fresh set, and the XID left in the queue is the first
  // thing the new thread sees.
  ExpectNvmlQueries();
  ExpectSetUp();
  monitor->SetOptions(options_);
  const auto after = listener_.WaitFor(5);
  ASSERT_EQ(after.size(), 5u);
  EXPECT_EQ(after[4], (HealthEvent{Uuid(1), false, "XID 79: GPU has fallen off the bus"}));
  monitor->Stop();
  EXPECT_EQ(monitor->Stats().transitions, 5u);
}

TEST_F(MonitorTest, EnableStartsAMonitorThatStartedDisabled) {
  options_.enabled = false;
  auto monitor = StartMonitor();  // StrictMock: no NVML call yet
  ASSERT_TRUE(::testing::Mock::VerifyAndClearExpectations(&nvml_));
  ExpectNvmlQueries();
  ExpectSetUp();
  HealthOptions on = options_;
  on.enabled = true;
  monitor->SetOptions(on);
  script_.PushXid(Handle(3), 79);
  const auto events = listener_.WaitFor(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].uuid, Uuid(3));
  EXPECT_EQ(monitor->Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MonitorTest, SetOptionsBeforeStartOnlyStores) {
  HealthMonitor monitor(nvml_, inventory_, options_, listener_, clock_);
  HealthOptions off = options_;
  off.enabled = false;
  monitor.SetOptions(off);
  EXPECT_FALSE(monitor.Options().enabled);
  EXPECT_TRUE(monitor.Start().ok());  // disabled: no thread, no NVML call
  monitor.Stop();
  EXPECT_TRUE(listener_.events().empty());
}

}  // namespace
}  // namespace gdp::health
