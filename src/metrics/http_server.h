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
// Handlers are registered before Start(). A quick one (it reads state, never
// NVML or another process) runs on the loop thread; one registered with
// Route::blocking runs on the server's worker thread (`gdp-http-work`, started
// at the first such request), so a handler that waits on a socket delays no
// probe. With UseAuthorizer(), a Route::guarded path answers 401 without a
// bearer token, and otherwise asks the authorizer: a decision it has cached is
// taken on the loop thread, any other is made on the worker. At most
// HttpLimits::max_pending requests wait for the worker; more are answered 503
// at once. A request that waits longer than work_timeout is answered 503.
//
// Start() binds (port 0 picks a free port; port() tells which) and starts the
// loop thread; the server owns both threads, and Stop() wakes and joins them,
// closing every connection. Not copyable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

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
  std::string path;          // the target without its query string
  std::string bearer_token;  // from "Authorization: Bearer <token>"; empty without one
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
  // Requests waiting for the worker thread (an authorisation or a blocking handler).
  size_t max_pending = 64;
  // How long such a request may wait for its answer before it gets a 503.
  std::chrono::milliseconds work_timeout{15000};
};

// Decides whether the bearer of a token may read a path (the user of the
// server implements it; KubeAuthorizer asks the Kubernetes API server).
class RequestAuthorizer {
 public:
  // 200: allowed. Else the status to answer (401 the token is not valid, 403
  // its user may not read the path, 503 the decision could not be made) and
  // why, for the response body.
  struct Decision {
    int status = 200;
    std::string reason;
  };
  virtual ~RequestAuthorizer() = default;
  // The decision for this token and path if one is cached, without blocking
  // (called on the loop thread).
  virtual std::optional<Decision> Cached(std::string_view token, std::string_view path) = 0;
  // Decides, asking whoever it must; may block (called on the worker thread).
  virtual Decision Authorize(std::string_view token, std::string_view path) = 0;
};

struct Route {
  // The handler may block (a socket call with a deadline): it runs on the worker.
  bool blocking = false;
  // With an authorizer set, the request needs a bearer token allowed for the path.
  bool guarded = false;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse()>;

  HttpServer(std::string bind_address, int port, HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers a GET (and HEAD) handler for exactly `path`; only before Start().
  void Handle(const std::string& path, Handler handler, Route route = {});

  // Checks Route::guarded requests with `authorizer` (not owned; it must
  // outlive the server); only before Start(). Without one every path is open.
  void UseAuthorizer(RequestAuthorizer* authorizer) { authorizer_ = authorizer; }

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
    bool waiting = false;  // the request is with the worker
    uint64_t serial = 0;   // tells this connection from a later one on the same fd
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
  // The answer to a request, or none when it went to the worker.
  std::optional<HttpResponse> Answer(Connection& c, const detail::RequestHead& request);
  HttpResponse Run(const std::string& path) const;  // the handler, exceptions caught
  void Enqueue(Connection& c, detail::RequestHead request, bool authorize);
  void TakeFinished();  // the worker's answers, to their connections
  void Work();          // the worker thread

  struct Job {
    int fd = -1;
    uint64_t serial = 0;
    detail::RequestHead request;
    bool authorize = false;
    Clock::time_point deadline;  // the connection's; past it nobody waits
  };
  struct Finished {
    int fd = -1;
    uint64_t serial = 0;
    std::string out;
  };

  std::string bind_address_;
  int port_;
  const HttpLimits limits_;
  int bound_port_ = 0;
  struct Registered {
    Handler handler;
    Route route;
  };
  std::map<std::string, Registered, std::less<>> handlers_;  // read-only once started
  RequestAuthorizer* authorizer_ = nullptr;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once Stop() begins
  int epoll_fd_ = -1;
  // The loop thread's own state.
  std::map<int, Connection> connections_;
  Deadlines readers_;  // connections still reading their head, by deadline
  Deadlines writers_;  // connections sending their answer, by deadline
  Deadlines waiters_;  // connections whose request is with the worker, by deadline
  uint64_t next_serial_ = 0;
  std::optional<Clock::time_point> accept_paused_until_;
  std::optional<Clock::time_point> last_limit_log_;
  // TLS: the context new connections get, and the files it came from.
  ssl_ctx_st* tls_ = nullptr;
  std::string cert_file_, key_file_;
  std::pair<int64_t, int64_t> tls_mtimes_{0, 0};
  Clock::time_point next_tls_check_;
  size_t evicted_ = 0;
  // The worker: jobs in, answers out (done_fd_ wakes the loop), under work_mu_.
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::deque<Job> jobs_;
  std::vector<Finished> finished_;
  std::set<uint64_t> abandoned_;  // serials of waiting connections closed before their answer
  bool work_stop_ = false;
  size_t pending_ = 0;  // the loop's count of jobs not yet answered
  int done_fd_ = -1;    // eventfd
  std::thread worker_;
  std::thread loop_;
};

}  // namespace gdp::metrics
