// HttpServer: the daemon's small HTTP endpoint (default 0.0.0.0:9101) serving
// /healthz, /readyz, /metrics and friends.
//
// Our own HTTP/1.1 over POSIX sockets, GET and HEAD only, one request per
// connection (`Connection: close`). The packaged servers each missed a
// requirement of a daemon that runs on every GPU node: Debian's cpp-httplib is
// built with TLS and initialises OpenSSL when it is loaded (3 MiB resident
// before the first request), its civetweb is built without IPv6, and
// libmicrohttpd brings GnuTLS and its libraries (docs/benchmarks.md).
//
// One thread serves every connection from an epoll loop, so an idle, slow or
// half-sent connection holds nothing but its descriptor and buffer: it never
// delays another request, /healthz included. A connection gets
// HttpLimits::head_timeout to send its whole request head (at most 16 KiB,
// however slowly it trickles in) and send_timeout to take the response. At
// max_connections, a new connection closes the one that has waited longest
// without sending a whole request (a warning says so, once a minute with a
// count), so a flood of idle connections cannot keep a probe out.
//
// With UseTls() before Start(), every connection is TLS (OpenSSL, TLS 1.2 and
// later), the handshake counted in the head deadline; the certificate and key
// files are checked for changes every 10 s (HttpLimits) and a changed pair is loaded for
// new connections (a pair that does not load is logged and the old one kept).
//
// Handlers are registered before Start() and run on that thread, so they must
// be thread-safe and quick: they read state, they never call NVML. Start()
// binds (port 0 picks a free port; port() tells which) and starts the thread,
// which the server owns; Stop() wakes and joins it, closing every connection.
// Not copyable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"

struct ssl_st;
struct ssl_ctx_st;

namespace gdp::metrics {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

namespace detail {

// The request line and headers of one request, as far as the server needs
// them. `error` is 0 when the head is valid, else the HTTP status to answer
// (400 malformed, 505 an HTTP version other than 1.0/1.1) and `reason` why.
struct RequestHead {
  std::string method;
  std::string path;  // the target without its query string
  int error = 0;
  std::string reason;
};

// Parses a request head (everything before the blank line, without it).
RequestHead ParseRequestHead(std::string_view head);

// The whole response for `request` (status line, headers, body unless HEAD).
std::string RenderResponse(const RequestHead& request, const HttpResponse& response);

}  // namespace detail

struct HttpLimits {
  size_t max_connections = 512;
  std::chrono::milliseconds head_timeout{3000};
  std::chrono::milliseconds send_timeout{10000};
  // How often the TLS certificate and key files are checked for a change.
  std::chrono::milliseconds tls_check_interval{10000};
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse()>;

  HttpServer(std::string bind_address, int port, HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers a GET (and HEAD) handler for exactly `path`; only before Start().
  void Handle(const std::string& path, Handler handler);

  // Serves TLS with this PEM certificate (chain) and key; only before Start().
  // An error names the file and what OpenSSL said.
  absl::Status UseTls(const std::string& cert_file, const std::string& key_file);

  // Binds and starts serving. Fails (naming the address) when the port is taken
  // or the address is not this host's.
  absl::Status Start();
  void Stop();

  // The bound port, valid after a successful Start().
  int port() const { return bound_port_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Connection {
    int fd = -1;
    ssl_st* ssl = nullptr;  // with TLS; owned
    bool handshaken = false;
    bool writing = false;  // the request is read; `out` is being sent
    Clock::time_point deadline;
    std::string in;
    std::string out;
    size_t sent = 0;
  };
  using Deadlines = std::set<std::pair<Clock::time_point, int>>;

  // Everything below runs on the loop thread.
  void Loop();
  std::optional<Clock::time_point> NextDeadline() const;
  void AcceptAll();
  bool EvictOldestReader();
  void Read(Connection& c);
  void Respond(Connection& c, std::string out);
  void Write(Connection& c);
  void Expire(Clock::time_point now);
  void Close(int fd);
  void CloseAll();
  // Which events the connection waits for next (after a TLS call asked).
  void Want(const Connection& c, uint32_t events);
  // Loads a changed certificate and key for new connections (every 10 s at most).
  void MaybeReloadTls();
  HttpResponse Answer(const detail::RequestHead& request) const;

  std::string bind_address_;
  int port_;
  const HttpLimits limits_;
  int bound_port_ = 0;
  std::map<std::string, Handler, std::less<>> handlers_;  // read-only once started
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once Stop() begins
  int epoll_fd_ = -1;
  // The loop thread's own state.
  std::map<int, Connection> connections_;
  Deadlines readers_;  // connections still reading their head, by deadline
  Deadlines writers_;  // connections sending their answer, by deadline
  std::optional<Clock::time_point> accept_paused_until_;
  std::optional<Clock::time_point> last_limit_log_;
  // TLS: the context new connections get, and the files it came from.
  ssl_ctx_st* tls_ = nullptr;
  std::string cert_file_, key_file_;
  std::pair<int64_t, int64_t> tls_mtimes_{0, 0};
  Clock::time_point next_tls_check_;
  size_t evicted_ = 0;
  std::thread loop_;
};

}  // namespace gdp::metrics
