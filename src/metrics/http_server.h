// HttpServer: the daemon's small HTTP endpoint (default 0.0.0.0:9101) serving
// /healthz, /readyz and, as components add them, /metrics and friends.
//
// Handlers are registered before Start() and run on the server's worker
// threads (a fixed pool of two), so they must be thread-safe and quick: they
// read state, they never call NVML or block. Start() binds (port 0 picks a free
// port; port() tells which) and serves on a thread the server owns; Stop() ends
// it and joins. Not copyable.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace httplib {
class Server;
}

namespace gdp::metrics {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse()>;

  HttpServer(std::string bind_address, int port);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers a GET handler; only before Start().
  void Handle(const std::string& path, Handler handler);

  // Binds and starts serving. Fails (naming the address) when the port is taken.
  absl::Status Start();
  void Stop();

  // The bound port, valid after a successful Start().
  int port() const { return bound_port_; }

 private:
  std::string bind_address_;
  int port_;
  int bound_port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
};

}  // namespace gdp::metrics
