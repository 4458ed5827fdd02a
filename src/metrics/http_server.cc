#include "src/metrics/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace gdp::metrics {

HttpServer::HttpServer(std::string bind_address, int port)
    : bind_address_(std::move(bind_address)),
      port_(port),
      server_(std::make_unique<httplib::Server>()) {
  // Two workers: scrapes and probes are cheap, and a node daemon should not
  // park a thread per core.
  server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  server_->set_read_timeout(std::chrono::seconds(5));
  server_->set_write_timeout(std::chrono::seconds(5));
  server_->set_keep_alive_timeout(5);
  // One request per connection: with keep-alive, each idle connection would
  // hold one of the two workers, so a third concurrent scraper would wait for
  // a keep-alive timeout (seen at ~1 s with 8 scrapers). A scrape every 15 s
  // does not need a kept connection.
  server_->set_keep_alive_max_count(1);
  // Responses go out as header and body writes; without TCP_NODELAY, Nagle
  // holds the body until the client's delayed ACK (~40 ms) on every request
  // after the first of a keep-alive connection, which Prometheus uses.
  server_->set_tcp_nodelay(true);
  // httplib's default adds SO_REUSEPORT, which would let a second daemon share
  // the port silently; a taken port must be an error instead.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(const std::string& path, Handler handler) {
  server_->Get(path,
               [handler = std::move(handler)](const httplib::Request&, httplib::Response& res) {
                 HttpResponse r = handler();
                 res.status = r.status;
                 res.set_content(r.body, r.content_type);
               });
}

absl::Status HttpServer::Start() {
  int port = port_;
  if (port == 0) {
    port = server_->bind_to_any_port(bind_address_);
    if (port < 0) port = 0;
  } else if (!server_->bind_to_port(bind_address_, port)) {
    port = 0;
  }
  if (port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", bind_address_, ":", port_,
                     ": address in use or not available; choose another with --metrics-port / "
                     "--metrics-bind-address"));
  }
  bound_port_ = port;
  listen_returned_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  log::Info("http endpoint listening", {{"address", bind_address_}, {"port", bound_port_}});
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing until the listen loop runs, so a Stop()
  // right after Start() waits for the loop to begin (or to have failed).
  while (!listen_returned_ && !server_->is_running()) std::this_thread::yield();
  server_->stop();
  thread_.join();
}

}  // namespace gdp::metrics
