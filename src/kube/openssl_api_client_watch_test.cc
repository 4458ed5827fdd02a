// OpenSslApiClient::Watch against a ScriptedServer on 127.0.0.1 that writes
// each response by hand, piece by piece, while the watch runs on its own
// thread.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/kube/openssl_api_client.h"
#include "src/kube/scripted_server.h"

namespace gdp::kube {
namespace {

using test_util::BackgroundWatch;
using test_util::ScriptedServer;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kPath[] =
    "/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dn1&resourceVersion=5";

// One line of a watch stream, with its newline.
std::string Event(const char* type, int resource_version) {
  return absl::StrCat(R"({"type":")", type,
                      R"(","object":{"kind":"Node","metadata":{"name":"n1","resourceVersion":")",
                      resource_version, "\"}}}\n");
}

std::string VersionOf(const WatchEvent& e) {
  return e.object["metadata"]["resourceVersion"].get<std::string>();
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }

  RestConfig Config(std::chrono::milliseconds timeout = 30s) {
    RestConfig c;
    c.server = server_.url();
    c.token = "s3cret";
    c.source = "test";
    c.timeout = timeout;
    return c;
  }

  ScriptedServer server_;
};

TEST_F(WatchTest, DeliversEachEventAsItArrivesOverChunks) {
  OpenSslApiClient client(Config());
  BackgroundWatch watch(client, kPath, 30s);
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->method(), "GET");
  EXPECT_EQ(conn->target(), kPath);
  EXPECT_THAT(conn->head(), HasSubstr("\r\nAuthorization: Bearer s3cret"));
  ASSERT_TRUE(conn->StartChunked());
  ASSERT_TRUE(conn->Chunk(Event("ADDED", 6)));
  // Delivered while the stream is open and nothing more has been written.
  ASSERT_TRUE(watch.WaitForEvents(1));
  EXPECT_FALSE(watch.done());
  // A line split across chunks, then two lines in one chunk.
  const std::string modified = Event("MODIFIED", 7);
  ASSERT_TRUE(conn->Chunk(modified.substr(0, 10)));
  ASSERT_TRUE(conn->Chunk(modified.substr(10) + "\r\n" + Event("DELETED", 8)));
  ASSERT_TRUE(watch.WaitForEvents(3));
  EXPECT_FALSE(watch.done());
  ASSERT_TRUE(conn->EndChunks());
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  std::vector<WatchEvent> events = watch.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "ADDED");
  EXPECT_EQ(VersionOf(events[0]), "6");
  EXPECT_EQ(events[1].type, "MODIFIED");
  EXPECT_EQ(VersionOf(events[1]), "7");
  EXPECT_EQ(events[2].type, "DELETED");
  EXPECT_EQ(VersionOf(events[2]), "8");
}

TEST_F(WatchTest, DeliversAStreamThatEndsWithTheConnection) {
  OpenSslApiClient client(Config());
  BackgroundWatch watch(client, kPath, 30s);
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"));
  ASSERT_TRUE(conn->Write(Event("ADDED", 6)));
  ASSERT_TRUE(watch.WaitForEvents(1));
  EXPECT_FALSE(watch.done());
  std::string bookmark = Event("BOOKMARK", 9);
  bookmark.pop_back();  // the last line need not end with a newline
  ASSERT_TRUE(conn->Write(bookmark));
  conn->Close();
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  std::vector<WatchEvent> events = watch.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, "BOOKMARK");
  EXPECT_EQ(VersionOf(events[1]), "9");
}

TEST_F(WatchTest, DeliversAStreamWithAContentLength) {
  OpenSslApiClient client(Config());
  BackgroundWatch watch(client, kPath, 30s);
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Respond(200, Event("ADDED", 6) + Event("MODIFIED", 7)));
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  EXPECT_EQ(watch.events().size(), 2u);
}

TEST_F(WatchTest, CancelReturnsPromptlyWhereverTheWatchIsBlocked) {
  for (bool head_sent : {false, true}) {
    SCOPED_TRACE(head_sent ? "on an idle stream" : "waiting for the response head");
    OpenSslApiClient client(Config(60s));
    BackgroundWatch watch(client, kPath, 60s);
    auto conn = server_.Accept();
    ASSERT_NE(conn, nullptr);
    if (head_sent) {
      ASSERT_TRUE(conn->StartChunked());
      ASSERT_TRUE(conn->Chunk(Event("ADDED", 6)));
      ASSERT_TRUE(watch.WaitForEvents(1));  // the head has been read
    }
    EXPECT_FALSE(watch.done());
    const SteadyClock::time_point cancelled_at = SteadyClock::now();
    watch.cancel().Cancel();
    std::optional<absl::Status> result = watch.WaitForResult();
    const auto took = SteadyClock::now() - cancelled_at;
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), absl::StatusCode::kCancelled) << *result;
    EXPECT_THAT(result->message(), HasSubstr(absl::StrCat("GET ", server_.url(), kPath)));
    EXPECT_LT(took, 1s);  // promised: about 100 ms
    EXPECT_TRUE(conn->WaitForClientClose());
  }
}

TEST_F(WatchTest, AWatchCancelledBeforeItStartsDoesNotConnect) {
  OpenSslApiClient client(Config());
  WatchCancel cancel;
  cancel.Cancel();
  absl::Status s = client.Watch(
      kPath, [](const WatchEvent&) { return true; }, cancel, 30s);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(server_.Accept(200ms), nullptr);
}

TEST_F(WatchTest, ANon2xxAnswerIsTheErrorGetGives) {
  struct Case {
    int http;
    std::string body;
    absl::StatusCode code;
    const char* message;
    bool gone;
  };
  const Case cases[] = {
      {403,
       R"({"kind":"Status","reason":"Forbidden","message":"nodes is forbidden: cannot watch",)"
       R"("code":403})",
       absl::StatusCode::kPermissionDenied,
       "HTTP 403 (Forbidden): nodes is forbidden: cannot watch", false},
      {410,
       R"j({"kind":"Status","reason":"Expired","message":"too old resource version: 5 (90)",)j"
       R"j("code":410})j",
       absl::StatusCode::kFailedPrecondition,
       "HTTP 410 (Expired): too old resource version: 5 (90)", true},
      {500, "<html>oops</html>", absl::StatusCode::kUnavailable, "HTTP 500: \"<html>oops</html>\"",
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.http);
    OpenSslApiClient client(Config());
    BackgroundWatch watch(client, kPath, 30s);
    auto conn = server_.Accept();
    ASSERT_NE(conn, nullptr);
    ASSERT_TRUE(conn->Respond(c.http, c.body));
    std::optional<absl::Status> result = watch.WaitForResult();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), c.code) << *result;
    EXPECT_THAT(result->message(),
                HasSubstr(absl::StrCat("GET ", server_.url(), kPath, ": ", c.message)));
    EXPECT_EQ(IsGone(*result), c.gone);
    EXPECT_EQ(HttpStatusOf(*result), c.http);
    EXPECT_TRUE(watch.events().empty());
  }
}

TEST_F(WatchTest, ALineThatIsNotAWatchEventIsAnErrorNamingIt) {
  for (const char* bad : {"not json", "[1,2]", R"({"object":{}})", R"({"type":7})"}) {
    SCOPED_TRACE(bad);
    OpenSslApiClient client(Config());
    BackgroundWatch watch(client, kPath, 30s);
    auto conn = server_.Accept();
    ASSERT_NE(conn, nullptr);
    ASSERT_TRUE(conn->StartChunked());
    ASSERT_TRUE(conn->Chunk(Event("ADDED", 6) + bad + "\n" + Event("MODIFIED", 7)));
    std::optional<absl::Status> result = watch.WaitForResult();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), absl::StatusCode::kInternal) << *result;
    EXPECT_THAT(
        result->message(),
        HasSubstr(absl::StrCat("a line of the watch stream is not a watch event: \"", bad, "\"")));
    EXPECT_EQ(watch.events().size(), 1u);  // what came before it, not after
  }
}

TEST_F(WatchTest, AStreamCutOffMidChunkIsAnError) {
  OpenSslApiClient client(Config());
  BackgroundWatch watch(client, kPath, 30s);
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->StartChunked());
  ASSERT_TRUE(conn->Write("40\r\n{\"type\":\"ADD"));
  conn->Close();
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kUnavailable) << *result;
  EXPECT_THAT(result->message(), HasSubstr("the watch stream broke off"));
}

TEST_F(WatchTest, ACallbackAnsweringFalseClosesTheWatch) {
  OpenSslApiClient client(Config());
  BackgroundWatch watch(client, kPath, 30s, [](const WatchEvent&) { return false; });
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->StartChunked());
  ASSERT_TRUE(conn->Chunk(Event("ADDED", 6) + Event("MODIFIED", 7)));
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  EXPECT_EQ(watch.events().size(), 1u);
  EXPECT_TRUE(conn->WaitForClientClose());  // though the server never ended the stream
}

TEST_F(WatchTest, TheRequestTimeoutBoundsTheHeadAndTheWatchTimeoutTheStream) {
  // The head: the request timeout applies.
  {
    OpenSslApiClient client(Config(200ms));
    BackgroundWatch watch(client, kPath, 30s);
    auto conn = server_.Accept();
    ASSERT_NE(conn, nullptr);
    std::optional<absl::Status> result = watch.WaitForResult();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), absl::StatusCode::kDeadlineExceeded) << *result;
  }
  // The stream: it outlives the request timeout, and ends normally at the
  // watch timeout.
  OpenSslApiClient client(Config(100ms));
  const SteadyClock::time_point start = SteadyClock::now();
  BackgroundWatch watch(client, kPath, 1500ms);
  auto conn = server_.Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->StartChunked());
  EXPECT_FALSE(conn->WaitForClientClose(400ms));  // well past the 100 ms request timeout
  ASSERT_TRUE(conn->Chunk(Event("ADDED", 6)));
  ASSERT_TRUE(watch.WaitForEvents(1));
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  EXPECT_GE(SteadyClock::now() - start, 1500ms);
  EXPECT_TRUE(conn->WaitForClientClose());
}

}  // namespace
}  // namespace gdp::kube
