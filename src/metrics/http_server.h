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
// Handlers are registered before Start() and run on the server's two worker
// threads, so they must be thread-safe and quick: they read state, they never
// call NVML. Start() binds (port 0 picks a free port; port() tells which) and
// starts the workers, which the server owns; Stop() wakes and joins them, also
// while a client holds a connection open. A connection gets 5 s to send its
// request head (at most 16 KiB) and to take the response. Not copyable.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"

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

class HttpServer {
 public:
  using Handler = std::function<HttpResponse()>;

  HttpServer(std::string bind_address, int port);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers a GET (and HEAD) handler for exactly `path`; only before Start().
  void Handle(const std::string& path, Handler handler);

  // Binds and starts serving. Fails (naming the address) when the port is taken
  // or the address is not this host's.
  absl::Status Start();
  void Stop();

  // The bound port, valid after a successful Start().
  int port() const { return bound_port_; }

 private:
  void Work();
  void Serve(int fd);
  HttpResponse Answer(const detail::RequestHead& request) const;

  std::string bind_address_;
  int port_;
  int bound_port_ = 0;
  std::map<std::string, Handler, std::less<>> handlers_;  // read-only once started
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once Stop() begins
  std::vector<std::thread> workers_;
};

}  // namespace gdp::metrics
