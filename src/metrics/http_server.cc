#include "src/metrics/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "src/common/log.h"
#include "src/common/poll.h"

namespace gdp::metrics {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kConnectionDeadline = std::chrono::seconds(5);
constexpr size_t kMaxHead = 16 * 1024;
constexpr int kWorkers = 2;  // scrapes and probes are cheap; a node daemon parks no thread per core

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 400 ? "OK" : "Error";
  }
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

detail::RequestHead Malformed(std::string reason) {
  detail::RequestHead r;
  r.error = 400;
  r.reason = std::move(reason);
  return r;
}

}  // namespace

namespace detail {

RequestHead ParseRequestHead(std::string_view head) {
  size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Malformed("the request line is not METHOD TARGET VERSION");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty()) return Malformed("the request has no method");
  for (char c : method) {
    if (!IsTokenChar(c)) return Malformed("the method is not an HTTP token");
  }
  if (target.empty() || target[0] != '/') return Malformed("the target is not a path");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Malformed("the target has a control character");
    }
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[5])) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return Malformed("the version is not HTTP/x.y");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    RequestHead r;
    r.error = 505;
    r.reason = "only HTTP/1.0 and HTTP/1.1 are served";
    return r;
  }
  // Header lines: a name token, a colon, a value. Folded lines are refused (RFC 9112 5.2).
  while (eol != std::string_view::npos) {
    const size_t start = eol + 2;
    eol = head.find("\r\n", start);
    const std::string_view field =
        head.substr(start, eol == std::string_view::npos ? eol : eol - start);
    {
      size_t colon = field.find(':');
      if (colon == 0 || colon == std::string_view::npos) {
        return Malformed("a header line has no name or no colon");
      }
      for (char c : field.substr(0, colon)) {
        if (!IsTokenChar(c)) return Malformed("a header name is not an HTTP token");
      }
    }
  }
  RequestHead r;
  r.method = std::string(method);
  r.path = std::string(target.substr(0, target.find_first_of("?#")));
  return r;
}

std::string RenderResponse(const RequestHead& request, const HttpResponse& response) {
  std::string out =
      absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                   "\r\nContent-Type: ", response.content_type,
                   "\r\nContent-Length: ", response.body.size(), "\r\nConnection: close\r\n");
  if (response.status == 405) out += "Allow: GET, HEAD\r\n";
  out += "\r\n";
  if (request.method != "HEAD") out += response.body;
  return out;
}

}  // namespace detail

HttpServer::HttpServer(std::string bind_address, int port)
    : bind_address_(std::move(bind_address)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(const std::string& path, Handler handler) {
  handlers_[path] = std::move(handler);
}

absl::Status HttpServer::Start() {
  auto fail = [&](const std::string& why) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", bind_address_, ":", port_, ": ", why,
                     "; choose another with --metrics-port / --metrics-bind-address"));
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port_);
  if (int rc = ::getaddrinfo(bind_address_.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return fail(absl::StrCat("the address does not resolve (", ::gai_strerror(rc), ")"));
  }
  listen_fd_ = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) {
    ::freeaddrinfo(found);
    return fail(std::strerror(errno));
  }
  // SO_REUSEADDR lets a restarted daemon bind past TIME_WAIT; no SO_REUSEPORT,
  // which would let a second daemon share the port silently.
  int yes = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  bool bound = ::bind(listen_fd_, found->ai_addr, found->ai_addrlen) == 0;
  int bind_errno = errno;
  ::freeaddrinfo(found);
  if (!bound) {
    return fail(bind_errno == EADDRINUSE ? "address in use" : std::strerror(bind_errno));
  }
  if (::listen(listen_fd_, 64) != 0) return fail(std::strerror(errno));
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&local), &len);
  bound_port_ =
      ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return fail(absl::StrCat("eventfd: ", std::strerror(errno)));
  for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
  log::Info("http endpoint listening", {{"address", bind_address_}, {"port", bound_port_}});
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (workers_.empty()) return;
  uint64_t one = 1;
  // The eventfd stays readable, so every worker sees it, in poll or between connections.
  if (::write(stop_fd_, &one, sizeof one) != sizeof one) {
    log::Error("http endpoint: cannot wake its workers", {{"error", std::strerror(errno)}});
  }
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  ::close(listen_fd_);
  ::close(stop_fd_);
  listen_fd_ = stop_fd_ = -1;
}

void HttpServer::Work() {
  ::pthread_setname_np(::pthread_self(), "gdp-http");  // as top -H and perf show it
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      log::Error("http endpoint: poll failed; not serving", {{"error", std::strerror(errno)}});
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
        continue;  // the other worker took it
      log::Warn("http endpoint: accept failed; retrying in 100 ms",
                {{"error", std::strerror(errno)}});
      pollfd stop = {stop_fd_, POLLIN, 0};
      ::poll(&stop, 1, 100);  // e.g. out of fds: back off, but wake for Stop()
      continue;
    }
    Serve(fd);
    ::close(fd);
  }
}

void HttpServer::Serve(int fd) {
  const Clock::time_point deadline = Clock::now() + kConnectionDeadline;
  int yes = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  std::string in;
  size_t end = std::string::npos;
  char buf[4096];
  while (end == std::string::npos) {
    if (in.size() > kMaxHead) break;
    if (PollUntil(fd, POLLIN, deadline, stop_fd_) != PollResult::kReady)
      return;  // slow client or stopping: drop it
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;  // closed before a whole request
    // Search from just before the new bytes: the blank line may straddle reads.
    size_t from = in.size() < 3 ? 0 : in.size() - 3;
    in.append(buf, static_cast<size_t>(n));
    end = in.find("\r\n\r\n", from);
  }
  detail::RequestHead request;
  HttpResponse response;
  if (end == std::string::npos || end > kMaxHead) {
    request.method = "GET";
    response = {431, "text/plain; charset=utf-8", "request head over 16 KiB\n"};
  } else {
    request = detail::ParseRequestHead(std::string_view(in).substr(0, end));
    response = Answer(request);
  }
  const std::string out = detail::RenderResponse(request, response);
  size_t sent = 0;
  while (sent < out.size()) {
    if (PollUntil(fd, POLLOUT, deadline, stop_fd_) != PollResult::kReady) return;
    ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
}

HttpResponse HttpServer::Answer(const detail::RequestHead& request) const {
  if (request.error != 0) {
    return {request.error, "text/plain; charset=utf-8", request.reason + "\n"};
  }
  if (request.method != "GET" && request.method != "HEAD") {
    return {405, "text/plain; charset=utf-8", "only GET and HEAD are served\n"};
  }
  auto it = handlers_.find(request.path);
  if (it == handlers_.end()) return {404, "text/plain; charset=utf-8", "404 page not found\n"};
  try {
    return it->second();
  } catch (const std::exception& e) {
    log::Error("http handler failed", {{"path", request.path}, {"error", e.what()}});
    return {500, "text/plain; charset=utf-8", "internal error; see the daemon's log\n"};
  }
}

}  // namespace gdp::metrics
