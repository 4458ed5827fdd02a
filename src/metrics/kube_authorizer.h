// KubeAuthorizer: the HTTP endpoint's RequestAuthorizer against the Kubernetes
// API server, checking a caller the way the kubelet's own endpoints and
// kube-rbac-proxy do. The bearer token goes to a TokenReview
// (authentication.k8s.io/v1); the user it names goes to a SubjectAccessReview
// (authorization.k8s.io/v1) for verb "get" on the request's path as a
// non-resource URL, so the RBAC rule
//   - nonResourceURLs: ["/metrics"]
//     verbs: ["get"]
// lets a ServiceAccount scrape. The daemon's own identity needs to create both
// reviews (the built-in ClusterRole system:auth-delegator grants exactly that).
//
// Answers are cached so a scrape every 15 s costs the API server nothing after
// the first: a valid token's user and an allowed path for Options::allowed_ttl,
// a token that is not valid and a refused path for denied_ttl (shorter, so an
// RBAC fix takes effect soon). An API server error is not cached: that request
// gets a 503 and the next one asks again. Tokens are held only as their
// SHA-256. At most max_tokens tokens are cached; past that the ones that expire
// soonest are dropped.
//
// Also a Collector ("http_auth"): reviews made, by kind and answer, and cache hits.
// Thread-safe; `api` and `clock` must outlive it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/common/clock.h"
#include "src/kube/api_client.h"
#include "src/metrics/http_server.h"
#include "src/metrics/sampler.h"

namespace gdp::metrics {

class KubeAuthorizer final : public RequestAuthorizer, public Collector {
 public:
  struct Options {
    std::chrono::seconds allowed_ttl{120};
    std::chrono::seconds denied_ttl{10};
    size_t max_tokens = 1024;
  };
  struct Counts {
    uint64_t token_reviews = 0;   // TokenReviews created
    uint64_t access_reviews = 0;  // SubjectAccessReviews created
    uint64_t review_errors = 0;   // reviews the API server did not answer
    uint64_t cache_hits = 0;      // requests decided from the cache
  };

  KubeAuthorizer(kube::ApiClient& api, const Clock& clock, Options options);

  std::optional<Decision> Cached(std::string_view token, std::string_view path) override;
  Decision Authorize(std::string_view token, std::string_view path) override;
  Counts counts() const;

  std::string Name() const override { return "http_auth"; }
  absl::Status Collect(std::vector<MetricFamily>* out) override;

 private:
  using Key = std::array<unsigned char, 32>;  // SHA-256 of the token
  struct PathDecision {
    Clock::TimePoint expires;
    Decision decision;
  };
  struct Identity {
    Clock::TimePoint expires;
    bool valid = false;
    std::string error;    // why the token is not valid
    nlohmann::json user;  // status.user of the TokenReview
    std::map<std::string, PathDecision, std::less<>> paths;
  };

  // The cached decision; mu_ held.
  std::optional<Decision> Lookup(const Key& key, std::string_view path);
  // Makes room for one more token; mu_ held.
  void Trim();
  // The 503 for a review the API server did not answer, counted and logged; mu_ held.
  Decision UnansweredLocked(const absl::Status& error, const char* kind, const char* resource);

  kube::ApiClient& api_;
  const Clock& clock_;
  const Options options_;
  mutable std::mutex mu_;
  std::map<Key, Identity> tokens_;
  Counts counts_;
};

}  // namespace gdp::metrics
