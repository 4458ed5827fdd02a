// ApiClient: the seam between the daemon (and its tools) and the Kubernetes
// API server. The API server is plain HTTPS + JSON; the users of this seam
// (the node labeller, node events, `doctor`, `kubectl-gpu`) own an ApiClient&
// and tests hand them a GoogleMock of it (tests/mocks/mock_api_client.h).
//
// Paths are API paths with their query string already escaped
// ("/api/v1/nodes/node-a", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a";
// EscapeQueryValue() helps). Every call is one request, answered with the
// decoded JSON body or a Status that names the method, the URL, the HTTP status
// and the API server's own Status message. Watch is the one streaming call: it
// hands over the events of a watch as they arrive, until the stream ends.
//
// Implementations must be thread-safe (OpenSslApiClient is). WatchCancel is
// thread-safe too: that is its purpose.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
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

// One event of a watch stream (a metav1.WatchEvent).
struct WatchEvent {
  std::string type;       // "ADDED", "MODIFIED", "DELETED", "BOOKMARK" or "ERROR"
  nlohmann::json object;  // the object; for ERROR a metav1.Status (its "code" 410: relist)
};

// Cancels a Watch from another thread: Cancel() makes an eventfd readable,
// and the watch polls it beside its socket, so a watch blocked on an idle
// stream returns at once. Cancelling is final: every later Watch given this
// object returns Cancelled without connecting. Thread-safe; not copyable.
class WatchCancel {
 public:
  WatchCancel();
  ~WatchCancel();
  WatchCancel(const WatchCancel&) = delete;
  WatchCancel& operator=(const WatchCancel&) = delete;

  // Idempotent.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  // The eventfd, readable once cancelled; -1 when it could not be created
  // (out of descriptors), and then Watch refuses to start.
  int fd() const { return fd_; }

 private:
  const int fd_;
  std::atomic<bool> cancelled_{false};
};

class ApiClient {
 public:
  using WatchCallback = std::function<bool(const WatchEvent& event)>;

  virtual ~ApiClient() = default;
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& path) = 0;
  virtual absl::StatusOr<nlohmann::json> Post(const std::string& path,
                                              const nlohmann::json& body) = 0;
  virtual absl::StatusOr<nlohmann::json> Patch(const std::string& path, PatchType type,
                                               const nlohmann::json& body,
                                               const PatchOptions& options) = 0;

  // GETs `path`, which carries watch=true and the rest of the watch's query
  // (resourceVersion, fieldSelector, timeoutSeconds, ...), and calls
  // `on_event` on the calling thread for each event as it arrives. Returns:
  //  - OK when the server ends the stream (its timeoutSeconds), when
  //    `timeout` passes on an established stream (the same thing, seen from
  //    this side), or when `on_event` returns false (the watch is closed);
  //  - Cancelled, promptly, once `cancel` fires (also while connecting);
  //  - for a non-2xx answer the error Get would give; IsGone() tells 410 Gone
  //    (the resourceVersion is too old: list again);
  //  - an error naming the line when a line of the stream is not a JSON
  //    watch event, and the transport's error when the connection fails.
  // Connecting and the response head take at most the client's own request
  // timeout; the stream then lasts at most `timeout`. ERROR events are handed
  // to `on_event` like the others. The default answers Unimplemented, so
  // clients that never watch need not implement it.
  virtual absl::Status Watch(const std::string& path, const WatchCallback& on_event,
                             const WatchCancel& cancel, std::chrono::milliseconds timeout);
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
std::string EscapeQueryValue(std::string_view value);

// The absl code for an HTTP status of the API server: 400/422 InvalidArgument,
// 401 Unauthenticated, 403 PermissionDenied, 404 NotFound, 409 AlreadyExists
// (or Aborted for a conflict of resourceVersion), 410 FailedPrecondition,
// 429 ResourceExhausted, 500/503 Unavailable, 504 DeadlineExceeded, anything
// else Unknown.
absl::StatusCode CodeForHttpStatus(int http_status, std::string_view reason);

// The error for a non-2xx response: "<METHOD> <url>: HTTP <code> (<reason>):
// <the Status object's message>; <hint>". The body is a metav1.Status when the
// API server answered; otherwise its first 200 characters are quoted. The
// HTTP status travels with the error as a payload (HttpStatusOf).
absl::Status ErrorFromResponse(std::string_view method, std::string_view url, int http_status,
                               std::string_view body);

// The HTTP status of an error made by ErrorFromResponse; 0 for any other
// status (a transport error, or OK).
int HttpStatusOf(const absl::Status& status);

// An HTTP 410 Gone: the resourceVersion a watch or list asked for is older
// than the API server keeps, and the caller must list again. (Its code,
// FailedPrecondition, is shared with configuration errors; this is exact.)
inline bool IsGone(const absl::Status& status) { return HttpStatusOf(status) == 410; }

}  // namespace gdp::kube
