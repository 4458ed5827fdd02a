#include "src/kube/openssl_api_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "src/common/poll.h"

namespace gdp::kube {

namespace detail {

ResponseParser::State ResponseParser::Fail(std::string why) {
  error_ = std::move(why);
  return state_ = State::kError;
}

ResponseParser::State ResponseParser::Feed(const char* data, size_t size) {
  if (state_ != State::kIncomplete) return state_;
  in_.append(data, size);
  return Advance();
}

ResponseParser::State ResponseParser::Finish() {
  if (state_ != State::kIncomplete) return state_;
  if (have_head_ && framing_ == Framing::kUntilClose) return state_ = State::kComplete;
  return Fail(have_head_ ? "the connection closed before the whole body arrived"
                         : "the connection closed before a whole response head arrived");
}

ResponseParser::State ResponseParser::ParseHead(size_t end) {
  const std::string_view head(in_.data(), end);
  size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  // "HTTP/1.1 200 OK": the reason phrase may be empty or missing.
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
      !absl::SimpleAtoi(std::string(line.substr(9, 3)), &status_) || status_ < 100 ||
      status_ > 999 || (line.size() > 12 && line[12] != ' ')) {
    return Fail(
        absl::StrCat("the status line is not HTTP/1.x: \"", std::string(line.substr(0, 80)), "\""));
  }
  bool has_length = false;
  bool chunked = false;
  framing_ = Framing::kUntilClose;
  remaining_ = 0;
  while (eol != std::string_view::npos) {
    const size_t start = eol + 2;
    eol = head.find("\r\n", start);
    std::string_view field =
        head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Fail("a header line has no name or no colon");
    }
    std::string name = absl::AsciiStrToLower(std::string(field.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(std::string(field.substr(colon + 1))));
    if (name == "content-length") {
      size_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || (has_length && n != remaining_)) {
        return Fail(absl::StrCat("bad Content-Length \"", value.substr(0, 40), "\""));
      }
      if (n > kMaxBody) return Fail(absl::StrCat("the body (", n, " bytes) is over 256 MiB"));
      has_length = true;
      remaining_ = n;
    } else if (name == "transfer-encoding") {
      // Only "chunked" (last) is sent by the API server; compressions are not asked for.
      if (absl::AsciiStrToLower(value) != "chunked") {
        return Fail(absl::StrCat("unsupported Transfer-Encoding \"", value.substr(0, 40), "\""));
      }
      chunked = true;
    }
  }
  have_head_ = true;
  in_.erase(0, end + 4);
  if (head_request_ || status_ == 204 || status_ == 304 || status_ < 200) {
    framing_ = Framing::kLength;
    remaining_ = 0;
  } else if (chunked) {
    framing_ = Framing::kChunked;  // wins over a Content-Length (RFC 9112 6.3)
  } else if (has_length) {
    framing_ = Framing::kLength;
  }
  return State::kIncomplete;
}

ResponseParser::State ResponseParser::Advance() {
  for (;;) {
    if (!have_head_) {
      size_t end = in_.find("\r\n\r\n");
      if (end == std::string::npos) {
        return in_.size() > kMaxHead ? Fail("the response head is over 64 KiB") : state_;
      }
      if (ParseHead(end) == State::kError) return state_;
      if (status_ < 200) {  // 1xx: an interim response; the real one follows
        have_head_ = false;
        continue;
      }
    }
    switch (framing_) {
      case Framing::kUntilClose:
        body_ += in_;
        in_.clear();
        return body_.size() > kMaxBody ? Fail("the body is over 256 MiB") : state_;
      case Framing::kLength: {
        size_t take = std::min(remaining_, in_.size());
        body_.append(in_, 0, take);
        in_.clear();  // bytes past the body: nothing follows on a closed connection
        remaining_ -= take;
        return remaining_ == 0 ? (state_ = State::kComplete) : state_;
      }
      case Framing::kChunked:
        if (in_chunk_) {
          size_t take = std::min(remaining_, in_.size());
          body_.append(in_, 0, take);
          in_.erase(0, take);
          remaining_ -= take;
          if (remaining_ > 0 || in_.size() < 2) return state_;
          if (in_.compare(0, 2, "\r\n") != 0) return Fail("a chunk does not end with CRLF");
          in_.erase(0, 2);
          in_chunk_ = false;
        }
        for (;;) {
          size_t eol = in_.find("\r\n");
          if (eol == std::string::npos) {
            return in_.size() > kMaxHead ? Fail("a chunk header is over 64 KiB") : state_;
          }
          std::string size_text = in_.substr(0, std::min(in_.find(';'), eol));
          size_t size = 0;
          if (size_text.empty() || size_text.size() > 15 ||
              size_text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
            return Fail(absl::StrCat("bad chunk size \"", size_text.substr(0, 20), "\""));
          }
          size = std::stoull(size_text, nullptr, 16);
          if (size == 0) {
            // The last chunk, then trailer lines up to an empty one.
            if (in_.find("\r\n\r\n", eol) == std::string::npos) return state_;
            in_.clear();
            return state_ = State::kComplete;
          }
          if (body_.size() + size > kMaxBody) return Fail("the body is over 256 MiB");
          in_.erase(0, eol + 2);
          in_chunk_ = true;
          remaining_ = size;
          break;
        }
        continue;
    }
  }
}

}  // namespace detail

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string OpenSslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

Bio MemoryBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

// Where the API server is, and the TLS context every connection to it uses.
struct OpenSslApiClient::Endpoint {
  bool tls = false;
  std::string host;       // as in the URL, without brackets
  std::string port;       // service for getaddrinfo
  std::string host_port;  // the Host header
  std::string base_path;  // a path prefix of the server URL ("" or "/k8s/clusters/c-1")
  bool host_is_ip = false;
  bool verify = true;  // false: insecure-skip-tls-verify
  SSL_CTX* ctx = nullptr;

  ~Endpoint() { SSL_CTX_free(ctx); }

  absl::Status Parse(const std::string& server) {
    std::string rest;
    if (absl::StartsWithIgnoreCase(server, "https://")) {
      tls = true;
      rest = server.substr(8);
    } else if (absl::StartsWithIgnoreCase(server, "http://")) {
      rest = server.substr(7);
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "server \"", server, "\" is not an http:// or https:// URL; check the kubeconfig"));
    }
    size_t slash = rest.find('/');
    host_port = rest.substr(0, slash);
    if (slash != std::string::npos) base_path = rest.substr(slash);
    while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
    port = tls ? "443" : "80";
    if (!host_port.empty() && host_port[0] == '[') {  // [IPv6]:port
      size_t close = host_port.find(']');
      if (close == std::string::npos) {
        return absl::FailedPreconditionError(
            absl::StrCat("server \"", server, "\": unclosed [ in the host"));
      }
      host = host_port.substr(1, close - 1);
      if (close + 1 < host_port.size()) {
        if (host_port[close + 1] != ':') {
          return absl::FailedPreconditionError(
              absl::StrCat("server \"", server, "\": junk after the IPv6 address"));
        }
        port = host_port.substr(close + 2);
      }
    } else {
      size_t colon = host_port.rfind(':');
      host = host_port.substr(0, colon);
      if (colon != std::string::npos) port = host_port.substr(colon + 1);
    }
    int port_number = 0;
    if (host.empty() || !absl::SimpleAtoi(port, &port_number) || port_number < 1 ||
        port_number > 65535) {
      return absl::FailedPreconditionError(absl::StrCat(
          "server \"", server, "\" has no host or a bad port; expected https://HOST[:PORT]"));
    }
    in6_addr v6;
    in_addr v4;
    host_is_ip =
        inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
    return absl::OkStatus();
  }

  absl::Status SetUpTls(const RestConfig& c) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + OpenSslError());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // Bodies are framed by Content-Length or chunks, so a missing close_notify
    // cannot truncate one unnoticed.
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    verify = !c.insecure_skip_tls_verify;
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    auto bad = [](const std::string& what) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": ", OpenSslError()));
    };
    if (!c.ca_data.empty()) {
      X509_STORE* store = SSL_CTX_get_cert_store(ctx);
      Bio bio = MemoryBio(c.ca_data);
      int added = 0;
      while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        if (X509_STORE_add_cert(store, cert) == 1) ++added;
        X509_free(cert);
      }
      ERR_clear_error();  // the end of the PEM text reads as an error
      if (added == 0) {
        return absl::FailedPreconditionError(
            "certificate-authority-data (or ca.crt) holds no PEM certificate");
      }
    }
    if (!c.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, c.ca_file.c_str(), nullptr) != 1) {
      return bad(absl::StrCat("cannot load the CA file ", c.ca_file));
    }
    if (c.ca_data.empty() && c.ca_file.empty()) SSL_CTX_set_default_verify_paths(ctx);

    if (!c.client_cert_data.empty()) {
      Bio bio = MemoryBio(c.client_cert_data);
      X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
      if (cert == nullptr || SSL_CTX_use_certificate(ctx, cert) != 1) {
        X509_free(cert);
        return bad("client-certificate-data is not a PEM certificate");
      }
      X509_free(cert);
      while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        SSL_CTX_add0_chain_cert(ctx, extra);  // takes ownership
      }
      ERR_clear_error();
    }
    if (!c.client_cert_file.empty() &&
        SSL_CTX_use_certificate_chain_file(ctx, c.client_cert_file.c_str()) != 1) {
      return bad(absl::StrCat("cannot load the client certificate ", c.client_cert_file));
    }
    if (!c.client_key_data.empty()) {
      Bio bio = MemoryBio(c.client_key_data);
      EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
      if (key == nullptr || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        EVP_PKEY_free(key);
        return bad("client-key-data is not a PEM private key");
      }
      EVP_PKEY_free(key);
    }
    if (!c.client_key_file.empty() &&
        SSL_CTX_use_PrivateKey_file(ctx, c.client_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return bad(absl::StrCat("cannot load the client key ", c.client_key_file));
    }
    bool has_cert = !c.client_cert_data.empty() || !c.client_cert_file.empty();
    bool has_key = !c.client_key_data.empty() || !c.client_key_file.empty();
    if (has_cert != has_key) {
      return absl::FailedPreconditionError(
          "a client certificate needs its key and a key its certificate (client-certificate "
          "and client-key)");
    }
    if (has_cert && SSL_CTX_check_private_key(ctx) != 1) {
      return bad("the client key does not match the client certificate");
    }
    return absl::OkStatus();
  }
};

// One request's connection: a non-blocking TCP socket, with TLS over it when
// the endpoint says so. Every operation honours the request's deadline, and
// returns Cancelled as soon as `cancel_fd` (when given) turns readable.
class OpenSslApiClient::Connection {
 public:
  Connection(const Endpoint& endpoint, SteadyClock::time_point deadline, int cancel_fd = -1)
      : endpoint_(endpoint), deadline_(deadline), cancel_fd_(cancel_fd) {}
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::Status Open() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(endpoint_.host.c_str(), endpoint_.port.c_str(), &hints, &found);
        rc != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot resolve ", endpoint_.host, ": ", ::gai_strerror(rc), kUpHint));
    }
    std::string last = "no address";
    bool timed_out = false;
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) continue;
      int err = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
      if (err == EINPROGRESS) {
        PollResult r = PollUntil(fd, POLLOUT, deadline_, cancel_fd_);
        socklen_t len = sizeof err;
        if (r == PollResult::kWoken) {
          ::close(fd);
          ::freeaddrinfo(found);
          return absl::CancelledError("cancelled while connecting");
        }
        if (r == PollResult::kTimeout) {
          err = ETIMEDOUT;
          timed_out = true;
        } else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
          err = errno;
        }
      }
      if (err == 0) {
        fd_ = fd;
      } else {
        last = std::strerror(err);
        ::close(fd);
      }
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) {
      if (timed_out) return absl::DeadlineExceededError("connect timed out" + std::string(kUpHint));
      return absl::UnavailableError(absl::StrCat("cannot connect: ", last, kUpHint));
    }
    int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    return endpoint_.tls ? Handshake() : absl::OkStatus();
  }

  absl::Status WriteAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl_ != nullptr) {
        size_t written = 0;
        int rc = SSL_write_ex(ssl_, data.data(), data.size(), &written);
        if (rc != 1) {
          if (absl::Status s = WaitFor(rc, "send"); !s.ok()) return s;
          continue;
        }
        n = static_cast<ssize_t>(written);
      } else {
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          if (absl::Status s = Wait(POLLOUT, "send"); !s.ok()) return s;
          continue;
        }
        if (n < 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // From now on, operations end at `deadline` instead.
  void set_deadline(SteadyClock::time_point deadline) { deadline_ = deadline; }

  // Bytes read into buf; 0 at the end of the connection.
  absl::StatusOr<size_t> Read(char* buf, size_t size) {
    for (;;) {
      if (ssl_ != nullptr) {
        size_t got = 0;
        int rc = SSL_read_ex(ssl_, buf, size, &got);
        if (rc == 1) return got;
        if (SSL_get_error(ssl_, rc) == SSL_ERROR_ZERO_RETURN) return 0;
        if (absl::Status s = WaitFor(rc, "receive"); !s.ok()) return s;
        continue;
      }
      ssize_t n = ::recv(fd_, buf, size, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EAGAIN && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("receive: ", std::strerror(errno)));
      }
      if (absl::Status s = Wait(POLLIN, "receive"); !s.ok()) return s;
    }
  }

 private:
  static constexpr const char* kUpHint = "; is the API server up and the server address right?";

  absl::Status Wait(short events, const char* what) {
    switch (PollUntil(fd_, events, deadline_, cancel_fd_)) {
      case PollResult::kReady:
        return absl::OkStatus();
      case PollResult::kTimeout:
        return absl::DeadlineExceededError(absl::StrCat(what, " timed out"));
      case PollResult::kWoken:
        return absl::CancelledError(absl::StrCat(what, ": cancelled"));
      default:
        return absl::UnavailableError(absl::StrCat(what, ": poll: ", std::strerror(errno)));
    }
  }

  // After an SSL call returned `rc` != 1: waits when OpenSSL wants the socket,
  // else the error.
  absl::Status WaitFor(int rc, const char* what) {
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) return Wait(POLLIN, what);
    if (err == SSL_ERROR_WANT_WRITE) return Wait(POLLOUT, what);
    if (err == SSL_ERROR_SYSCALL && errno != 0) {
      return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
    }
    return absl::UnavailableError(absl::StrCat(what, ": TLS: ", OpenSslError()));
  }

  absl::Status Handshake() {
    ssl_ = SSL_new(endpoint_.ctx);
    if (ssl_ == nullptr) return absl::InternalError("SSL_new: " + OpenSslError());
    SSL_set_fd(ssl_, fd_);
    // The certificate must name the host (DNS SAN) or its address (IP SAN).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (endpoint_.host_is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, endpoint_.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, endpoint_.host.c_str());
      SSL_set1_host(ssl_, endpoint_.host.c_str());
    }
    for (;;) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_);
      if (rc == 1) return absl::OkStatus();
      // With verification off, a failed check is recorded but does not stop
      // the handshake; only with it on does it explain a failure.
      long verify = endpoint_.verify ? SSL_get_verify_result(ssl_) : X509_V_OK;
      if (verify != X509_V_OK) {
        const char* why = X509_verify_cert_error_string(verify);
        if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
          return absl::FailedPreconditionError(
              absl::StrCat("TLS: ", why, "; the server's certificate is not for ", endpoint_.host,
                           " (is the server address right?)"));
        }
        return absl::FailedPreconditionError(
            absl::StrCat("TLS: ", why,
                         "; the server's certificate is not signed by the configured CA "
                         "(certificate-authority / ca.crt)"));
      }
      int err = SSL_get_error(ssl_, rc);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        return absl::UnavailableError(
            absl::StrCat("TLS handshake failed: ", OpenSslError(),
                         "; check the CA and the client certificate (does the server want one?)"));
      }
      if (absl::Status s = Wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, "TLS handshake");
          !s.ok()) {
        return s;
      }
    }
  }

  const Endpoint& endpoint_;
  SteadyClock::time_point deadline_;
  const int cancel_fd_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

OpenSslApiClient::OpenSslApiClient(RestConfig config, const FileSystem* fs)
    : config_(std::move(config)), fs_(fs), endpoint_(std::make_unique<Endpoint>()) {
  setup_ = endpoint_->Parse(config_.server);
  if (setup_.ok() && endpoint_->tls) setup_ = endpoint_->SetUpTls(config_);
  if (!setup_.ok()) {
    setup_ = absl::Status(
        setup_.code(), absl::StrCat(config_.server, " (", config_.source, "): ", setup_.message()));
  }
}

OpenSslApiClient::~OpenSslApiClient() = default;

absl::StatusOr<nlohmann::json> OpenSslApiClient::Get(const std::string& path) {
  return Do("GET", path, nullptr, nullptr);
}

absl::StatusOr<nlohmann::json> OpenSslApiClient::Post(const std::string& path,
                                                      const nlohmann::json& body) {
  // Bad UTF-8 in a string (a token a client sent) is replaced, never thrown.
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return Do("POST", path, "application/json", &text);
}

absl::StatusOr<nlohmann::json> OpenSslApiClient::Patch(const std::string& path, PatchType type,
                                                       const nlohmann::json& body,
                                                       const PatchOptions& options) {
  if (type == PatchType::kApply && options.field_manager.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PATCH ", path, ": server-side apply needs a field manager"));
  }
  std::string full = path;
  char sep = path.find('?') == std::string::npos ? '?' : '&';
  if (!options.field_manager.empty()) {
    absl::StrAppend(&full, std::string(1, sep),
                    "fieldManager=", EscapeQueryValue(options.field_manager));
    sep = '&';
  }
  if (type == PatchType::kApply && options.force)
    absl::StrAppend(&full, std::string(1, sep), "force=true");
  // JSON is YAML, so apply-patch+yaml accepts it; bad UTF-8 is replaced, never thrown.
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return Do("PATCH", full, ContentType(type), &text);
}

absl::StatusOr<std::string> OpenSslApiClient::RequestText(const char* method,
                                                          const std::string& path,
                                                          const char* content_type,
                                                          const std::string* body) {
  std::string token = config_.token;
  if (!config_.token_file.empty()) {
    absl::StatusOr<std::string> t = fs_->ReadFile(config_.token_file);
    if (!t.ok()) {
      return absl::Status(
          t.status().code(),
          absl::StrCat(method, " ", config_.server, path, ": cannot read the token file ",
                       config_.token_file, ": ", t.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*t));
  }

  std::string request = absl::StrCat(
      method, " ", endpoint_->base_path, path, " HTTP/1.1\r\nHost: ", endpoint_->host_port,
      "\r\nUser-Agent: gpu-device-plugin\r\nAccept: application/json\r\n"
      "Connection: close\r\n");
  if (content_type != nullptr) absl::StrAppend(&request, "Content-Type: ", content_type, "\r\n");
  if (!token.empty()) absl::StrAppend(&request, "Authorization: Bearer ", token, "\r\n");
  if (body != nullptr) absl::StrAppend(&request, "Content-Length: ", body->size(), "\r\n");
  request += "\r\n";
  if (body != nullptr) request += *body;
  return request;
}

absl::StatusOr<nlohmann::json> OpenSslApiClient::Do(const char* method, const std::string& path,
                                                    const char* content_type,
                                                    const std::string* body) {
  const std::string url = config_.server + path;
  auto failed = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrCat(method, " ", url, " (", config_.source, "): ", s.message()));
  };
  if (!setup_.ok()) return absl::Status(setup_.code(), absl::StrCat(method, " ", setup_.message()));
  absl::StatusOr<std::string> request = RequestText(method, path, content_type, body);
  if (!request.ok()) return request.status();

  Connection conn(*endpoint_, SteadyClock::now() + config_.timeout);
  if (absl::Status s = conn.Open(); !s.ok()) return failed(s);
  if (absl::Status s = conn.WriteAll(*request); !s.ok()) return failed(s);
  detail::ResponseParser parser;
  detail::ResponseParser::State state = detail::ResponseParser::State::kIncomplete;
  char buf[16 * 1024];
  while (state == detail::ResponseParser::State::kIncomplete) {
    absl::StatusOr<size_t> n = conn.Read(buf, sizeof buf);
    if (!n.ok()) return failed(n.status());
    state = *n == 0 ? parser.Finish() : parser.Feed(buf, *n);
  }
  if (state == detail::ResponseParser::State::kError) {
    return failed(absl::UnavailableError("the answer is not HTTP: " + parser.error()));
  }

  const int http_status = parser.status();
  const std::string& response = parser.body();
  if (http_status < 200 || http_status >= 300) {
    return ErrorFromResponse(method, url, http_status, response);
  }
  if (response.empty()) return nlohmann::json();
  nlohmann::json json = nlohmann::json::parse(response, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InternalError(absl::StrCat(method, " ", url, ": HTTP ", http_status,
                                            " but the body is not JSON: \"",
                                            response.substr(0, 200), "\""));
  }
  return json;
}

namespace {

// Hands one line of a watch stream to `on_event`; *go_on is what it answered.
// Empty lines are skipped.
absl::Status DeliverLine(std::string_view line, const ApiClient::WatchCallback& on_event,
                         bool* go_on) {
  *go_on = true;
  while (!line.empty() && absl::ascii_isspace(static_cast<unsigned char>(line.back()))) {
    line.remove_suffix(1);
  }
  while (!line.empty() && absl::ascii_isspace(static_cast<unsigned char>(line.front()))) {
    line.remove_prefix(1);
  }
  if (line.empty()) return absl::OkStatus();
  nlohmann::json event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!event.is_object() || !event.contains("type") || !event["type"].is_string()) {
    return absl::InternalError(absl::StrCat("a line of the watch stream is not a watch event: \"",
                                            std::string(line.substr(0, 200)), "\""));
  }
  WatchEvent out{event["type"].get<std::string>(),
                 event.contains("object") ? std::move(event["object"]) : nlohmann::json()};
  *go_on = on_event(out);
  return absl::OkStatus();
}

}  // namespace

absl::Status OpenSslApiClient::Watch(const std::string& path, const WatchCallback& on_event,
                                     const WatchCancel& cancel, std::chrono::milliseconds timeout) {
  const std::string url = config_.server + path;
  auto failed = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrCat("GET ", url, " (", config_.source, "): ", s.message()));
  };
  if (!setup_.ok()) return absl::Status(setup_.code(), absl::StrCat("GET ", setup_.message()));
  if (cancel.cancelled()) return failed(absl::CancelledError("the watch is cancelled"));
  if (cancel.fd() < 0) {
    return failed(absl::ResourceExhaustedError(
        "the watch has no eventfd to be cancelled with; is the process out of file descriptors?"));
  }
  absl::StatusOr<std::string> request = RequestText("GET", path, nullptr, nullptr);
  if (!request.ok()) return request.status();

  // Up to the response head the request's own timeout holds; the stream then
  // runs to the watch's deadline.
  const SteadyClock::time_point start = SteadyClock::now();
  const SteadyClock::time_point watch_deadline = start + timeout;
  Connection conn(*endpoint_, std::min(start + config_.timeout, watch_deadline), cancel.fd());
  if (absl::Status s = conn.Open(); !s.ok()) return failed(s);
  if (absl::Status s = conn.WriteAll(*request); !s.ok()) return failed(s);

  using State = detail::ResponseParser::State;
  detail::ResponseParser parser;
  bool streaming = false;  // a 2xx head arrived: the body is the event stream
  std::string pending;     // the start of an event line whose newline has not arrived
  char buf[16 * 1024];
  for (;;) {
    // A busy stream may never make the socket wait, so look here too.
    if (cancel.cancelled()) return failed(absl::CancelledError("the watch is cancelled"));
    absl::StatusOr<size_t> n = conn.Read(buf, sizeof buf);
    if (!n.ok()) {
      // The stream ran its whole length: the same as the server ending it.
      if (streaming && absl::IsDeadlineExceeded(n.status()) &&
          SteadyClock::now() >= watch_deadline) {
        return absl::OkStatus();
      }
      return failed(n.status());
    }
    const State state = *n == 0 ? parser.Finish() : parser.Feed(buf, *n);
    if (state == State::kError) {
      return failed(absl::UnavailableError(
          absl::StrCat(streaming ? "the watch stream broke off: " : "the answer is not HTTP: ",
                       parser.error())));
    }
    if (!streaming && parser.has_head() && parser.status() >= 200 && parser.status() < 300) {
      streaming = true;
      conn.set_deadline(watch_deadline);
    }
    if (!streaming) {
      if (state == State::kComplete) {
        return ErrorFromResponse("GET", url, parser.status(), parser.body());
      }
      continue;
    }
    // Only the bytes just added can hold the next newline.
    size_t scan_from = pending.size();
    pending += parser.TakeBody();
    size_t line_start = 0;
    for (size_t eol = pending.find('\n', scan_from); eol != std::string::npos;
         eol = pending.find('\n', line_start)) {
      bool go_on = true;
      absl::Status s = DeliverLine(std::string_view(pending).substr(line_start, eol - line_start),
                                   on_event, &go_on);
      if (!s.ok()) return failed(s);
      if (!go_on) return absl::OkStatus();
      line_start = eol + 1;
    }
    pending.erase(0, line_start);
    if (pending.size() > detail::ResponseParser::kMaxBody) {
      return failed(absl::ResourceExhaustedError("a watch event is over 256 MiB"));
    }
    if (state == State::kComplete) {
      // The server ended the stream; a last line may lack its newline.
      bool go_on = true;
      if (absl::Status s = DeliverLine(pending, on_event, &go_on); !s.ok()) return failed(s);
      return absl::OkStatus();
    }
  }
}

}  // namespace gdp::kube
