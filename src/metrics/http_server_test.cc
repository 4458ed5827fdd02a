#include "src/metrics/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace gdp::metrics {
namespace {

using ::testing::HasSubstr;

// A connected socket to 127.0.0.1:port.
int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// Sends `request` raw over a new connection to 127.0.0.1:port and returns all
// the server wrote before closing.
std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (431) and close before it has read it all
    sent += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
  ::close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Handle("/readyz", [this] {
      ++calls_;
      return HttpResponse{503, "text/plain", "not ready: NVML not initialised\n"};
    });
    server_.Handle("/throws", []() -> HttpResponse { throw std::runtime_error("boom"); });
    ASSERT_TRUE(server_.Start().ok());
    ASSERT_GT(server_.port(), 0);
  }

  HttpServer server_{"127.0.0.1", 0};
  std::atomic<int> calls_{0};
};

TEST_F(HttpServerTest, ServesRegisteredHandlersToAnHttpClient) {
  httplib::Client client("127.0.0.1", server_.port());
  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not ready: NVML not initialised\n");
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain");
  EXPECT_EQ(calls_.load(), 1);

  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HttpServerTest, AnswersEveryKindOfRequestWithTheRightStatus) {
  struct Case {
    const char* name;
    std::string request;
    std::string status_line;
    bool has_body;
  };
  const std::string big(20 * 1024, 'a');
  const Case cases[] = {
      {"get", "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 503 Service Unavailable", true},
      {"http/1.0", "GET /readyz HTTP/1.0\r\n\r\n", "HTTP/1.1 503 ", true},
      {"query string ignored", "GET /readyz?x=1 HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", true},
      {"head has no body", "HEAD /readyz HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", false},
      {"post", "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 ", true},
      {"unknown path", "GET /readyzz HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ", true},
      {"prefix is not a match", "GET /ready HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ", true},
      {"garbage", "hello\r\n\r\n", "HTTP/1.1 400 ", true},
      {"absolute target", "GET http://x/readyz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ", true},
      {"header without colon", "GET /readyz HTTP/1.1\r\nbad header\r\n\r\n", "HTTP/1.1 400 ", true},
      {"http/2", "GET /readyz HTTP/2.0\r\n\r\n", "HTTP/1.1 505 ", true},
      {"head too large", "GET /readyz HTTP/1.1\r\nX: " + big + "\r\n\r\n", "HTTP/1.1 431 ", true},
      {"handler throws", "GET /throws HTTP/1.1\r\n\r\n", "HTTP/1.1 500 ", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string out = Exchange(server_.port(), c.request);
    EXPECT_EQ(out.substr(0, c.status_line.size()), c.status_line) << out.substr(0, 200);
    EXPECT_NE(out.find("\r\nConnection: close\r\n"), std::string::npos);
    size_t blank = out.find("\r\n\r\n");
    ASSERT_NE(blank, std::string::npos);
    EXPECT_EQ(blank + 4 < out.size(), c.has_body) << out;
  }
  EXPECT_NE(Exchange(server_.port(), "PUT / HTTP/1.1\r\n\r\n").find("\r\nAllow: GET, HEAD\r\n"),
            std::string::npos);
}

TEST_F(HttpServerTest, ARequestSplitAcrossWritesIsReadWhole) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  for (const char* part : {"GET /rea", "dyz HTTP/1.1\r\n", "\r", "\n"}) {
    ASSERT_GT(::send(fd, part, std::strlen(part), MSG_NOSIGNAL), 0);
  }
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
  ::close(fd);
  EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 503");
}

// Whether the server has closed `fd` (EOF or reset) within `wait`.
bool ClosedWithin(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

// Idle, half-sent and trickling connections, more than the limit, do not keep
// a probe out or delay it: it is answered while they are all open, and the
// ones that waited longest are the ones closed.
TEST(HttpServerAbuseTest, ProbesAreServedPastIdleHalfSentAndSlowConnections) {
  HttpLimits limits;
  limits.max_connections = 16;
  limits.head_timeout = std::chrono::seconds(30);  // only the limit closes them here
  HttpServer server("127.0.0.1", 0, limits);
  server.Handle("/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  ASSERT_TRUE(server.Start().ok());
  std::vector<int> idle;
  for (int i = 0; i < 40; ++i) {
    idle.push_back(Connect(server.port()));
    // A third send nothing, a third half a request line, a third all but the blank line.
    const char* part = i % 3 == 0 ? "" : i % 3 == 1 ? "GET /hea" : "GET /healthz HTTP/1.1\r\n";
    if (*part != '\0') {
      ASSERT_GT(::send(idle.back(), part, std::strlen(part), MSG_NOSIGNAL), 0);
    }
  }
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(Exchange(server.port(), "GET /healthz HTTP/1.1\r\n\r\n").substr(0, 12),
              "HTTP/1.1 200")
        << "round " << round;
  }
  // At most 16 stay open: the oldest went first.
  EXPECT_TRUE(ClosedWithin(idle.front(), std::chrono::seconds(10)));
  EXPECT_FALSE(ClosedWithin(idle.back(), std::chrono::milliseconds(50)));
  // A recent connection that was only slow (it sent all but the blank line)
  // still gets its answer.
  const int slow = idle[38];
  ASSERT_GT(::send(slow, "\r\n", 2, MSG_NOSIGNAL), 0);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::recv(slow, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
  EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 200");
  for (int fd : idle) ::close(fd);
}

// The head deadline counts from the connection, not from the last byte: a
// client trickling a byte at a time is closed when it runs out.
TEST(HttpServerAbuseTest, ATricklingClientIsClosedAtItsHeadDeadline) {
  HttpLimits limits;
  limits.head_timeout = std::chrono::milliseconds(300);
  HttpServer server("127.0.0.1", 0, limits);
  ASSERT_TRUE(server.Start().ok());
  const int fd = Connect(server.port());
  const std::string request = "GET /healthz HTTP/1.1\r\nX-Slow: ";
  bool closed = false;
  for (int i = 0; i < 200 && !closed; ++i) {  // 200 bytes at 50 ms would take 10 s
    ::send(fd, request.c_str() + (i % request.size()), 1, MSG_NOSIGNAL);
    closed = ClosedWithin(fd, std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(closed);
  ::close(fd);
}

TEST_F(HttpServerTest, StopEndsConnectionsThatSendNothing) {
  // Idle connections are open; Stop() must still return, and must not wait
  // for their deadline (a hang here fails by ctest's timeout).
  int fds[2];
  for (int& fd : fds) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  server_.Stop();
  for (int fd : fds) {
    char c;
    // Closed, nothing sent: an orderly close once accepted, a reset while
    // still in the listen queue.
    EXPECT_LE(::recv(fd, &c, 1, 0), 0);
    ::close(fd);
  }
  server_.Stop();  // idempotent
}

// A RequestAuthorizer from a table: "good" may read everything, "nobody" is
// a valid token without the right, anything else is not a valid token. Each
// answer is cached once made; Authorize waits while `hold` is set.
class TableAuthorizer : public RequestAuthorizer {
 public:
  std::optional<Decision> Cached(std::string_view token, std::string_view path) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(std::string(token) + " " + std::string(path));
    if (it == cache_.end()) return std::nullopt;
    return it->second;
  }
  Decision Authorize(std::string_view token, std::string_view path) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++asked_;
    cv_.wait(lock, [this] { return !hold_; });
    Decision d = token == "good"     ? Decision{}
                 : token == "nobody" ? Decision{403, "nobody may not get " + std::string(path)}
                                     : Decision{401, "the token is not valid"};
    cache_[std::string(token) + " " + std::string(path)] = d;
    return d;
  }
  void Hold(bool hold) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      hold_ = hold;
    }
    cv_.notify_all();
  }
  int asked() {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int asked_ = 0;
  std::map<std::string, Decision> cache_;
};

std::string Get(int port, const std::string& path, const std::string& token = "") {
  std::string request = "GET " + path + " HTTP/1.1\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  return Exchange(port, request + "\r\n");
}

// An open /healthz and a /metrics that needs the authorizer's yes.
void ServeGuardedMetrics(HttpServer& server) {
  server.Handle("/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  server.Handle(
      "/metrics",
      [] {
        return HttpResponse{200, "text/plain", "gpus 8\n"};
      },
      Route{.guarded = true});
}

TEST(HttpServerAuthTest, GuardedPathsNeedATokenWhoseUserMayReadThem) {
  TableAuthorizer auth;
  HttpServer server("127.0.0.1", 0);
  ServeGuardedMetrics(server);
  server.UseAuthorizer(&auth);
  ASSERT_TRUE(server.Start().ok());

  const std::string none = Get(server.port(), "/metrics");
  EXPECT_EQ(none.substr(0, 12), "HTTP/1.1 401");
  EXPECT_THAT(none, HasSubstr("WWW-Authenticate: Bearer"));
  EXPECT_THAT(none, HasSubstr("needs a Kubernetes bearer token"));
  EXPECT_EQ(auth.asked(), 0) << "no token: nothing to ask";
  EXPECT_EQ(Get(server.port(), "/metrics", "forged").substr(0, 12), "HTTP/1.1 401");
  const std::string nobody = Get(server.port(), "/metrics", "nobody");
  EXPECT_EQ(nobody.substr(0, 12), "HTTP/1.1 403");
  EXPECT_THAT(nobody, HasSubstr("nobody may not get /metrics"));
  const std::string good = Get(server.port(), "/metrics", "good");
  EXPECT_EQ(good.substr(0, 12), "HTTP/1.1 200");
  EXPECT_THAT(good, HasSubstr("gpus 8"));
  EXPECT_EQ(auth.asked(), 3);
  // Cached answers are taken without asking again; the scheme's case does not matter.
  EXPECT_EQ(
      Exchange(server.port(), "GET /metrics HTTP/1.1\r\nauthorization: bearer   good \r\n\r\n")
          .substr(0, 12),
      "HTTP/1.1 200");
  EXPECT_EQ(Get(server.port(), "/metrics", "nobody").substr(0, 12), "HTTP/1.1 403");
  EXPECT_EQ(auth.asked(), 3);
  // A token that is not RFC 6750's is refused without asking (nor throwing on bad UTF-8).
  EXPECT_EQ(Get(server.port(), "/metrics", "\xff\xfe").substr(0, 12), "HTTP/1.1 401");
  EXPECT_EQ(Get(server.port(), "/metrics", "a b").substr(0, 12), "HTTP/1.1 401");
  EXPECT_EQ(auth.asked(), 3);
  // A client that half-closes after its request still gets the answer, also one
  // the worker makes.
  {
    const int fd = Connect(server.port());
    const std::string req = "GET /metrics HTTP/1.0\r\nAuthorization: Bearer fresh\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    ::shutdown(fd, SHUT_WR);
    std::string out;
    char buf[512];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
    ::close(fd);
    EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 401") << out;  // "fresh" is not in the table
    EXPECT_EQ(auth.asked(), 4);
  }
  // Probes stay open; a token that is not a bearer token is no token.
  EXPECT_EQ(Get(server.port(), "/healthz").substr(0, 12), "HTTP/1.1 200");
  EXPECT_EQ(
      Exchange(server.port(), "GET /metrics HTTP/1.1\r\nAuthorization: Basic Z29vZA==\r\n\r\n")
          .substr(0, 12),
      "HTTP/1.1 401");
}

// An authorizer that takes long (an API server that does not answer) and a
// handler that blocks delay no probe, and the requests behind them get their
// answer once it comes; past max_pending a request is refused at once.
TEST(HttpServerAuthTest, SlowAuthorizationAndBlockingHandlersDelayNoProbe) {
  TableAuthorizer auth;
  HttpLimits limits;
  limits.max_pending = 1;
  HttpServer server("127.0.0.1", 0, limits);
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  ServeGuardedMetrics(server);
  server.Handle(
      "/allocations",
      [&] {
        std::unique_lock<std::mutex> lock(mu);
        entered = true;
        cv.notify_all();
        cv.wait(lock, [&] { return release; });
        return HttpResponse{200, "application/json", "{}"};
      },
      Route{.blocking = true});
  server.UseAuthorizer(&auth);
  ASSERT_TRUE(server.Start().ok());

  // An authorisation that does not come back.
  auth.Hold(true);
  std::string scraped;
  std::thread scrape([&] { scraped = Get(server.port(), "/metrics", "good"); });
  while (auth.asked() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Get(server.port(), "/healthz").substr(0, 12), "HTTP/1.1 200");
  }
  // One waits for the worker already: more are refused rather than queued.
  const std::string busy = Get(server.port(), "/metrics", "other");
  EXPECT_EQ(busy.substr(0, 12), "HTTP/1.1 503");
  EXPECT_THAT(busy, HasSubstr("busy"));
  EXPECT_EQ(Get(server.port(), "/allocations").substr(0, 12), "HTTP/1.1 503");
  auth.Hold(false);
  scrape.join();
  EXPECT_EQ(scraped.substr(0, 12), "HTTP/1.1 200");

  // A handler that blocks.
  std::string allocations;
  std::thread blocked([&] { allocations = Get(server.port(), "/allocations"); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return entered; });
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Get(server.port(), "/healthz").substr(0, 12), "HTTP/1.1 200");
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  blocked.join();
  EXPECT_EQ(allocations.substr(0, 12), "HTTP/1.1 200");
  EXPECT_THAT(allocations, HasSubstr("{}"));
}

// A request whose answer takes longer than work_timeout gets a 503; the
// decision, made later, still serves the next request.
TEST(HttpServerAuthTest, AnAnswerThatTakesTooLongIsA503) {
  TableAuthorizer auth;
  HttpLimits limits;
  limits.work_timeout = std::chrono::milliseconds(1000);
  HttpServer server("127.0.0.1", 0, limits);
  ServeGuardedMetrics(server);
  server.UseAuthorizer(&auth);
  ASSERT_TRUE(server.Start().ok());
  auth.Hold(true);
  std::string queued;
  std::thread second([&] {
    while (auth.asked() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    queued = Get(server.port(), "/metrics", "nobody");  // behind the first, in the queue
  });
  const std::string late = Get(server.port(), "/metrics", "good");
  second.join();
  EXPECT_EQ(late.substr(0, 12), "HTTP/1.1 503");
  EXPECT_THAT(late, HasSubstr("no answer in time"));
  EXPECT_EQ(queued.substr(0, 12), "HTTP/1.1 503");
  auth.Hold(false);
  // The worker takes its queue in order: once a third request is answered,
  // the first was decided (and cached) and the second, past its deadline when
  // the worker came to it, was skipped without asking.
  EXPECT_EQ(Get(server.port(), "/metrics", "third").substr(0, 12), "HTTP/1.1 401");
  EXPECT_TRUE(auth.Cached("good", "/metrics").has_value());
  EXPECT_FALSE(auth.Cached("nobody", "/metrics").has_value());
  EXPECT_EQ(auth.asked(), 2);
  server.Stop();
}

TEST(HttpServerStartTest, PortInUseIsAClearError) {
  HttpServer first("127.0.0.1", 0);
  ASSERT_TRUE(first.Start().ok());
  HttpServer second("127.0.0.1", first.port());
  absl::Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("address in use"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--metrics-port"), std::string::npos) << s;
}

TEST(HttpServerStartTest, AnAddressThatIsNotThisHostsIsAClearError) {
  HttpServer server("not an address", 0);
  absl::Status s = server.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not an address"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--metrics-bind-address"), std::string::npos) << s;
}

TEST(HttpServerStartTest, ServesOnIPv6Loopback) {
  int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_loopback;
  bool has_v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0;
  if (probe >= 0) ::close(probe);
  if (!has_v6) GTEST_SKIP() << "no IPv6 loopback in this environment";

  HttpServer server("::1", 0);
  server.Handle("/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  ASSERT_TRUE(server.Start().ok());
  httplib::Client client("::1", server.port());
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "ok\n");
}

TEST(ParseRequestHeadTest, TakesThePathAndRefusesWhatIsNotHttp11) {
  struct Case {
    std::string head;
    int error;
    std::string method, path;
  };
  const Case cases[] = {
      {"GET /metrics HTTP/1.1", 0, "GET", "/metrics"},
      {"GET /metrics?name[]=x#frag HTTP/1.1\r\nAccept: */*\r\nX-Empty:", 0, "GET", "/metrics"},
      {"HEAD / HTTP/1.0", 0, "HEAD", "/"},
      {"GET  /metrics HTTP/1.1", 400, "", ""},
      {"GET /metrics", 400, "", ""},
      {"G(T /metrics HTTP/1.1", 400, "", ""},
      {"GET metrics HTTP/1.1", 400, "", ""},
      {"GET /a\x01 HTTP/1.1", 400, "", ""},
      {"GET / HTTP/1.1\r\n folded", 400, "", ""},
      {"GET / HTTP/1.1\r\n: no name", 400, "", ""},
      {"GET / HTTP/1.1\r\nBad Name: x", 400, "", ""},
      {"GET / HTTPS/1.1", 400, "", ""},
      {"GET / HTTP/3.0", 505, "", ""},
      {"", 400, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.head);
    detail::RequestHead r = detail::ParseRequestHead(c.head);
    EXPECT_EQ(r.error, c.error) << r.reason;
    EXPECT_EQ(r.method, c.method);
    EXPECT_EQ(r.path, c.path);
    EXPECT_EQ(r.reason.empty(), c.error == 0);
  }
}

// --- TLS ------------------------------------------------------------------------

// A self-signed certificate for 127.0.0.1 with this common name, made by the
// openssl command, as <dir>/<name>.crt and .key.
void MakeCertificate(const std::string& dir, const std::string& name, const std::string& cn) {
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + cn +
                          " -addext subjectAltName=IP:127.0.0.1 -keyout " + dir + "/" + name +
                          ".key -out " + dir + "/" + name + ".crt 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;  // NOLINT(concurrency-mt-unsafe)
}

// GET /healthz over TLS; the answer's status line and the server certificate's subject.
std::pair<std::string, std::string> TlsGet(int port) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  const int fd = Connect(port);
  SSL_set_fd(ssl, fd);
  std::string status, subject;
  if (SSL_connect(ssl) == 1) {
    if (X509* cert = SSL_get1_peer_certificate(ssl)) {
      char name[256];
      X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
      subject = name;
      X509_free(cert);
    }
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    SSL_write(ssl, req.data(), static_cast<int>(req.size()));
    std::string out;
    char buf[512];
    for (int n; (n = SSL_read(ssl, buf, sizeof buf)) > 0;) out.append(buf, n);
    status = out.substr(0, out.find("\r\n"));
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return {status, subject};
}

class TempFolder {
 public:
  TempFolder() {
    char tmpl[] = "/tmp/gdp-tls-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempFolder() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// TLS serves the probe; a plain HTTP client gets nothing; a renewed certificate
// is served to new connections; a broken renewal keeps the last good pair.
TEST(HttpServerTlsTest, ServesTlsAndReloadsARenewedCertificate) {
  TempFolder dir;
  MakeCertificate(dir.path(), "a", "first");
  MakeCertificate(dir.path(), "b", "second");
  const std::string crt = dir.path() + "/tls.crt", key = dir.path() + "/tls.key";
  std::filesystem::copy_file(dir.path() + "/a.crt", crt);
  std::filesystem::copy_file(dir.path() + "/a.key", key);
  HttpLimits limits;
  limits.tls_check_interval = std::chrono::milliseconds(50);
  HttpServer server("127.0.0.1", 0, limits);
  server.Handle("/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  ASSERT_TRUE(server.UseTls(crt, key).ok());
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(TlsGet(server.port()),
            std::make_pair(std::string("HTTP/1.1 200 OK"), std::string("/CN=first")));
  EXPECT_EQ(Exchange(server.port(), "GET /healthz HTTP/1.1\r\n\r\n").find("HTTP/1.1"),
            std::string::npos);
  // Renewed (as a Secret's files are: replaced, not edited in place).
  std::filesystem::copy_file(dir.path() + "/b.crt", crt + ".new");
  std::filesystem::copy_file(dir.path() + "/b.key", key + ".new");
  std::filesystem::rename(key + ".new", key);
  std::filesystem::rename(crt + ".new", crt);
  bool renewed = false;
  for (int i = 0; i < 200 && !renewed; ++i) {
    renewed = TlsGet(server.port()).second == "/CN=second";
    if (!renewed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(renewed);
  // A certificate that no longer matches its key: the last good pair stays.
  std::filesystem::copy_file(dir.path() + "/a.crt", crt,
                             std::filesystem::copy_options::overwrite_existing);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(TlsGet(server.port()),
            std::make_pair(std::string("HTTP/1.1 200 OK"), std::string("/CN=second")));
}

TEST(HttpServerTlsTest, ABadCertificateOrKeyIsAClearError) {
  TempFolder dir;
  MakeCertificate(dir.path(), "a", "first");
  MakeCertificate(dir.path(), "b", "second");
  HttpServer server("127.0.0.1", 0);
  absl::Status s = server.UseTls(dir.path() + "/missing.crt", dir.path() + "/a.key");
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("cannot load the TLS certificate " + dir.path() + "/missing.crt"));
  s = server.UseTls(dir.path() + "/a.crt", dir.path() + "/b.key");
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot load the TLS key " + dir.path() +
                                                  "/b.key (is it the PEM key of "
                                                  "the certificate " +
                                                  dir.path() + "/a.crt?)"));
}

}  // namespace
}  // namespace gdp::metrics
