#include "src/metrics/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "src/common/filesystem.h"
#include "src/common/log.h"

namespace gdp::metrics {

namespace {

constexpr size_t kMaxHead = size_t{16} * 1024;
constexpr int kBacklog = 128;
constexpr auto kLimitLogInterval = std::chrono::seconds(60);

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "no detail from OpenSSL";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// A server context with this certificate chain and key (PEM files).
absl::StatusOr<SSL_CTX*> LoadTls(const std::string& cert_file, const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + OpenSslError());
  auto fail = [&](const std::string& what) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(what + ": " + OpenSslError());
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return fail("cannot load the TLS certificate " + cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("cannot load the TLS key " + key_file + " (is it the PEM key of the certificate " +
                cert_file + "?)");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail("the TLS key " + key_file + " does not belong to the certificate " + cert_file);
  }
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

int64_t MtimeNs(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
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

bool SameWord(std::string_view a, std::string_view b) {  // ASCII, case-insensitive
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return absl::ascii_tolower(static_cast<unsigned char>(x)) ==
                  absl::ascii_tolower(static_cast<unsigned char>(y));
         });
}

// RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
bool IsBearerToken(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && (absl::ascii_isalnum(static_cast<unsigned char>(t[i])) ||
                          std::strchr("-._~+/", t[i]) != nullptr)) {
    ++i;
  }
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
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
  std::string bearer;
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
      if (SameWord(field.substr(0, colon), "authorization")) {
        // "Bearer <token>" (RFC 6750 2.1; the scheme is case-insensitive).
        const std::string_view value = Trim(field.substr(colon + 1));
        if (value.size() > 7 && SameWord(value.substr(0, 7), "bearer ")) {
          bearer = std::string(Trim(value.substr(7)));
        }
      }
    }
  }
  RequestHead r;
  r.bearer_token = std::move(bearer);
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
  if (response.status == 401) out += "WWW-Authenticate: Bearer realm=\"gpu-device-plugin\"\r\n";
  out += "\r\n";
  if (request.method != "HEAD") out += response.body;
  return out;
}

}  // namespace detail

HttpServer::HttpServer(std::string bind_address, int port, HttpLimits limits)
    : bind_address_(std::move(bind_address)), port_(port), limits_(limits) {}

HttpServer::~HttpServer() {
  Stop();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

void HttpServer::Handle(const std::string& path, Handler handler, Route route) {
  handlers_[path] = Registered{std::move(handler), route};
}

absl::Status HttpServer::UseTls(const std::string& cert_file, const std::string& key_file) {
  absl::StatusOr<SSL_CTX*> ctx = LoadTls(cert_file, key_file);
  if (!ctx.ok()) return ctx.status();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
  tls_ = *ctx;
  cert_file_ = cert_file;
  key_file_ = key_file;
  tls_mtimes_ = {MtimeNs(cert_file), MtimeNs(key_file)};
  next_tls_check_ = Clock::now() + limits_.tls_check_interval;
  return absl::OkStatus();
}

void HttpServer::MaybeReloadTls() {
  const auto now = Clock::now();
  if (tls_ == nullptr || now < next_tls_check_) return;
  next_tls_check_ = now + limits_.tls_check_interval;
  const std::pair<int64_t, int64_t> mtimes{MtimeNs(cert_file_), MtimeNs(key_file_)};
  if (mtimes == tls_mtimes_) return;
  tls_mtimes_ = mtimes;  // a pair that fails is not retried until it changes again
  absl::StatusOr<SSL_CTX*> ctx = LoadTls(cert_file_, key_file_);
  if (!ctx.ok()) {
    log::Warn(
        "http endpoint: the changed TLS certificate or key does not load; serving the "
        "previous one",
        {{"error", ctx.status().message()}});
    return;
  }
  SSL_CTX_free(tls_);  // connections that have it hold their own reference
  tls_ = *ctx;
  log::Info("http endpoint: TLS certificate reloaded", {{"certificate", cert_file_}});
}

void HttpServer::Want(const Connection& c, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = c.fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

absl::Status HttpServer::Start() {
  auto fail = [&](const std::string& why) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
    if (done_fd_ >= 0) ::close(done_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    listen_fd_ = stop_fd_ = done_fd_ = epoll_fd_ = -1;
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
    return fail(ErrnoString(errno));
  }
  // SO_REUSEADDR lets a restarted daemon bind past TIME_WAIT; no SO_REUSEPORT,
  // which would let a second daemon share the port silently.
  int yes = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  bool bound = ::bind(listen_fd_, found->ai_addr, found->ai_addrlen) == 0;
  int bind_errno = errno;
  ::freeaddrinfo(found);
  if (!bound) {
    return fail(bind_errno == EADDRINUSE ? "address in use" : ErrnoString(bind_errno));
  }
  if (::listen(listen_fd_, kBacklog) != 0) return fail(ErrnoString(errno));
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&local), &len);
  bound_port_ =
      ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  done_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0 || done_fd_ < 0) return fail(absl::StrCat("eventfd: ", ErrnoString(errno)));
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return fail(absl::StrCat("epoll_create1: ", ErrnoString(errno)));
  for (int fd : {listen_fd_, stop_fd_, done_fd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return fail(absl::StrCat("epoll_ctl: ", ErrnoString(errno)));
    }
  }
  {
    std::lock_guard<std::mutex> lock(work_mu_);  // a restarted server starts clean
    work_stop_ = false;
    jobs_.clear();
    finished_.clear();
    abandoned_.clear();
  }
  pending_ = 0;
  loop_ = std::thread([this] { Loop(); });
  log::Info("http endpoint listening", {{"address", bind_address_},
                                        {"port", bound_port_},
                                        {"tls", tls_ != nullptr},
                                        {"authorization", authorizer_ != nullptr},
                                        {"max_connections", limits_.max_connections}});
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (!loop_.joinable()) return;
  uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof one) != sizeof one) {
    log::Error("http endpoint: cannot wake its thread", {{"error", ErrnoString(errno)}});
  }
  loop_.join();
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(work_mu_);
      work_stop_ = true;
    }
    work_cv_.notify_one();
    worker_.join();  // after the request it may be answering (its deadlines bound it)
  }
  ::close(listen_fd_);
  ::close(stop_fd_);
  ::close(done_fd_);
  ::close(epoll_fd_);
  listen_fd_ = stop_fd_ = done_fd_ = epoll_fd_ = -1;
}

void HttpServer::Loop() {
  ::pthread_setname_np(::pthread_self(), "gdp-http");  // as top -H and perf show it
  std::array<epoll_event, 64> events{};
  for (;;) {
    int timeout_ms = -1;
    if (const auto next = NextDeadline(); next) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    const int n =
        ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) {
      log::Error("http endpoint: epoll_wait failed; not serving", {{"error", ErrnoString(errno)}});
      break;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == stop_fd_) {
        CloseAll();
        return;
      }
      if (fd == listen_fd_) {
        AcceptAll();
        continue;
      }
      if (fd == done_fd_) {
        TakeFinished();
        continue;
      }
      auto it = connections_.find(fd);
      if (it == connections_.end()) continue;  // closed earlier in this round
      if (it->second.waiting) {
        Close(fd);  // the client hung up (or broke the protocol) while its answer was made
      } else if (it->second.writing) {
        Write(it->second);
      } else {
        Read(it->second);
      }
    }
    Expire(Clock::now());
  }
  CloseAll();
}

std::optional<HttpServer::Clock::time_point> HttpServer::NextDeadline() const {
  std::optional<Clock::time_point> next;
  if (!readers_.empty()) next = readers_.begin()->first;
  for (const Deadlines* set : {&writers_, &waiters_}) {
    if (!set->empty() && (!next || set->begin()->first < *next)) next = set->begin()->first;
  }
  if (accept_paused_until_ && (!next || *accept_paused_until_ < *next)) {
    next = accept_paused_until_;
  }
  return next;
}

void HttpServer::AcceptAll() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      if ((errno == EMFILE || errno == ENFILE) && EvictOldestReader()) continue;
      // Out of descriptors with none to free: stop accepting for a while (the
      // kernel keeps the backlog) rather than spin on a readable listener.
      log::Warn("http endpoint: accept failed; pausing accepts for 100 ms",
                {{"error", ErrnoString(errno)}});
      epoll_event ev{};
      ev.data.fd = listen_fd_;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
      accept_paused_until_ = Clock::now() + std::chrono::milliseconds(100);
      return;
    }
    if (connections_.size() >= limits_.max_connections && !EvictOldestReader()) {
      ::close(fd);  // every connection is sending its answer: the newcomer waits its turn
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      continue;
    }
    Connection& c = connections_[fd];
    c.fd = fd;
    c.serial = ++next_serial_;
    c.deadline = Clock::now() + limits_.head_timeout;  // the TLS handshake included
    readers_.insert({c.deadline, fd});
    if (tls_ != nullptr) {
      MaybeReloadTls();
      c.ssl = SSL_new(tls_);
      if (c.ssl == nullptr || SSL_set_fd(c.ssl, fd) != 1) {
        Close(fd);
        continue;
      }
      SSL_set_accept_state(c.ssl);
    }
  }
}

bool HttpServer::EvictOldestReader() {
  if (readers_.empty()) return false;
  const int fd = readers_.begin()->second;
  ++evicted_;
  const auto now = Clock::now();
  if (!last_limit_log_ || now - *last_limit_log_ >= kLimitLogInterval) {
    log::Warn(
        "http endpoint: connection limit reached; closing the connections that have waited "
        "longest without sending a whole request",
        {{"limit", limits_.max_connections}, {"closed_since_last_report", evicted_}});
    last_limit_log_ = now;
    evicted_ = 0;
  }
  Close(fd);
  return true;
}

void HttpServer::Read(Connection& c) {
  if (c.ssl != nullptr && !c.handshaken) {
    ERR_clear_error();
    const int r = SSL_accept(c.ssl);
    if (r != 1) {
      const int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ) return Want(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return Want(c, EPOLLOUT);
      ERR_clear_error();
      Close(c.fd);  // not TLS (plain HTTP to a TLS port), or a handshake that failed
      return;
    }
    c.handshaken = true;
    Want(c, EPOLLIN);
  }
  char buf[4096];
  for (;;) {
    ssize_t n = 0;
    if (c.ssl != nullptr) {
      ERR_clear_error();
      const int r = SSL_read(c.ssl, buf, sizeof buf);
      if (r <= 0) {
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_WANT_WRITE) return Want(c, EPOLLOUT);
        ERR_clear_error();
        Close(c.fd);
        return;
      }
      n = r;
    } else {
      n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        Close(c.fd);  // closed (or failed) before a whole request
        return;
      }
    }
    // Search from just before the new bytes: the blank line may straddle reads.
    const size_t from = c.in.size() < 3 ? 0 : c.in.size() - 3;
    c.in.append(buf, static_cast<size_t>(n));
    const size_t end = c.in.find("\r\n\r\n", from);
    if (end <= kMaxHead) {  // found (npos is larger) and within the limit
      detail::RequestHead request = detail::ParseRequestHead(std::string_view(c.in).substr(0, end));
      if (std::optional<HttpResponse> answer = Answer(c, request); answer) {
        Respond(c, detail::RenderResponse(request, *answer));
      }
      return;
    }
    if (c.in.size() > kMaxHead) {
      detail::RequestHead request;
      request.method = "GET";
      Respond(c, detail::RenderResponse(
                     request, {431, "text/plain; charset=utf-8", "request head over 16 KiB\n"}));
      return;
    }
  }
}

void HttpServer::Respond(Connection& c, std::string out) {
  (c.waiting ? waiters_ : readers_).erase({c.deadline, c.fd});
  c.waiting = false;
  c.in.clear();
  c.in.shrink_to_fit();
  c.out = std::move(out);
  c.writing = true;
  c.deadline = Clock::now() + limits_.send_timeout;
  writers_.insert({c.deadline, c.fd});
  Want(c, EPOLLOUT);
  Write(c);
}

void HttpServer::Write(Connection& c) {
  while (c.sent < c.out.size()) {
    if (c.ssl != nullptr) {
      ERR_clear_error();
      const size_t left = std::min<size_t>(c.out.size() - c.sent, 1 << 30);
      const int r = SSL_write(c.ssl, c.out.data() + c.sent, static_cast<int>(left));
      if (r <= 0) {
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) return;
        if (e == SSL_ERROR_WANT_READ) return Want(c, EPOLLIN);
        ERR_clear_error();
        break;
      }
      c.sent += static_cast<size_t>(r);
      continue;
    }
    const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;  // epoll says when it can take more
    if (n <= 0) break;
    c.sent += static_cast<size_t>(n);
  }
  if (c.sent == c.out.size()) {
    if (c.ssl != nullptr) SSL_shutdown(c.ssl);  // close_notify; no wait for the peer's
    ::shutdown(c.fd, SHUT_WR);
  }
  Close(c.fd);
}

void HttpServer::Expire(Clock::time_point now) {
  while (!readers_.empty() && readers_.begin()->first <= now) Close(readers_.begin()->second);
  while (!writers_.empty() && writers_.begin()->first <= now) Close(writers_.begin()->second);
  while (!waiters_.empty() && waiters_.begin()->first <= now) {
    detail::RequestHead request;
    request.method = "GET";
    Respond(connections_.at(waiters_.begin()->second),
            detail::RenderResponse(request, {503, "text/plain; charset=utf-8",
                                             "no answer in time (the API server may be slow "
                                             "or unreachable); try again\n"}));
  }
  if (accept_paused_until_ && *accept_paused_until_ <= now) {
    accept_paused_until_.reset();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
  }
}

void HttpServer::Close(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  const Connection& c = it->second;
  (c.writing ? writers_ : c.waiting ? waiters_ : readers_).erase({c.deadline, fd});
  if (c.waiting) {
    std::lock_guard<std::mutex> lock(work_mu_);
    abandoned_.insert(c.serial);  // the worker skips it (or has it in hand)
  }
  if (it->second.ssl != nullptr) SSL_free(it->second.ssl);
  ::close(fd);  // also takes it out of the epoll set
  connections_.erase(it);
}

void HttpServer::CloseAll() {
  while (!connections_.empty()) Close(connections_.begin()->first);
}

std::optional<HttpResponse> HttpServer::Answer(Connection& c, const detail::RequestHead& request) {
  constexpr const char* kText = "text/plain; charset=utf-8";
  if (request.error != 0) return HttpResponse{request.error, kText, request.reason + "\n"};
  if (request.method != "GET" && request.method != "HEAD") {
    return HttpResponse{405, kText, "only GET and HEAD are served\n"};
  }
  auto it = handlers_.find(request.path);
  if (it == handlers_.end()) return HttpResponse{404, kText, "404 page not found\n"};
  const Route route = it->second.route;
  bool authorize = authorizer_ != nullptr && route.guarded;
  if (authorize) {
    if (request.bearer_token.empty()) {
      return HttpResponse{401, kText,
                          "this endpoint needs a Kubernetes bearer token (Authorization: Bearer "
                          "<token>) whose user may get " +
                              request.path + "\n"};
    }
    if (!IsBearerToken(request.bearer_token)) {  // not worth asking the API server about
      return HttpResponse{401, kText, "the token is not valid: not an RFC 6750 bearer token\n"};
    }
    if (std::optional<RequestAuthorizer::Decision> d =
            authorizer_->Cached(request.bearer_token, request.path);
        d) {
      if (d->status != 200) return HttpResponse{d->status, kText, d->reason + "\n"};
      authorize = false;
    }
  }
  if (!authorize && !route.blocking) return Run(request.path);
  if (pending_ >= limits_.max_pending) {
    return HttpResponse{503, kText,
                        absl::StrCat("busy: ", pending_,
                                     " requests are waiting for an answer already; try again\n")};
  }
  Enqueue(c, request, authorize);
  return std::nullopt;
}

HttpResponse HttpServer::Run(const std::string& path) const {
  try {
    return handlers_.find(path)->second.handler();
  } catch (const std::exception& e) {
    log::Error("http handler failed", {{"path", path}, {"error", e.what()}});
    return {500, "text/plain; charset=utf-8", "internal error; see the daemon's log\n"};
  }
}

void HttpServer::Enqueue(Connection& c, detail::RequestHead request, bool authorize) {
  readers_.erase({c.deadline, c.fd});
  c.in.clear();
  c.in.shrink_to_fit();
  c.waiting = true;
  c.deadline = Clock::now() + limits_.work_timeout;
  waiters_.insert({c.deadline, c.fd});
  // Until the answer is ready only a reset matters (EPOLLHUP and EPOLLERR are always
  // reported): a client that half-closed after its request still gets its answer.
  Want(c, 0);
  ++pending_;
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    jobs_.push_back(Job{c.fd, c.serial, std::move(request), authorize, c.deadline});
  }
  if (!worker_.joinable()) worker_ = std::thread([this] { Work(); });
  work_cv_.notify_one();
}

void HttpServer::Work() {
  ::pthread_setname_np(::pthread_self(), "gdp-http-work");
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(work_mu_);
      work_cv_.wait(lock, [this] { return work_stop_ || !jobs_.empty(); });
      if (work_stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // A request whose client is gone or whose deadline passed is not worth a review.
    auto abandoned = [&] {
      std::lock_guard<std::mutex> lock(work_mu_);
      return abandoned_.count(job.serial) != 0 || Clock::now() >= job.deadline;
    };
    std::string out;
    if (!abandoned()) {
      std::optional<HttpResponse> denied;
      if (job.authorize) {
        RequestAuthorizer::Decision d;
        try {
          d = authorizer_->Authorize(job.request.bearer_token, job.request.path);
        } catch (const std::exception& e) {
          log::Error("http endpoint: checking a caller failed", {{"error", e.what()}});
          d = RequestAuthorizer::Decision{503, "cannot check the token; see the daemon's log"};
        }
        if (d.status != 200) {
          denied = HttpResponse{d.status, "text/plain; charset=utf-8", std::move(d.reason) + "\n"};
        }
      }
      if (denied || !abandoned()) {
        out = detail::RenderResponse(job.request, denied ? *denied : Run(job.request.path));
      }
    }
    {
      std::lock_guard<std::mutex> lock(work_mu_);
      abandoned_.erase(job.serial);
      finished_.push_back(Finished{job.fd, job.serial, std::move(out)});  // empty: nobody waits
    }
    const uint64_t one = 1;
    if (::write(done_fd_, &one, sizeof one) != sizeof one) {
      log::Error("http endpoint: the worker cannot wake the loop", {{"error", ErrnoString(errno)}});
    }
  }
}

void HttpServer::TakeFinished() {
  uint64_t count = 0;
  if (::read(done_fd_, &count, sizeof count) < 0 && errno != EAGAIN) {
    log::Warn("http endpoint: reading its eventfd failed", {{"error", ErrnoString(errno)}});
  }
  std::vector<Finished> finished;
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    finished.swap(finished_);
  }
  for (Finished& f : finished) {
    --pending_;
    auto it = connections_.find(f.fd);
    // Gone, timed out, or the descriptor reused by a newer connection: dropped.
    if (it == connections_.end() || !it->second.waiting || it->second.serial != f.serial) continue;
    if (f.out.empty()) {  // skipped: its deadline passed as the worker took it
      detail::RequestHead request;
      request.method = "GET";
      f.out = detail::RenderResponse(
          request, {503, "text/plain; charset=utf-8", "no answer in time; try again\n"});
    }
    Respond(it->second, std::move(f.out));
  }
}

}  // namespace gdp::metrics
