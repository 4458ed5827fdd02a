#include "src/metrics/kube_authorizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/mocks/fake_clock.h"
#include "tests/mocks/mock_api_client.h"

namespace gdp::metrics {
namespace {

using nlohmann::json;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;

constexpr char kTokenReviews[] = "/apis/authentication.k8s.io/v1/tokenreviews";
constexpr char kAccessReviews[] = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

json Authenticated(const std::string& user) {
  return {{"status",
           {{"authenticated", true},
            {"user",
             {{"username", user},
              {"uid", "u-1"},
              {"groups", {"system:serviceaccounts", "system:authenticated"}},
              {"extra", {{"authentication.kubernetes.io/pod-name", {"prometheus-0"}}}}}}}}};
}

json Allowed(bool allowed, const std::string& reason = "") {
  json status = {{"allowed", allowed}};
  if (!reason.empty()) status["reason"] = reason;
  return {{"status", status}};
}

class KubeAuthorizerTest : public ::testing::Test {
 protected:
  StrictMock<kube::MockApiClient> api_;
  FakeClock clock_;
  KubeAuthorizer auth_{api_, clock_, {std::chrono::seconds(120), std::chrono::seconds(10), 3}};
};

TEST_F(KubeAuthorizerTest, AnAllowedCallerIsReviewedOnceAndThenServedFromTheCache) {
  const std::string sa = "system:serviceaccount:monitoring:prometheus";
  EXPECT_CALL(api_, Post(kTokenReviews, _)).WillOnce([&](const std::string&, const json& body) {
    EXPECT_EQ(body["kind"], "TokenReview");
    EXPECT_EQ(body["spec"]["token"], "t0k3n");
    return absl::StatusOr<json>(Authenticated(sa));
  });
  EXPECT_CALL(api_, Post(kAccessReviews, _)).WillOnce([&](const std::string&, const json& body) {
    // The user exactly as the TokenReview named it, and the path as a non-resource URL.
    EXPECT_EQ(body["kind"], "SubjectAccessReview");
    EXPECT_EQ(body["spec"]["user"], sa);
    EXPECT_EQ(body["spec"]["uid"], "u-1");
    EXPECT_EQ(body["spec"]["groups"][0], "system:serviceaccounts");
    EXPECT_EQ(body["spec"]["extra"]["authentication.kubernetes.io/pod-name"][0], "prometheus-0");
    EXPECT_EQ(body["spec"]["nonResourceAttributes"], (json{{"path", "/metrics"}, {"verb", "get"}}));
    return absl::StatusOr<json>(Allowed(true));
  });
  EXPECT_FALSE(auth_.Cached("t0k3n", "/metrics").has_value());
  EXPECT_EQ(auth_.Authorize("t0k3n", "/metrics").status, 200);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(auth_.Cached("t0k3n", "/metrics").has_value());
    EXPECT_EQ(auth_.Cached("t0k3n", "/metrics")->status, 200);
  }
  clock_.Advance(std::chrono::seconds(119));
  EXPECT_TRUE(auth_.Cached("t0k3n", "/metrics").has_value());
  const KubeAuthorizer::Counts c = auth_.counts();
  EXPECT_EQ(c.token_reviews, 1U);
  EXPECT_EQ(c.access_reviews, 1U);
  EXPECT_EQ(c.cache_hits, 11U);
  // Past the TTL it is asked again.
  clock_.Advance(std::chrono::seconds(2));
  EXPECT_FALSE(auth_.Cached("t0k3n", "/metrics").has_value());
}

TEST_F(KubeAuthorizerTest, AnotherPathOfAKnownTokenIsOnlyAnAccessReview) {
  EXPECT_CALL(api_, Post(kTokenReviews, _)).WillOnce(Return(Authenticated("alice")));
  EXPECT_CALL(api_, Post(kAccessReviews, _))
      .WillOnce(Return(Allowed(true)))
      .WillOnce(Return(Allowed(false, "no RBAC policy matched")));
  EXPECT_EQ(auth_.Authorize("t", "/metrics").status, 200);
  const RequestAuthorizer::Decision d = auth_.Authorize("t", "/allocations");
  EXPECT_EQ(d.status, 403);
  EXPECT_THAT(d.reason, HasSubstr("alice may not get /allocations (no RBAC policy matched)"));
  EXPECT_THAT(d.reason, HasSubstr("nonResourceURLs: [\"/allocations\"]"));
  // Refusals are kept for the shorter TTL.
  ASSERT_TRUE(auth_.Cached("t", "/allocations").has_value());
  EXPECT_EQ(auth_.Cached("t", "/allocations")->status, 403);
  clock_.Advance(std::chrono::seconds(11));
  EXPECT_FALSE(auth_.Cached("t", "/allocations").has_value());
  EXPECT_TRUE(auth_.Cached("t", "/metrics").has_value());
}

TEST_F(KubeAuthorizerTest, ATokenThatIsNotValidIs401ForTheShortTtl) {
  EXPECT_CALL(api_, Post(kTokenReviews, _))
      .Times(2)
      .WillRepeatedly(
          Return(json{{"status", {{"authenticated", false}, {"error", "token has expired"}}}}));
  const RequestAuthorizer::Decision d = auth_.Authorize("old", "/metrics");
  EXPECT_EQ(d.status, 401);
  EXPECT_THAT(d.reason, HasSubstr("token has expired"));
  ASSERT_TRUE(auth_.Cached("old", "/inventory").has_value()) << "any path: the token is bad";
  EXPECT_EQ(auth_.Cached("old", "/inventory")->status, 401);
  clock_.Advance(std::chrono::seconds(10));
  EXPECT_FALSE(auth_.Cached("old", "/metrics").has_value());
  EXPECT_EQ(auth_.Authorize("old", "/metrics").status, 401);
}

TEST_F(KubeAuthorizerTest, AnApiServerErrorIs503AndNotCached) {
  EXPECT_CALL(api_, Post(kTokenReviews, _))
      .WillOnce(Return(absl::PermissionDeniedError(
          "POST .../tokenreviews: HTTP 403 (Forbidden): cannot create tokenreviews")))
      .WillOnce(Return(Authenticated("alice")));
  EXPECT_CALL(api_, Post(kAccessReviews, _))
      .WillOnce(Return(absl::UnavailableError("connection refused")))
      .WillOnce(Return(Allowed(true)));
  RequestAuthorizer::Decision d = auth_.Authorize("t", "/metrics");
  EXPECT_EQ(d.status, 503);
  EXPECT_THAT(d.reason, HasSubstr("cannot create tokenreviews"));
  EXPECT_FALSE(auth_.Cached("t", "/metrics").has_value());
  d = auth_.Authorize("t", "/metrics");
  EXPECT_EQ(d.status, 503);
  EXPECT_THAT(d.reason, HasSubstr("connection refused"));
  EXPECT_EQ(auth_.Authorize("t", "/metrics").status, 200) << "the identity was kept";
  EXPECT_EQ(auth_.counts().review_errors, 2U);
  EXPECT_EQ(auth_.counts().token_reviews, 2U);
}

TEST_F(KubeAuthorizerTest, TheCacheHoldsAtMostMaxTokens) {
  EXPECT_CALL(api_, Post(kTokenReviews, _)).Times(5).WillRepeatedly(Return(Authenticated("bob")));
  EXPECT_CALL(api_, Post(kAccessReviews, _)).Times(5).WillRepeatedly(Return(Allowed(true)));
  for (const char* t : {"a", "b", "c", "d"}) {
    EXPECT_EQ(auth_.Authorize(t, "/metrics").status, 200);
    clock_.Advance(std::chrono::seconds(1));
  }
  // Three kept: "a", the one to expire first, made room for "d".
  EXPECT_FALSE(auth_.Cached("a", "/metrics").has_value());
  for (const char* t : {"b", "c", "d"}) EXPECT_TRUE(auth_.Cached(t, "/metrics").has_value()) << t;
  EXPECT_EQ(auth_.Authorize("a", "/metrics").status, 200);
}

TEST_F(KubeAuthorizerTest, CountsAreExported) {
  EXPECT_CALL(api_, Post(kTokenReviews, _)).WillOnce(Return(Authenticated("bob")));
  EXPECT_CALL(api_, Post(kAccessReviews, _)).WillOnce(Return(Allowed(true)));
  auth_.Authorize("t", "/metrics");
  auth_.Cached("t", "/metrics");
  std::vector<MetricFamily> families;
  ASSERT_TRUE(auth_.Collect(&families).ok());
  const std::string text = Render(families);
  EXPECT_THAT(text, HasSubstr("gdp_http_auth_reviews_total{review=\"token\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gdp_http_auth_reviews_total{review=\"access\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gdp_http_auth_cache_hits_total 1\n"));
  EXPECT_THAT(text, HasSubstr("gdp_http_auth_review_errors_total 0\n"));
}

}  // namespace
}  // namespace gdp::metrics
