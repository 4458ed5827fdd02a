// Test helpers for streaming (linked into kube_test only).
//
// ScriptedServer: a plain-HTTP server on 127.0.0.1 (port chosen by the kernel)
// whose answers the test itself writes, in pieces and when it likes, so it can
// check what a client does with a stream while it arrives. It does nothing on
// its own: Accept() takes the next connection and reads its request head, and
// the test writes the response to that connection. The server and each
// connection belong to the test thread that drives them; the client under
// test runs on another.
//
// BackgroundWatch: runs ApiClient::Watch on its own thread and records what it
// hands over, for the test thread to wait on. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/kube/api_client.h"

namespace gdp::kube::test_util {

// One accepted connection whose request head has been read.
class ScriptedConnection {
 public:
  ScriptedConnection(int fd, std::string head);
  ~ScriptedConnection();  // closes
  ScriptedConnection(const ScriptedConnection&) = delete;
  ScriptedConnection& operator=(const ScriptedConnection&) = delete;

  const std::string& method() const { return method_; }
  // The request target as sent: path and query ("/api/v1/nodes?watch=true").
  const std::string& target() const { return target_; }
  const std::string& head() const { return head_; }

  // Each returns false when the client has gone.
  bool Write(std::string_view bytes);
  // A head with Transfer-Encoding: chunked; then one chunk per Chunk(), and
  // the last (empty) chunk from EndChunks().
  bool StartChunked(int status = 200);
  bool Chunk(std::string_view data);
  bool EndChunks();
  // A whole response with Content-Length and Connection: close.
  bool Respond(int status, std::string_view body);

  // Waits up to `wait` for the client to close its end.
  bool WaitForClientClose(std::chrono::milliseconds wait = std::chrono::seconds(10));
  // Closes the connection now (a stream delimited by the end of the connection ends).
  void Close();

 private:
  int fd_;
  std::string head_;
  std::string method_;
  std::string target_;
};

class ScriptedServer {
 public:
  // Listens on 127.0.0.1; ok() says whether that worked.
  ScriptedServer();
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:<port>"

  // The next connection with its request head read, waiting up to `wait` for
  // it; null when none came (or its head did not arrive in time).
  std::unique_ptr<ScriptedConnection> Accept(
      std::chrono::milliseconds wait = std::chrono::seconds(10));

 private:
  int fd_ = -1;
  int port_ = 0;
};

class BackgroundWatch {
 public:
  // `keep_going` (optional) is what the watch's callback answers after
  // recording an event; without it every event is accepted.
  BackgroundWatch(ApiClient& client, std::string path, std::chrono::milliseconds timeout,
                  std::function<bool(const WatchEvent&)> keep_going = nullptr);
  ~BackgroundWatch();  // cancels and joins

  // Each waits up to `wait`; false when the condition did not come.
  bool WaitForEvents(size_t n, std::chrono::milliseconds wait = std::chrono::seconds(10));
  // The watch's result once it returned; nullopt if it has not within `wait`.
  std::optional<absl::Status> WaitForResult(
      std::chrono::milliseconds wait = std::chrono::seconds(10));

  std::vector<WatchEvent> events() const;
  bool done() const;
  WatchCancel& cancel() { return cancel_; }

 private:
  WatchCancel cancel_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace gdp::kube::test_util
