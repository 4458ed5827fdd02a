#include "src/kube/api_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <vector>

#include "tests/mocks/mock_api_client.h"

namespace gdp::kube {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::StrictMock;

TEST(ContentTypeTest, OnePerPatchType) {
  EXPECT_STREQ(ContentType(PatchType::kJson), "application/json-patch+json");
  EXPECT_STREQ(ContentType(PatchType::kMerge), "application/merge-patch+json");
  EXPECT_STREQ(ContentType(PatchType::kStrategicMerge), "application/strategic-merge-patch+json");
  EXPECT_STREQ(ContentType(PatchType::kApply), "application/apply-patch+yaml");
}

TEST(EscapeQueryValueTest, KeepsUnreservedEscapesTheRest) {
  EXPECT_EQ(EscapeQueryValue("gpu-device-plugin_1.0~x"), "gpu-device-plugin_1.0~x");
  EXPECT_EQ(EscapeQueryValue("spec.nodeName=node a/b"), "spec.nodeName%3Dnode%20a%2Fb");
  EXPECT_EQ(EscapeQueryValue(""), "");
}

TEST(CodeForHttpStatusTest, Table) {
  struct Case {
    int http;
    const char* reason;
    absl::StatusCode code;
  };
  for (const Case& c : std::vector<Case>{
           {400, "BadRequest", absl::StatusCode::kInvalidArgument},
           {401, "Unauthorized", absl::StatusCode::kUnauthenticated},
           {403, "Forbidden", absl::StatusCode::kPermissionDenied},
           {404, "NotFound", absl::StatusCode::kNotFound},
           {409, "AlreadyExists", absl::StatusCode::kAlreadyExists},
           {409, "Conflict", absl::StatusCode::kAborted},
           {410, "Expired", absl::StatusCode::kFailedPrecondition},
           {422, "Invalid", absl::StatusCode::kInvalidArgument},
           {429, "TooManyRequests", absl::StatusCode::kResourceExhausted},
           {500, "", absl::StatusCode::kUnavailable},
           {503, "ServiceUnavailable", absl::StatusCode::kUnavailable},
           {504, "Timeout", absl::StatusCode::kDeadlineExceeded},
           {418, "", absl::StatusCode::kUnknown},
       }) {
    EXPECT_EQ(CodeForHttpStatus(c.http, c.reason), c.code) << c.http << " " << c.reason;
  }
}

TEST(ErrorFromResponseTest, UsesTheApiStatusMessageAndAHint) {
  const char* body = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
    "message":"nodes \"n1\" is forbidden: User \"system:serviceaccount:gpu:gdp\" cannot patch",
    "reason":"Forbidden","code":403})";
  absl::Status s = ErrorFromResponse("PATCH", "https://a:6443/api/v1/nodes/n1", 403, body);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "PATCH https://a:6443/api/v1/nodes/n1: HTTP 403 (Forbidden): nodes \"n1\" is "
            "forbidden: User \"system:serviceaccount:gpu:gdp\" cannot patch; check the RBAC "
            "rules (ClusterRole and binding) of the service account");
}

TEST(ErrorFromResponseTest, QuotesABodyThatIsNotAStatus) {
  absl::Status s = ErrorFromResponse("GET", "http://x/api", 502, "<html>bad gateway</html>");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("GET http://x/api: HTTP 502: \"<html>bad gateway</html>\""));
  EXPECT_THAT(ErrorFromResponse("GET", "http://x/api", 404, "").message(),
              HasSubstr("HTTP 404: empty body"));
  std::string long_body(1000, 'x');
  EXPECT_LT(ErrorFromResponse("GET", "u", 500, long_body).message().size(), 300u);
}

TEST(ErrorFromResponseTest, CarriesTheHttpStatusSoGoneIsExact) {
  absl::Status gone = ErrorFromResponse(
      "GET", "u", 410,
      R"j({"kind":"Status","reason":"Expired","message":"too old resource version: 1 (20)",)j"
      R"j("code":410})j");
  EXPECT_EQ(gone.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(HttpStatusOf(gone), 410);
  EXPECT_TRUE(IsGone(gone));
  EXPECT_THAT(gone.message(), HasSubstr("HTTP 410 (Expired): too old resource version: 1 (20); "
                                        "the resourceVersion is too old, list again"));

  absl::Status forbidden = ErrorFromResponse("GET", "u", 403, "");
  EXPECT_EQ(HttpStatusOf(forbidden), 403);
  EXPECT_FALSE(IsGone(forbidden));
  // The same code without an HTTP answer behind it (a TLS setup error) is not Gone.
  EXPECT_FALSE(IsGone(absl::FailedPreconditionError("TLS: certificate verify failed")));
  EXPECT_EQ(HttpStatusOf(absl::OkStatus()), 0);
}

bool Readable(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

TEST(WatchCancelTest, CancelIsStickyAndMakesTheFdReadable) {
  WatchCancel cancel;
  ASSERT_GE(cancel.fd(), 0);
  EXPECT_FALSE(cancel.cancelled());
  EXPECT_FALSE(Readable(cancel.fd()));
  cancel.Cancel();
  cancel.Cancel();
  EXPECT_TRUE(cancel.cancelled());
  EXPECT_TRUE(Readable(cancel.fd()));
  EXPECT_TRUE(Readable(cancel.fd()));  // still: later watches see it too
}

// A client that implements only the request-response calls.
class NoWatchClient : public ApiClient {
 public:
  absl::StatusOr<nlohmann::json> Get(const std::string&) override { return nlohmann::json(); }
  absl::StatusOr<nlohmann::json> Post(const std::string&, const nlohmann::json&) override {
    return nlohmann::json();
  }
  absl::StatusOr<nlohmann::json> Patch(const std::string&, PatchType, const nlohmann::json&,
                                       const PatchOptions&) override {
    return nlohmann::json();
  }
};

TEST(ApiClientTest, WatchIsUnimplementedUnlessOverridden) {
  NoWatchClient client;
  WatchCancel cancel;
  absl::Status s = client.Watch(
      "/api/v1/nodes?watch=true", [](const WatchEvent&) { return true; }, cancel,
      std::chrono::seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("GET /api/v1/nodes?watch=true"));
}

TEST(MockApiClientTest, WatchCanFeedEvents) {
  StrictMock<MockApiClient> api;
  EXPECT_CALL(api, Watch("/w", _, _, std::chrono::milliseconds(5000)))
      .WillOnce([](const std::string&, const ApiClient::WatchCallback& on_event, const WatchCancel&,
                   std::chrono::milliseconds) {
        on_event(WatchEvent{"ADDED", {{"kind", "Node"}}});
        return absl::OkStatus();
      });
  std::vector<std::string> seen;
  WatchCancel cancel;
  EXPECT_TRUE(api.Watch(
                     "/w",
                     [&](const WatchEvent& e) {
                       seen.push_back(e.type);
                       return true;
                     },
                     cancel, std::chrono::seconds(5))
                  .ok());
  EXPECT_EQ(seen, std::vector<std::string>{"ADDED"});
}

}  // namespace
}  // namespace gdp::kube
