// OpenSslApiClient: ApiClient over HTTP/1.1 on a TCP socket, with TLS from
// OpenSSL (the RestConfig's CA, bearer token or client certificate, server
// name and address checked).
//
// Why not libcurl: Debian's libcurl brings about 25 shared libraries (GnuTLS
// through librtmp, Kerberos, LDAP, SSH, ...) for the three verbs this client
// sends, and they cost the daemon 3.8 MiB of resident memory and part of its
// start-up on every node (docs/benchmarks.md). The API server needs one
// request per connection, JSON bodies, Content-Length or chunked responses.
//
// Thread-safe: the RestConfig and the TLS context are immutable after
// construction, and every request opens its own connection, so calls from
// several threads run in parallel. A request takes at most RestConfig::timeout
// (connect, handshake, send and receive together). A Watch keeps that limit up
// to the response head; its stream then lasts up to the watch's own timeout,
// the thread blocked in poll() on the socket and the cancel eventfd.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "src/common/filesystem.h"
#include "src/kube/api_client.h"
#include "src/kube/rest_config.h"

namespace gdp::kube {

namespace detail {

// Reads one HTTP/1.1 response as its bytes arrive (Content-Length, chunked, or
// up to the end of the connection). A streaming reader (a watch) takes the body
// as it comes with TakeBody(); the 256 MiB cap applies to the body held here,
// so such a reader keeps its own cap on what it holds. Not thread-safe; one
// per response.
class ResponseParser {
 public:
  enum class State { kIncomplete, kComplete, kError };

  // `head_request`: the response to a HEAD has no body whatever it says.
  explicit ResponseParser(bool head_request = false) : head_request_(head_request) {}

  // Takes the next bytes; returns where the response stands.
  State Feed(const char* data, size_t size);
  // The connection ended: a body delimited by the end becomes complete, any
  // other unfinished response an error.
  State Finish();

  // Whether the final response head (not a 1xx) has arrived; status() is
  // known from then on.
  bool has_head() const { return have_head_; }
  int status() const { return status_; }
  const std::string& body() const { return body_; }
  // The body bytes that arrived since the last call (all of it the first
  // time); body() is empty afterwards.
  std::string TakeBody() { return std::exchange(body_, std::string()); }
  // Why the response is not HTTP (when State::kError).
  const std::string& error() const { return error_; }

  static constexpr size_t kMaxHead = 64 * 1024;
  static constexpr size_t kMaxBody = 256 * 1024 * 1024;

 private:
  State Fail(std::string why);
  State ParseHead(size_t end);
  State Advance();

  bool head_request_;
  State state_ = State::kIncomplete;
  std::string in_;  // bytes not yet consumed
  bool have_head_ = false;
  int status_ = 0;
  enum class Framing { kLength, kChunked, kUntilClose } framing_ = Framing::kUntilClose;
  size_t remaining_ = 0;  // kLength: body bytes still due; kChunked: of the current chunk
  bool in_chunk_ = false;
  std::string body_;
  std::string error_;
};

}  // namespace detail

class OpenSslApiClient final : public ApiClient {
 public:
  // `fs` (not owned, must outlive the client) reads the token file per
  // request. A RestConfig whose certificates or key cannot be loaded gives a
  // client whose every call fails with FailedPrecondition saying which one.
  explicit OpenSslApiClient(RestConfig config, const FileSystem* fs = &PosixFileSystem::Get());
  ~OpenSslApiClient() override;

  absl::StatusOr<nlohmann::json> Get(const std::string& path) override;
  absl::StatusOr<nlohmann::json> Post(const std::string& path, const nlohmann::json& body) override;
  absl::StatusOr<nlohmann::json> Patch(const std::string& path, PatchType type,
                                       const nlohmann::json& body,
                                       const PatchOptions& options) override;
  absl::Status Watch(const std::string& path, const WatchCallback& on_event,
                     const WatchCancel& cancel, std::chrono::milliseconds timeout) override;

  const RestConfig& config() const { return config_; }

 private:
  struct Endpoint;
  class Connection;

  absl::StatusOr<nlohmann::json> Do(const char* method, const std::string& path,
                                    const char* content_type, const std::string* body);
  // The request's bytes, with the token read now.
  absl::StatusOr<std::string> RequestText(const char* method, const std::string& path,
                                          const char* content_type, const std::string* body);

  const RestConfig config_;
  const FileSystem* fs_;
  std::unique_ptr<Endpoint> endpoint_;  // host, port, TLS context; immutable
  absl::Status setup_;                  // why the RestConfig is unusable, else OK
};

}  // namespace gdp::kube
