// ApiClient: the seam between the daemon (and its tools) and the Kubernetes
// API server. The API server is plain HTTPS + JSON; the users of this seam
// (the node labeller, node events, `doctor`, `kubectl-gpu`) own an ApiClient&
// and tests hand them a GoogleMock of it (tests/mocks/mock_api_client.h).
//
// Paths are API paths with their query string already escaped
// ("/api/v1/nodes/node-a", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a";
// EscapeQueryValue() helps). Every call is one request, answered with the
// decoded JSON body or a Status that names the method, the URL, the HTTP status
// and the API server's own Status message.
//
// Implementations must be thread-safe (OpenSslApiClient is).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gdp::kube {

enum class PatchType {
  kJson,            // application/json-patch+json (RFC 6902)
  kMerge,           // application/merge-patch+json (RFC 7386)
  kStrategicMerge,  // application/strategic-merge-patch+json
  kApply,           // application/apply-patch+yaml: server-side apply (needs a field manager)
};

// The Content-Type header for a patch type.
const char* ContentType(PatchType type);

struct PatchOptions {
  // The field manager (required by kApply; optional otherwise). Server-side
  // apply removes the fields this manager applied before and leaves out now,
  // and never touches fields owned by other managers.
  std::string field_manager;
  // kApply only: take ownership of fields another manager owns instead of
  // failing with a conflict.
  bool force = false;
};

class ApiClient {
 public:
  virtual ~ApiClient() = default;
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& path) = 0;
  virtual absl::StatusOr<nlohmann::json> Post(const std::string& path,
                                              const nlohmann::json& body) = 0;
  virtual absl::StatusOr<nlohmann::json> Patch(const std::string& path, PatchType type,
                                               const nlohmann::json& body,
                                               const PatchOptions& options) = 0;
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
std::string EscapeQueryValue(std::string_view value);

// The absl code for an HTTP status of the API server: 400/422 InvalidArgument,
// 401 Unauthenticated, 403 PermissionDenied, 404 NotFound, 409 AlreadyExists
// (or Aborted for a conflict of resourceVersion), 429 ResourceExhausted,
// 500/503 Unavailable, 504 DeadlineExceeded, anything else Unknown.
absl::StatusCode CodeForHttpStatus(int http_status, std::string_view reason);

// The error for a non-2xx response: "<METHOD> <url>: HTTP <code> (<reason>):
// <the Status object's message>; <hint>". The body is a metav1.Status when the
// API server answered; otherwise its first 200 characters are quoted.
absl::Status ErrorFromResponse(std::string_view method, std::string_view url, int http_status,
                               std::string_view body);

}  // namespace gdp::kube
