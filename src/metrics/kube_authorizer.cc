#include "src/metrics/kube_authorizer.h"

#include <openssl/sha.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace gdp::metrics {

namespace {

using nlohmann::json;

constexpr char kTokenReviews[] = "/apis/authentication.k8s.io/v1/tokenreviews";
constexpr char kAccessReviews[] = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

std::array<unsigned char, 32> Hash(std::string_view token) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), out.data());
  return out;
}

std::string UserName(const json& user) {
  const json* name = user.is_object() && user.contains("username") ? &user["username"] : nullptr;
  return name != nullptr && name->is_string() ? name->get<std::string>() : "(no name)";
}

const json* Field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string StringField(const json& j, const char* key) {
  const json* v = Field(j, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

bool IsTrue(const json& j, const char* key) {
  const json* v = Field(j, key);
  return v != nullptr && v->is_boolean() && v->get<bool>();
}

json Object(const json& j, const char* key) {
  const json* v = Field(j, key);
  return v != nullptr && v->is_object() ? *v : json::object();
}

json Review(const char* api_version, const char* kind, json spec) {
  return {{"apiVersion", api_version}, {"kind", kind}, {"spec", std::move(spec)}};
}

}  // namespace

KubeAuthorizer::KubeAuthorizer(kube::ApiClient& api, const Clock& clock, Options options)
    : api_(api), clock_(clock), options_(options) {}

std::optional<RequestAuthorizer::Decision> KubeAuthorizer::Lookup(const Key& key,
                                                                  std::string_view path) {
  auto it = tokens_.find(key);
  const Clock::TimePoint now = clock_.Now();
  if (it == tokens_.end() || it->second.expires <= now) return std::nullopt;
  if (!it->second.valid) return Decision{401, "the token is not valid: " + it->second.error};
  auto p = it->second.paths.find(path);
  if (p == it->second.paths.end() || p->second.expires <= now) return std::nullopt;
  return p->second.decision;
}

std::optional<RequestAuthorizer::Decision> KubeAuthorizer::Cached(std::string_view token,
                                                                  std::string_view path) {
  const Key key = Hash(token);
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<Decision> d = Lookup(key, path);
  if (d) ++counts_.cache_hits;
  return d;
}

void KubeAuthorizer::Trim() {
  if (tokens_.size() < options_.max_tokens) return;
  const Clock::TimePoint now = clock_.Now();
  std::erase_if(tokens_, [now](const auto& entry) { return entry.second.expires <= now; });
  while (tokens_.size() >= options_.max_tokens) {
    tokens_.erase(std::min_element(
        tokens_.begin(), tokens_.end(),
        [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; }));
  }
}

RequestAuthorizer::Decision KubeAuthorizer::Authorize(std::string_view token,
                                                      std::string_view path) {
  const Key key = Hash(token);
  json user;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::optional<Decision> d = Lookup(key, path); d) {
      ++counts_.cache_hits;  // decided meanwhile (another request with the same token)
      return *d;
    }
    auto it = tokens_.find(key);
    if (it != tokens_.end() && it->second.valid && it->second.expires > clock_.Now()) {
      user = it->second.user;
    }
  }

  // Who is it? (The API server's own audiences: a service-account token as a
  // Pod gets it, or one from `kubectl create token`.)
  if (user.is_null()) {
    absl::StatusOr<json> answer = api_.Post(
        kTokenReviews,
        Review("authentication.k8s.io/v1", "TokenReview", {{"token", std::string(token)}}));
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.token_reviews;
    if (!answer.ok()) return UnansweredLocked(answer.status(), "TokenReview", "tokenreviews");
    const json status = Object(*answer, "status");
    Trim();
    Identity& id = tokens_[key];
    id = Identity{};
    if (!IsTrue(status, "authenticated")) {
      id.expires = clock_.Now() + options_.denied_ttl;
      id.error = StringField(status, "error");
      if (id.error.empty()) id.error = "the API server did not authenticate it";
      return Decision{401, "the token is not valid: " + id.error};
    }
    id.valid = true;
    id.expires = clock_.Now() + options_.allowed_ttl;
    id.user = Object(status, "user");
    user = id.user;
  }

  // May they read this path?
  json spec = {{"user", StringField(user, "username")},
               {"nonResourceAttributes", {{"path", std::string(path)}, {"verb", "get"}}}};
  if (std::string uid = StringField(user, "uid"); !uid.empty()) spec["uid"] = uid;
  if (const json* groups = Field(user, "groups"); groups != nullptr && groups->is_array()) {
    spec["groups"] = *groups;
  }
  if (const json* extra = Field(user, "extra"); extra != nullptr && extra->is_object()) {
    spec["extra"] = *extra;
  }
  absl::StatusOr<json> answer = api_.Post(
      kAccessReviews, Review("authorization.k8s.io/v1", "SubjectAccessReview", std::move(spec)));
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_.access_reviews;
  if (!answer.ok()) {
    return UnansweredLocked(answer.status(), "SubjectAccessReview", "subjectaccessreviews");
  }
  const json status = Object(*answer, "status");
  Decision d;
  std::chrono::seconds ttl = options_.allowed_ttl;
  if (!IsTrue(status, "allowed")) {
    const std::string reason = StringField(status, "reason");
    const std::string p(path);
    d = Decision{403, UserName(user) + " may not get " + p +
                          (reason.empty() ? "" : " (" + reason + ")") +
                          "; grant it with a ClusterRole rule nonResourceURLs: [\"" + p +
                          "\"], verbs: [\"get\"]"};
    ttl = options_.denied_ttl;
  }
  // The identity may have been dropped meanwhile (Trim): then the answer is not kept.
  if (auto it = tokens_.find(key); it != tokens_.end() && it->second.valid) {
    it->second.paths[std::string(path)] = PathDecision{clock_.Now() + ttl, d};
  }
  return d;
}

RequestAuthorizer::Decision KubeAuthorizer::UnansweredLocked(const absl::Status& error,
                                                             const char* kind,
                                                             const char* resource) {
  ++counts_.review_errors;
  log::Warn(absl::StrCat("http endpoint: cannot check a caller (", kind, ")"),
            {{"error", error.message()},
             {"fix", absl::StrCat("the daemon's service account needs create on ", resource,
                                  " (ClusterRole system:auth-delegator)")}});
  return Decision{503, absl::StrCat("cannot check the caller with the API server (", kind,
                                    "): ", error.message())};
}

KubeAuthorizer::Counts KubeAuthorizer::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

absl::Status KubeAuthorizer::Collect(std::vector<MetricFamily>* out) {
  const Counts c = counts();
  out->push_back(MetricFamily{"gdp_http_auth_reviews_total",
                              "TokenReviews and SubjectAccessReviews the HTTP endpoint created "
                              "to check callers, by review.",
                              MetricType::kCounter,
                              {}}
                     .Add({{"review", "token"}}, static_cast<double>(c.token_reviews))
                     .Add({{"review", "access"}}, static_cast<double>(c.access_reviews)));
  out->push_back(MetricFamily{
      "gdp_http_auth_review_errors_total",
      "Reviews the API server did not answer (the request got a 503).",
      MetricType::kCounter,
      {}}.Add({}, static_cast<double>(c.review_errors)));
  out->push_back(MetricFamily{
      "gdp_http_auth_cache_hits_total",
      "Requests to a guarded path decided from the cache, without a "
      "review.",
      MetricType::kCounter,
      {}}.Add({}, static_cast<double>(c.cache_hits)));
  return absl::OkStatus();
}

}  // namespace gdp::metrics
