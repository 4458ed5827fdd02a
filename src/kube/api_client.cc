#include "src/kube/api_client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gdp::kube {

namespace {

// The payload of ErrorFromResponse's errors: the HTTP status, in decimal.
constexpr char kHttpStatusPayload[] = "type.gdp/kube.HttpStatus";

}  // namespace

WatchCancel::WatchCancel() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

WatchCancel::~WatchCancel() {
  if (fd_ >= 0) ::close(fd_);
}

void WatchCancel::Cancel() {
  cancelled_.store(true, std::memory_order_release);
  // Never read back: the eventfd stays readable, so every later poll on it
  // returns at once too.
  uint64_t one = 1;
  if (fd_ >= 0) (void)!::write(fd_, &one, sizeof one);
}

absl::Status ApiClient::Watch(const std::string& path, const WatchCallback&, const WatchCancel&,
                              std::chrono::milliseconds) {
  return absl::UnimplementedError(absl::StrCat("GET ", path, ": this API client cannot watch"));
}

const char* ContentType(PatchType type) {
  switch (type) {
    case PatchType::kJson:
      return "application/json-patch+json";
    case PatchType::kMerge:
      return "application/merge-patch+json";
    case PatchType::kStrategicMerge:
      return "application/strategic-merge-patch+json";
    case PatchType::kApply:
      return "application/apply-patch+yaml";
  }
  return "application/json";
}

std::string EscapeQueryValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

absl::StatusCode CodeForHttpStatus(int http_status, std::string_view reason) {
  switch (http_status) {
    case 400:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return reason == "AlreadyExists" ? absl::StatusCode::kAlreadyExists
                                       : absl::StatusCode::kAborted;
    case 410:
      return absl::StatusCode::kFailedPrecondition;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 500:
    case 502:
    case 503:
      return absl::StatusCode::kUnavailable;
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kUnknown;
  }
}

namespace {

const char* Hint(int http_status) {
  switch (http_status) {
    case 401:
      return "; check the token or client certificate of the kubeconfig / service account";
    case 403:
      return "; check the RBAC rules (ClusterRole and binding) of the service account";
    case 410:
      return "; the resourceVersion is too old, list again";
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return "; the API server is overloaded or restarting, retry later";
    default:
      return "";
  }
}

}  // namespace

absl::Status ErrorFromResponse(std::string_view method, std::string_view url, int http_status,
                               std::string_view body) {
  std::string reason;
  std::string message;
  nlohmann::json status = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object() && status.value("kind", "") == "Status") {
    reason = status.value("reason", "");
    message = status.value("message", "");
  }
  if (message.empty()) {
    std::string shown(body.substr(0, 200));
    message = shown.empty() ? std::string("empty body") : absl::StrCat("\"", shown, "\"");
  }
  std::string text =
      absl::StrCat(std::string(method), " ", std::string(url), ": HTTP ", http_status);
  if (!reason.empty()) absl::StrAppend(&text, " (", reason, ")");
  absl::StrAppend(&text, ": ", message, Hint(http_status));
  absl::Status error(CodeForHttpStatus(http_status, reason), text);
  error.SetPayload(kHttpStatusPayload, absl::Cord(absl::StrCat(http_status)));
  return error;
}

int HttpStatusOf(const absl::Status& status) {
  auto payload = status.GetPayload(kHttpStatusPayload);
  int http_status = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &http_status)) return 0;
  return http_status;
}

}  // namespace gdp::kube
