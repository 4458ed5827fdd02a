#include "src/kube/scripted_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace gdp::kube::test_util {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Waits for `fd` to be readable until `deadline`.
bool WaitReadable(int fd, SteadyClock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) return false;
    pollfd p = {fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 410:
      return "Gone";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

}  // namespace

ScriptedConnection::ScriptedConnection(int fd, std::string head) : fd_(fd), head_(std::move(head)) {
  // "GET /path?query HTTP/1.1"
  size_t sp1 = head_.find(' ');
  size_t sp2 = sp1 == std::string::npos ? sp1 : head_.find(' ', sp1 + 1);
  if (sp2 != std::string::npos) {
    method_ = head_.substr(0, sp1);
    target_ = head_.substr(sp1 + 1, sp2 - sp1 - 1);
  }
}

ScriptedConnection::~ScriptedConnection() { Close(); }

void ScriptedConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool ScriptedConnection::Write(std::string_view bytes) {
  while (!bytes.empty()) {
    if (fd_ < 0) return false;
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool ScriptedConnection::StartChunked(int status) {
  return Write(absl::StrCat("HTTP/1.1 ", status, " ", Reason(status),
                            "\r\nContent-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"));
}

bool ScriptedConnection::Chunk(std::string_view data) {
  if (data.empty()) return true;  // an empty chunk would end the body
  return Write(absl::StrCat(absl::Hex(data.size()), "\r\n", std::string(data), "\r\n"));
}

bool ScriptedConnection::EndChunks() { return Write("0\r\n\r\n"); }

bool ScriptedConnection::Respond(int status, std::string_view body) {
  return Write(absl::StrCat("HTTP/1.1 ", status, " ", Reason(status),
                            "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                            "\r\nConnection: close\r\n\r\n", std::string(body)));
}

bool ScriptedConnection::WaitForClientClose(std::chrono::milliseconds wait) {
  const SteadyClock::time_point deadline = SteadyClock::now() + wait;
  char buf[4096];
  while (fd_ >= 0 && WaitReadable(fd_, deadline)) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // the end, or a reset
  }
  return false;
}

ScriptedServer::ScriptedServer() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return;
  }
  fd_ = fd;
  port_ = ntohs(addr.sin_port);
}

ScriptedServer::~ScriptedServer() {
  if (fd_ >= 0) ::close(fd_);
}

std::string ScriptedServer::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

std::unique_ptr<ScriptedConnection> ScriptedServer::Accept(std::chrono::milliseconds wait) {
  const SteadyClock::time_point deadline = SteadyClock::now() + wait;
  if (fd_ < 0 || !WaitReadable(fd_, deadline)) return nullptr;
  int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return nullptr;
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (!WaitReadable(conn, deadline)) {
      ::close(conn);
      return nullptr;
    }
    ssize_t n = ::recv(conn, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(conn);
      return nullptr;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  // The requests a client of the API server sends (GET) have no body.
  return std::make_unique<ScriptedConnection>(conn, head.substr(0, head.find("\r\n\r\n")));
}

BackgroundWatch::BackgroundWatch(ApiClient& client, std::string path,
                                 std::chrono::milliseconds timeout,
                                 std::function<bool(const WatchEvent&)> keep_going)
    : thread_([this, &client, path = std::move(path), timeout, keep_going = std::move(keep_going)] {
        absl::Status s = client.Watch(
            path,
            [&](const WatchEvent& event) {
              {
                std::lock_guard<std::mutex> lock(mu_);
                events_.push_back(event);
              }
              cv_.notify_all();
              return keep_going == nullptr || keep_going(event);
            },
            cancel_, timeout);
        {
          std::lock_guard<std::mutex> lock(mu_);
          result_ = s;
        }
        cv_.notify_all();
      }) {}

BackgroundWatch::~BackgroundWatch() {
  cancel_.Cancel();
  thread_.join();
}

bool BackgroundWatch::WaitForEvents(size_t n, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, wait, [&] { return events_.size() >= n; });
}

std::optional<absl::Status> BackgroundWatch::WaitForResult(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [&] { return result_.has_value(); });
  return result_;
}

std::vector<WatchEvent> BackgroundWatch::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

bool BackgroundWatch::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return result_.has_value();
}

}  // namespace gdp::kube::test_util
