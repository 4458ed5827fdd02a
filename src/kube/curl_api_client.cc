#include "src/kube/curl_api_client.h"

#include <curl/curl.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gdp::kube {

namespace {

void GlobalInit() {
  // curl_global_init is not thread-safe before 7.84; do it once, first.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t Append(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct ListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

absl::StatusCode CodeForCurl(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

const char* CurlHint(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      return "; is the API server up and the server address right?";
    case CURLE_PEER_FAILED_VERIFICATION:
      return "; the server's certificate is not signed by the configured CA "
             "(certificate-authority / ca.crt)";
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
      return "; check the CA and client certificate files";
    default:
      return "";
  }
}

}  // namespace

CurlApiClient::CurlApiClient(RestConfig config, const FileSystem* fs)
    : config_(std::move(config)), fs_(fs) {
  GlobalInit();
}

absl::StatusOr<nlohmann::json> CurlApiClient::Get(const std::string& path) {
  return Do("GET", path, nullptr, nullptr);
}

absl::StatusOr<nlohmann::json> CurlApiClient::Post(const std::string& path,
                                                   const nlohmann::json& body) {
  std::string text = body.dump();
  return Do("POST", path, "application/json", &text);
}

absl::StatusOr<nlohmann::json> CurlApiClient::Patch(const std::string& path, PatchType type,
                                                    const nlohmann::json& body,
                                                    const PatchOptions& options) {
  if (type == PatchType::kApply && options.field_manager.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PATCH ", path, ": server-side apply needs a field manager"));
  }
  std::string full = path;
  char sep = path.find('?') == std::string::npos ? '?' : '&';
  if (!options.field_manager.empty()) {
    absl::StrAppend(&full, std::string(1, sep),
                    "fieldManager=", EscapeQueryValue(options.field_manager));
    sep = '&';
  }
  if (type == PatchType::kApply && options.force)
    absl::StrAppend(&full, std::string(1, sep), "force=true");
  std::string text = body.dump();  // JSON is YAML, so apply-patch+yaml accepts it
  return Do("PATCH", full, ContentType(type), &text);
}

absl::StatusOr<nlohmann::json> CurlApiClient::Do(const char* method, const std::string& path,
                                                 const char* content_type,
                                                 const std::string* body) {
  const std::string url = config_.server + path;
  std::unique_ptr<CURL, EasyDeleter> curl(curl_easy_init());
  if (!curl) return absl::InternalError(absl::StrCat(method, " ", url, ": curl_easy_init failed"));
  CURL* c = curl.get();

  std::string token = config_.token;
  if (!config_.token_file.empty()) {
    absl::StatusOr<std::string> t = fs_->ReadFile(config_.token_file);
    if (!t.ok()) {
      return absl::Status(t.status().code(),
                          absl::StrCat(method, " ", url, ": cannot read the token file ",
                                       config_.token_file, ": ", t.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*t));
  }

  std::unique_ptr<curl_slist, ListDeleter> headers;
  auto add_header = [&](const std::string& h) {
    if (curl_slist* head = curl_slist_append(headers.get(), h.c_str()); head != nullptr) {
      (void)headers.release();
      headers.reset(head);
    }
  };
  add_header("Accept: application/json");
  if (content_type != nullptr) add_header(absl::StrCat("Content-Type: ", content_type));
  if (!token.empty()) add_header(absl::StrCat("Authorization: Bearer ", token));

  std::string response;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "gpu-device-plugin");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.timeout.count()));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (body != nullptr) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }

  // TLS. Blobs are copied by curl, so the strings need not outlive the call.
  curl_blob ca{const_cast<char*>(config_.ca_data.data()), config_.ca_data.size(), CURL_BLOB_COPY};
  if (!config_.ca_data.empty()) curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
  if (!config_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
  curl_blob cert{const_cast<char*>(config_.client_cert_data.data()),
                 config_.client_cert_data.size(), CURL_BLOB_COPY};
  if (!config_.client_cert_data.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
  if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
  }
  curl_blob key{const_cast<char*>(config_.client_key_data.data()), config_.client_key_data.size(),
                CURL_BLOB_COPY};
  if (!config_.client_key_data.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
  if (!config_.client_key_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  }
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }

  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return absl::Status(CodeForCurl(rc), absl::StrCat(method, " ", url, " (", config_.source,
                                                      "): ", detail, CurlHint(rc)));
  }
  long http_status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http_status);
  if (http_status < 200 || http_status >= 300) {
    return ErrorFromResponse(method, url, static_cast<int>(http_status), response);
  }
  if (response.empty()) return nlohmann::json();
  nlohmann::json json = nlohmann::json::parse(response, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InternalError(absl::StrCat(method, " ", url, ": HTTP ", http_status,
                                            " but the body is not JSON: \"",
                                            response.substr(0, 200), "\""));
  }
  return json;
}

}  // namespace gdp::kube
