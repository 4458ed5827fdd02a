#include "src/kube/api_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gdp::kube {
namespace {

using ::testing::HasSubstr;

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

}  // namespace
}  // namespace gdp::kube
