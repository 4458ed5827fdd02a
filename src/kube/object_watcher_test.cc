// ObjectWatcher with the real OpenSslApiClient against a ScriptedServer on
// 127.0.0.1: the test answers each LIST and WATCH the watcher sends, in order,
// and checks the paths it asked for and what it reported.
#include "src/kube/object_watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/kube/openssl_api_client.h"
#include "src/kube/scripted_server.h"
#include "tests/mocks/mock_api_client.h"

namespace gdp::kube {
namespace {

using test_util::ScriptedConnection;
using test_util::ScriptedServer;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kListPath[] = "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-a";

std::string WatchPath(const std::string& version) {
  return absl::StrCat(
      "/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dnode-a&resourceVersion=", version,
      "&allowWatchBookmarks=true&timeoutSeconds=300");
}

json Node(const std::string& version, const std::string& config = "a") {
  return {{"kind", "Node"},
          {"metadata",
           {{"name", "node-a"},
            {"resourceVersion", version},
            {"labels", {{"nvidia.com/device-plugin.config", config}}}}}};
}

std::string List(const std::string& version, std::optional<json> node) {
  json items = json::array();
  if (node.has_value()) items.push_back(*node);
  return json{{"kind", "NodeList"}, {"metadata", {{"resourceVersion", version}}}, {"items", items}}
      .dump();
}

std::string Event(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

std::string Bookmark(const std::string& version) {
  return Event("BOOKMARK", {{"kind", "Node"}, {"metadata", {{"resourceVersion", version}}}});
}

std::string Gone() {
  return json{{"kind", "Status"},
              {"status", "Failure"},
              {"reason", "Expired"},
              {"message", "too old resource version: 10 (40)"},
              {"code", 410}}
      .dump();
}

// Whether `pred` holds before `wait` passes, looking every millisecond.
template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds wait = 10s) {
  const SteadyClock::time_point deadline = SteadyClock::now() + wait;
  while (!pred()) {
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// What the watcher reported, in order.
class Reports {
 public:
  ObjectWatcher::Callback Callback() {
    return [this](const std::optional<json>& object) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        reports_.push_back(object);
      }
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n, std::chrono::milliseconds wait = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, wait, [&] { return reports_.size() >= n; });
  }
  std::vector<std::optional<json>> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::optional<json>> reports_;
};

std::string VersionOf(const std::optional<json>& object) {
  return object.has_value() ? (*object)["metadata"]["resourceVersion"].get<std::string>()
                            : "(none)";
}

class ObjectWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }

  static ObjectWatcher::Options Options(std::chrono::milliseconds backoff_initial = 10s) {
    ObjectWatcher::Options o;
    o.collection_path = "/api/v1/nodes";
    o.name = "node-a";
    o.backoff_initial = backoff_initial;
    o.backoff_max = 4 * backoff_initial;
    return o;
  }

  // The next request, which must be for `target`.
  std::unique_ptr<ScriptedConnection> Expect(const std::string& target,
                                             std::chrono::milliseconds wait = 10s) {
    std::unique_ptr<ScriptedConnection> conn = server_.Accept(wait);
    if (conn == nullptr) {
      ADD_FAILURE() << "no request came for " << target;
    } else {
      EXPECT_EQ(conn->target(), target);
    }
    return conn;
  }

  ScriptedServer server_;
  RestConfig config_{.server = server_.url(), .timeout = 10s, .source = "test"};
  OpenSslApiClient client_{config_};
  Reports reports_;
};

TEST_F(ObjectWatcherTest, ListsThenFollowsEachChangeAndRewatchesFromTheLastVersion) {
  ObjectWatcher watcher(client_, Options(), reports_.Callback());
  EXPECT_FALSE(watcher.synced());
  watcher.Start();
  auto list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
  ASSERT_TRUE(reports_.WaitFor(1));
  EXPECT_TRUE(watcher.synced());
  EXPECT_EQ(reports_.Get()[0], Node("9"));

  auto watch = Expect(WatchPath("10"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->StartChunked());
  ASSERT_TRUE(watch->Chunk(Event("MODIFIED", Node("11", "b"))));
  ASSERT_TRUE(reports_.WaitFor(2));
  EXPECT_EQ(reports_.Get()[1], Node("11", "b"));
  // The same version again is not reported; a bookmark moves the version on;
  // the stream ends.
  ASSERT_TRUE(watch->Chunk(Event("MODIFIED", Node("11", "b")) + Bookmark("12")));
  ASSERT_TRUE(watch->EndChunks());

  auto rewatch = Expect(WatchPath("12"));  // not a list
  ASSERT_NE(rewatch, nullptr);
  EXPECT_EQ(reports_.Get().size(), 2u);
  ASSERT_TRUE(rewatch->StartChunked());
  ASSERT_TRUE(rewatch->Chunk(Event("DELETED", Node("13", "b"))));
  ASSERT_TRUE(reports_.WaitFor(3));
  EXPECT_FALSE(reports_.Get()[2].has_value());
  ASSERT_TRUE(rewatch->Chunk(Event("ADDED", Node("14", "c"))));
  ASSERT_TRUE(reports_.WaitFor(4));
  EXPECT_EQ(reports_.Get()[3], Node("14", "c"));

  ObjectWatcher::Stats stats = watcher.stats();
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_EQ(stats.watches, 2u);
  EXPECT_EQ(stats.errors, 0u);
  const SteadyClock::time_point stop_at = SteadyClock::now();
  watcher.Stop();
  EXPECT_LT(SteadyClock::now() - stop_at, 1s);
  EXPECT_TRUE(rewatch->WaitForClientClose());
  EXPECT_EQ(reports_.Get().size(), 4u);
}

TEST_F(ObjectWatcherTest, AnObjectThatDoesNotExistIsReportedAsNullopt) {
  ObjectWatcher watcher(client_, Options(), reports_.Callback());
  watcher.Start();
  auto list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(list->Respond(200, List("10", std::nullopt)));
  ASSERT_TRUE(reports_.WaitFor(1));
  EXPECT_TRUE(watcher.synced());
  EXPECT_FALSE(reports_.Get()[0].has_value());
  auto watch = Expect(WatchPath("10"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->StartChunked());
  ASSERT_TRUE(watch->Chunk(Event("ADDED", Node("11"))));
  ASSERT_TRUE(reports_.WaitFor(2));
  EXPECT_EQ(reports_.Get()[1], Node("11"));
}

TEST_F(ObjectWatcherTest, GoneListsAgainAtOnce) {
  for (bool as_event : {false, true}) {
    SCOPED_TRACE(as_event ? "an ERROR event with code 410" : "a 410 answer");
    Reports reports;
    // A backoff of 10 s or more would make the relist miss its 2 s below.
    ObjectWatcher watcher(client_, Options(), reports.Callback());
    watcher.Start();
    auto list = Expect(kListPath);
    ASSERT_NE(list, nullptr);
    ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
    auto watch = Expect(WatchPath("10"));
    ASSERT_NE(watch, nullptr);
    if (as_event) {
      ASSERT_TRUE(watch->StartChunked());
      ASSERT_TRUE(
          watch->Chunk(Event("MODIFIED", Node("11")) + Event("ERROR", json::parse(Gone()))));
    } else {
      ASSERT_TRUE(watch->Respond(410, Gone()));
    }
    auto relist = Expect(kListPath, 2s);
    ASSERT_NE(relist, nullptr);
    ASSERT_TRUE(relist->Respond(200, List("40", Node("30"))));
    auto rewatch = Expect(WatchPath("40"), 2s);
    ASSERT_NE(rewatch, nullptr);
    std::vector<std::string> versions;
    for (const auto& r : reports.Get()) versions.push_back(VersionOf(r));
    const std::vector<std::string> expected =
        as_event ? std::vector<std::string>{"9", "11", "30"} : std::vector<std::string>{"9", "30"};
    EXPECT_EQ(versions, expected);
    EXPECT_EQ(watcher.stats().lists, 2u);
    EXPECT_EQ(watcher.stats().errors, 0u);
  }
}

TEST_F(ObjectWatcherTest, GoneAgainBeforeAWatchWorkedBacksOff) {
  ObjectWatcher watcher(client_, Options(), reports_.Callback());
  watcher.Start();
  for (int i = 0; i < 2; ++i) {
    auto list = Expect(kListPath, 2s);
    ASSERT_NE(list, nullptr);
    ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
    auto watch = Expect(WatchPath("10"), 2s);
    ASSERT_NE(watch, nullptr);
    ASSERT_TRUE(watch->Respond(410, Gone()));
  }
  // The second Gone is an error: the watcher waits (at least 5 s) before it lists again.
  ASSERT_TRUE(WaitUntil([&] { return watcher.stats().errors == 1; }));
  EXPECT_EQ(server_.Accept(300ms), nullptr);
  const SteadyClock::time_point stop_at = SteadyClock::now();
  watcher.Stop();  // prompt in a backoff too
  EXPECT_LT(SteadyClock::now() - stop_at, 1s);
}

TEST_F(ObjectWatcherTest, AWatchEndedAtOnceWithoutAnEventBacksOff) {
  ObjectWatcher watcher(client_, Options(), reports_.Callback());
  watcher.Start();
  auto list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
  auto watch = Expect(WatchPath("10"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->StartChunked());
  ASSERT_TRUE(watch->EndChunks());
  ASSERT_TRUE(WaitUntil([&] { return watcher.stats().errors == 1; }));
  EXPECT_EQ(server_.Accept(300ms), nullptr);  // waiting out at least 5 s, not re-watching
}

TEST_F(ObjectWatcherTest, ErrorsBackOffThenRecoverLoggingOncePerRun) {
  ObjectWatcher watcher(client_, Options(300ms), reports_.Callback());
  ::testing::internal::CaptureStderr();
  watcher.Start();
  // The list fails: about backoff_initial (jittered down to half) before the next.
  auto list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(list->Respond(500, R"({"kind":"Status","message":"etcd is away","code":500})"));
  SteadyClock::time_point failed_at = SteadyClock::now();
  list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  EXPECT_GE(SteadyClock::now() - failed_at, 150ms);
  ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
  ASSERT_TRUE(reports_.WaitFor(1));
  // The watch is refused: the failures go on (the backoff doubles) and end
  // in a fresh list.
  auto watch = Expect(WatchPath("10"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->Respond(403, R"({"kind":"Status","reason":"Forbidden","code":403,)"
                                  R"("message":"nodes is forbidden: cannot watch"})"));
  failed_at = SteadyClock::now();
  list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  EXPECT_GE(SteadyClock::now() - failed_at, 300ms);
  ASSERT_TRUE(list->Respond(200, List("20", Node("9"))));
  watch = Expect(WatchPath("20"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->StartChunked());
  ASSERT_TRUE(watch->Chunk(Event("MODIFIED", Node("21", "b"))));
  ASSERT_TRUE(reports_.WaitFor(2));
  watcher.Stop();
  const std::string log = ::testing::internal::GetCapturedStderr();

  EXPECT_EQ(reports_.Get().size(), 2u);  // the relist found version 9 again: not reported
  ObjectWatcher::Stats stats = watcher.stats();
  EXPECT_EQ(stats.lists, 3u);
  EXPECT_EQ(stats.watches, 2u);
  EXPECT_EQ(stats.errors, 2u);
  // One warning for the run of two failures, one line for the recovery.
  auto count = [&](const std::string& text) {
    size_t n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("watch of an API object failed"), 1u) << log;
  EXPECT_THAT(log, HasSubstr("etcd is away"));
  EXPECT_EQ(count("watch of an API object recovered"), 1u) << log;
}

TEST_F(ObjectWatcherTest, StopIsPromptOnAnIdleWatch) {
  ObjectWatcher watcher(client_, Options(), reports_.Callback());
  watcher.Start();
  auto list = Expect(kListPath);
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(list->Respond(200, List("10", Node("9"))));
  auto watch = Expect(WatchPath("10"));
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->StartChunked());
  ASSERT_TRUE(watch->Chunk(Bookmark("11")));
  ASSERT_FALSE(watch->WaitForClientClose(100ms));  // the watch is open and idle
  const SteadyClock::time_point stop_at = SteadyClock::now();
  watcher.Stop();
  EXPECT_LT(SteadyClock::now() - stop_at, 1s);
  EXPECT_TRUE(watch->WaitForClientClose());
  watcher.Stop();  // idempotent
}

TEST(ObjectWatcherMockTest, AListWithoutAResourceVersionIsAnErrorAndNothingIsWatched) {
  StrictMock<MockApiClient> api;
  EXPECT_CALL(api, Get("/api/v1/namespaces/gpu/configmaps?fieldSelector=metadata.name%3Dplugin"))
      .WillRepeatedly(Return(json{{"kind", "ConfigMapList"}, {"items", json::array()}}));
  ObjectWatcher::Options o;
  o.collection_path = "/api/v1/namespaces/gpu/configmaps";
  o.name = "plugin";
  o.backoff_initial = 1ms;
  o.backoff_max = 2ms;
  int reported = 0;
  ObjectWatcher watcher(api, o, [&](const std::optional<json>&) { ++reported; });
  watcher.Start();
  ASSERT_TRUE(WaitUntil([&] { return watcher.stats().errors >= 3; }));
  watcher.Stop();
  EXPECT_FALSE(watcher.synced());
  EXPECT_EQ(reported, 0);
  EXPECT_EQ(watcher.stats().watches, 0u);  // StrictMock: a Watch would fail the test too
}

}  // namespace
}  // namespace gdp::kube
