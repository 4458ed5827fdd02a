// OpenSslApiClient against real HTTP and HTTPS servers on 127.0.0.1 (cpp-httplib),
// with a CA and certificates made by the test.
#include "src/kube/openssl_api_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/kube/scripted_server.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::kube {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// What the server saw of the last request.
struct Seen {
  std::mutex mu;
  std::string method, path, query, content_type, authorization, accept, body;
};

// A server on 127.0.0.1, port chosen by the kernel, serving on its own thread.
class TestServer {
 public:
  explicit TestServer(std::unique_ptr<httplib::Server> server) : server_(std::move(server)) {
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Server& server() { return *server_; }
  int port() const { return port_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
};

void Record(Seen* seen, const httplib::Request& req) {
  std::lock_guard<std::mutex> lock(seen->mu);
  seen->method = req.method;
  seen->path = req.path;
  std::string q;
  for (const auto& [k, v] : req.params) absl::StrAppend(&q, q.empty() ? "" : "&", k, "=", v);
  seen->query = q;
  seen->content_type = req.get_header_value("Content-Type");
  seen->authorization = req.get_header_value("Authorization");
  seen->accept = req.get_header_value("Accept");
  seen->body = req.body;
}

class OpenSslApiClientTest : public ::testing::Test {
 protected:
  OpenSslApiClientTest() : server_(std::make_unique<httplib::Server>()) {
    auto echo = [this](const httplib::Request& req, httplib::Response& res) {
      Record(&seen_, req);
      res.set_content(json{{"kind", "Node"}, {"method", req.method}}.dump(), "application/json");
    };
    server_.server().Get("/api/v1/nodes/n1", echo);
    server_.server().Patch("/api/v1/nodes/n1", echo);
    server_.server().Post("/api/v1/namespaces/default/events", echo);
    server_.server().Get("/forbidden", [](const httplib::Request&, httplib::Response& res) {
      res.status = 403;
      res.set_content(R"({"kind":"Status","status":"Failure","reason":"Forbidden",)"
                      R"("message":"nodes \"n1\" is forbidden","code":403})",
                      "application/json");
    });
    server_.server().Get("/html", [](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content("<html>down</html>", "text/html");
    });
    server_.server().Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
      // Sent as chunks, the way the API server sends a long list.
      res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
        std::string items;
        for (int i = 0; i < 2000; ++i) absl::StrAppend(&items, i == 0 ? "" : ",", i);
        std::string text = absl::StrCat(R"({"items":[)", items, "]}");
        for (size_t at = 0; at < text.size(); at += 1000)
          sink.write(text.data() + at, std::min<size_t>(1000, text.size() - at));
        sink.done();
        return true;
      });
    });
    server_.server().Get("/prefix/api/v1/nodes/n1",
                         [](const httplib::Request&, httplib::Response& res) {
                           res.set_content(R"({"kind":"Node","via":"prefix"})", "application/json");
                         });
    server_.server().Get("/notjson", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("hello", "text/plain");
    });
    server_.server().Get("/slow", [this](const httplib::Request&, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(slow_mu_);
      slow_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return release_slow_; });
      res.set_content("{}", "application/json");
    });
  }
  ~OpenSslApiClientTest() override {
    {
      std::lock_guard<std::mutex> lock(slow_mu_);
      release_slow_ = true;
    }
    slow_cv_.notify_all();
  }

  RestConfig Config() {
    RestConfig c;
    c.server = absl::StrCat("http://127.0.0.1:", server_.port());
    c.token = "s3cret";
    c.source = "test";
    return c;
  }

  Seen seen_;
  std::mutex slow_mu_;
  std::condition_variable slow_cv_;
  bool release_slow_ = false;
  TestServer server_;
};

TEST_F(OpenSslApiClientTest, GetSendsTokenAndDecodesJson) {
  OpenSslApiClient client(Config());
  auto r = client.Get("/api/v1/nodes/n1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["kind"], "Node");
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.method, "GET");
  EXPECT_EQ(seen_.authorization, "Bearer s3cret");
  EXPECT_EQ(seen_.accept, "application/json");
}

TEST_F(OpenSslApiClientTest, ApplyPatchSendsFieldManagerForceAndContentType) {
  OpenSslApiClient client(Config());
  json body = {{"apiVersion", "v1"},
               {"kind", "Node"},
               {"metadata", {{"name", "n1"}, {"labels", {{"nvidia.com/gpu.count", "8"}}}}}};
  auto r = client.Patch("/api/v1/nodes/n1", PatchType::kApply, body,
                        PatchOptions{.field_manager = "gpu-device-plugin", .force = true});
  ASSERT_TRUE(r.ok()) << r.status();
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.method, "PATCH");
  EXPECT_EQ(seen_.content_type, "application/apply-patch+yaml");
  EXPECT_EQ(seen_.query, "fieldManager=gpu-device-plugin&force=true");
  EXPECT_EQ(json::parse(seen_.body), body);
}

TEST_F(OpenSslApiClientTest, MergeAndStrategicPatchContentTypes) {
  OpenSslApiClient client(Config());
  for (PatchType type : {PatchType::kMerge, PatchType::kStrategicMerge, PatchType::kJson}) {
    ASSERT_TRUE(client.Patch("/api/v1/nodes/n1", type, json::object(), {}).ok());
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.content_type, ContentType(type));
    EXPECT_EQ(seen_.query, "");
  }
}

TEST_F(OpenSslApiClientTest, ApplyWithoutFieldManagerIsRefusedBeforeSending) {
  OpenSslApiClient client(Config());
  auto r = client.Patch("/api/v1/nodes/n1", PatchType::kApply, json::object(), {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.method, "");
}

TEST_F(OpenSslApiClientTest, PostSendsJson) {
  OpenSslApiClient client(Config());
  json event = {{"kind", "Event"}, {"reason", "GpuXid"}};
  ASSERT_TRUE(client.Post("/api/v1/namespaces/default/events", event).ok());
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.method, "POST");
  EXPECT_EQ(seen_.content_type, "application/json");
  EXPECT_EQ(json::parse(seen_.body), event);
}

TEST_F(OpenSslApiClientTest, ErrorsCarryStatusAndApiMessage) {
  OpenSslApiClient client(Config());
  std::string base = Config().server;
  auto forbidden = client.Get("/forbidden");
  EXPECT_EQ(forbidden.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(forbidden.status().message(),
              HasSubstr(absl::StrCat(
                  "GET ", base, "/forbidden: HTTP 403 (Forbidden): nodes \"n1\" is forbidden")));
  auto html = client.Get("/html");
  EXPECT_EQ(html.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(html.status().message(), HasSubstr("HTTP 503: \"<html>down</html>\""));
  auto missing = client.Get("/api/v1/nodes/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto notjson = client.Get("/notjson");
  EXPECT_EQ(notjson.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(notjson.status().message(), HasSubstr("not JSON: \"hello\""));
}

TEST_F(OpenSslApiClientTest, ReadsChunkedBodiesAndServerPathPrefixes) {
  OpenSslApiClient client(Config());
  auto r = client.Get("/chunked");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["items"].size(), 2000u);
  EXPECT_EQ((*r)["items"][1999], 1999);

  RestConfig c = Config();
  c.server += "/prefix/";  // e.g. a Rancher-style proxy URL
  r = OpenSslApiClient(c).Get("/api/v1/nodes/n1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["via"], "prefix");
}

TEST(OpenSslApiClientConfigTest, BadServerUrlsAndKeysFailEveryCallSayingWhy) {
  struct Case {
    const char* name;
    RestConfig config;
    const char* message;
  };
  auto with = [](const char* server, auto edit) {
    RestConfig c;
    c.server = server;
    c.source = "kubeconfig /k";
    edit(c);
    return c;
  };
  auto none = [](RestConfig&) {};
  const Case cases[] = {
      {"scheme", with("ftp://h", none), "is not an http:// or https:// URL"},
      {"port", with("https://h:99999", none), "bad port"},
      {"no host", with("https://:443", none), "no host"},
      {"ipv6", with("https://[::1", none), "unclosed ["},
      {"ca", with("https://h", [](RestConfig& c) { c.ca_data = "not pem"; }), "no PEM certificate"},
      {"key", with("https://h", [](RestConfig& c) { c.client_key_data = "not pem"; }),
       "client-key-data is not a PEM private key"},
      {"key alone",
       with("https://h", [](RestConfig& c) { c.client_key_file = "/nonexistent/key"; }),
       "cannot load the client key /nonexistent/key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = OpenSslApiClient(c.config).Get("/api");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    EXPECT_THAT(r.status().message(), HasSubstr("(kubeconfig /k)"));
  }
}

TEST(ResponseParserTest, FramesResponsesFedInAnyPieces) {
  using State = detail::ResponseParser::State;
  struct Case {
    const char* name;
    std::string raw;
    State state;  // after all bytes (and Finish() when still incomplete)
    int status;
    std::string body;
  };
  const Case cases[] = {
      {"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", State::kComplete, 200,
       "hello"},
      {"no reason", "HTTP/1.1 204\r\n\r\n", State::kComplete, 204, ""},
      {"until close", "HTTP/1.0 200 OK\r\n\r\nall of it", State::kComplete, 200, "all of it"},
      {"chunked",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n"
       "1\r\n!\r\n0\r\nTrailer: t\r\n\r\n",
       State::kComplete, 200, "hello!"},
      {"chunked wins",
       "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: Chunked\r\n\r\n"
       "2\r\nok\r\n0\r\n\r\n",
       State::kComplete, 200, "ok"},
      {"interim 100",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
       State::kComplete, 201, "{}"},
      {"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", State::kError, 200,
       "hello"},
      {"not http", "SSH-2.0-OpenSSH\r\n\r\n", State::kError, 0, ""},
      {"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", State::kError, 200, ""},
      {"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", State::kError,
       200, ""},
      {"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", State::kError, 200, ""},
      {"cut head", "HTTP/1.1 200 OK\r\nContent-", State::kError, 0, ""},
  };
  for (const Case& c : cases) {
    for (size_t piece : {c.raw.size(), size_t{1}, size_t{7}}) {
      SCOPED_TRACE(absl::StrCat(c.name, ", pieces of ", piece));
      detail::ResponseParser p;
      State s = State::kIncomplete;
      for (size_t at = 0; at < c.raw.size() && s == State::kIncomplete; at += piece) {
        s = p.Feed(c.raw.data() + at, std::min(piece, c.raw.size() - at));
      }
      if (s == State::kIncomplete) s = p.Finish();
      EXPECT_EQ(s, c.state) << p.error();
      EXPECT_EQ(p.status(), c.status);
      if (c.state == State::kComplete) {
        EXPECT_EQ(p.body(), c.body);
      }
      EXPECT_EQ(p.error().empty(), c.state != State::kError);

      // The same bytes, the body taken as it arrives (as a watch does).
      detail::ResponseParser taken;
      std::string body;
      s = State::kIncomplete;
      for (size_t at = 0; at < c.raw.size() && s == State::kIncomplete; at += piece) {
        s = taken.Feed(c.raw.data() + at, std::min(piece, c.raw.size() - at));
        body += taken.TakeBody();
        EXPECT_EQ(taken.body(), "");
      }
      if (s == State::kIncomplete) s = taken.Finish();
      EXPECT_EQ(s, c.state);
      if (c.state == State::kComplete) {
        EXPECT_TRUE(taken.has_head());
        EXPECT_EQ(body, c.body);
      }
    }
  }
  detail::ResponseParser head(/*head_request=*/true);
  EXPECT_EQ(head.Feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 38), State::kComplete);
}

TEST_F(OpenSslApiClientTest, TimeoutIsDeadlineExceeded) {
  RestConfig c = Config();
  c.timeout = std::chrono::milliseconds(200);
  OpenSslApiClient client(c);
  auto r = client.Get("/slow");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
}

TEST_F(OpenSslApiClientTest, TokenFileIsReadForEveryRequest) {
  FakeFileSystem fs;
  fs.AddFile("/sa/token", "first\n");
  RestConfig c = Config();
  c.token = "";
  c.token_file = "/sa/token";
  OpenSslApiClient client(c, &fs);
  ASSERT_TRUE(client.Get("/api/v1/nodes/n1").ok());
  {
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.authorization, "Bearer first");
  }
  fs.AddFile("/sa/token", "second");
  ASSERT_TRUE(client.Get("/api/v1/nodes/n1").ok());
  {
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.authorization, "Bearer second");
  }
  ASSERT_TRUE(fs.Remove("/sa/token").ok());
  auto r = client.Get("/api/v1/nodes/n1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("cannot read the token file /sa/token"));
}

TEST_F(OpenSslApiClientTest, ParallelRequestsFromSeveralThreads) {
  OpenSslApiClient client(Config());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        if (client.Get("/api/v1/nodes/n1").ok()) ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
}

TEST(OpenSslApiClientNoServerTest, ConnectionRefusedIsUnavailableWithAHint) {
  // Bind a port, then close it, so nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);
  close(fd);
  RestConfig c;
  c.server = absl::StrCat("http://127.0.0.1:", port);
  c.source = "kubeconfig /k (context a)";
  OpenSslApiClient client(c);
  auto r = client.Get("/api/v1/nodes/n1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("(kubeconfig /k (context a))"));
  EXPECT_THAT(r.status().message(), HasSubstr("is the API server up"));
}

// ---- TLS: a CA, a server certificate for 127.0.0.1 and a client certificate.

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;

Pkey NewKey() { return Pkey(EVP_EC_gen("P-256")); }

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Signed by (issuer, issuer_key), or self-signed when issuer is null.
Cert NewCert(const char* cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca,
             const char* san) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (ca) {
    AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
  }
  if (san != nullptr) AddExt(cert.get(), signer, NID_subject_alt_name, san);
  X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256());
  return cert;
}

std::string Pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string Pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

void WriteFile(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

class OpenSslApiClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("kube-tls-", getpid(), "-", reinterpret_cast<uintptr_t>(this));
    std::filesystem::create_directories(dir_);
    ca_key_ = NewKey();
    ca_ = NewCert("test-ca", ca_key_.get(), nullptr, nullptr, true, nullptr);
    Pkey server_key = NewKey();
    Cert server =
        NewCert("apiserver", server_key.get(), ca_.get(), ca_key_.get(), false, "IP:127.0.0.1");
    client_key_ = NewKey();
    client_ =
        NewCert("system:node:n1", client_key_.get(), ca_.get(), ca_key_.get(), false, nullptr);
    WriteFile(dir_ / "ca.crt", Pem(ca_.get()));
    WriteFile(dir_ / "server.crt", Pem(server.get()));
    WriteFile(dir_ / "server.key", Pem(server_key.get()));
    WriteFile(dir_ / "client.crt", Pem(client_.get()));
    WriteFile(dir_ / "client.key", Pem(client_key_.get()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // An HTTPS server that requires a client certificate signed by the CA when
  // `mutual`; it answers with the client certificate's CN on /api, and adds
  // the routes of `more`.
  std::unique_ptr<TestServer> Serve(bool mutual,
                                    const std::function<void(httplib::Server&)>& more = nullptr) {
    std::string ca = mutual ? (dir_ / "ca.crt").string() : "";
    auto s = std::make_unique<httplib::SSLServer>((dir_ / "server.crt").c_str(),
                                                  (dir_ / "server.key").c_str(),
                                                  mutual ? ca.c_str() : nullptr);
    EXPECT_TRUE(s->is_valid());
    s->Get("/api", [](const httplib::Request& req, httplib::Response& res) {
      std::string cn = "none";
      if (req.ssl != nullptr) {
        if (X509* peer = SSL_get_peer_certificate(req.ssl); peer != nullptr) {
          char buf[256] = {0};
          X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf,
                                    sizeof(buf) - 1);
          cn = buf;
          X509_free(peer);
        }
      }
      res.set_content(json{{"user", cn}}.dump(), "application/json");
    });
    if (more != nullptr) more(*s);
    return std::make_unique<TestServer>(std::move(s));
  }

  std::filesystem::path dir_;
  Pkey ca_key_, client_key_;
  Cert ca_, client_;
};

TEST_F(OpenSslApiClientTlsTest, TrustsTheCaFromDataAndFromFile) {
  auto server = Serve(/*mutual=*/false);
  RestConfig c;
  c.server = absl::StrCat("https://127.0.0.1:", server->port());
  c.ca_data = Pem(ca_.get());
  auto r = OpenSslApiClient(c).Get("/api");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["user"], "none");

  c.ca_data.clear();
  c.ca_file = (dir_ / "ca.crt").string();
  EXPECT_TRUE(OpenSslApiClient(c).Get("/api").ok());
}

TEST_F(OpenSslApiClientTlsTest, RefusesAServerTheCaDidNotSign) {
  auto server = Serve(/*mutual=*/false);
  Pkey other_key = NewKey();
  Cert other = NewCert("other-ca", other_key.get(), nullptr, nullptr, true, nullptr);
  RestConfig c;
  c.server = absl::StrCat("https://127.0.0.1:", server->port());
  c.ca_data = Pem(other.get());
  auto r = OpenSslApiClient(c).Get("/api");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("not signed by the configured CA"));

  c.insecure_skip_tls_verify = true;
  EXPECT_TRUE(OpenSslApiClient(c).Get("/api").ok());
}

TEST_F(OpenSslApiClientTlsTest, RefusesACertificateForAnotherAddressOrName) {
  auto server = Serve(/*mutual=*/false);  // its certificate names IP 127.0.0.1 only
  RestConfig c;
  c.ca_data = Pem(ca_.get());
  c.server = absl::StrCat("https://localhost:", server->port());
  auto r = OpenSslApiClient(c).Get("/api");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("the server's certificate is not for localhost"));

  c.insecure_skip_tls_verify = true;  // neither the name nor the CA is checked then
  c.ca_data.clear();
  r = OpenSslApiClient(c).Get("/api");
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST_F(OpenSslApiClientTlsTest, ClientCertificateFromDataAndFromFiles) {
  auto server = Serve(/*mutual=*/true);
  RestConfig c;
  c.server = absl::StrCat("https://127.0.0.1:", server->port());
  c.ca_data = Pem(ca_.get());
  c.client_cert_data = Pem(client_.get());
  c.client_key_data = Pem(client_key_.get());
  auto r = OpenSslApiClient(c).Get("/api");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["user"], "system:node:n1");

  c.client_cert_data.clear();
  c.client_key_data.clear();
  c.client_cert_file = (dir_ / "client.crt").string();
  c.client_key_file = (dir_ / "client.key").string();
  r = OpenSslApiClient(c).Get("/api");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["user"], "system:node:n1");

  c.client_cert_file.clear();
  c.client_key_file.clear();
  EXPECT_FALSE(OpenSslApiClient(c).Get("/api").ok());  // the server wants a certificate
}

TEST_F(OpenSslApiClientTlsTest, WatchStreamsOverTlsAndCancelsPromptly) {
  // The handler writes two events, then holds the stream open until released.
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  auto server = Serve(/*mutual=*/false, [&](httplib::Server& s) {
    s.Get("/api/v1/nodes", [&](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
        for (const char* type : {"ADDED", "MODIFIED"}) {
          std::string line = json{{"type", type}, {"object", {{"kind", "Node"}}}}.dump() + "\n";
          sink.write(line.data(), line.size());
        }
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
        sink.done();
        return true;
      });
    });
  });
  struct Release {  // destroyed before the server, so its handler returns
    std::mutex& mu;
    std::condition_variable& cv;
    bool& released;
    ~Release() {
      {
        std::lock_guard<std::mutex> lock(mu);
        released = true;
      }
      cv.notify_all();
    }
  } release{mu, cv, released};

  RestConfig c;
  c.server = absl::StrCat("https://127.0.0.1:", server->port());
  c.ca_data = Pem(ca_.get());
  OpenSslApiClient client(c);
  test_util::BackgroundWatch watch(client, "/api/v1/nodes?watch=true", std::chrono::seconds(30));
  ASSERT_TRUE(watch.WaitForEvents(2));
  EXPECT_FALSE(watch.done());
  EXPECT_EQ(watch.events()[1].type, "MODIFIED");
  auto cancelled_at = std::chrono::steady_clock::now();
  watch.cancel().Cancel();
  std::optional<absl::Status> result = watch.WaitForResult();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kCancelled) << *result;
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(1));
}

}  // namespace
}  // namespace gdp::kube
