// A stand-in for the kubelet's side of the device-plugin API, for tests and
// the load tool: a v1beta1.Registration server on <dir>/kubelet.sock that
// records every RegisterRequest, and a client for a plugin's endpoint
// (ListAndWatch streams, Allocate, GetPreferredAllocation, options).
//
// KubeletStub: Start/Stop from one thread; the recorded requests and the waits
// are thread-safe. Stop(kRemoveAllSockets) behaves like a restarting kubelet:
// it deletes every socket in the directory.
// PluginClient: thread-safe (gRPC stubs are). WatchStream: one reader thread
// per stream collects updates; its accessors and waits are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"

namespace grpc {
class Server;
}

namespace gdp::kubelet_stub {

using Deadline = std::chrono::steady_clock::time_point;
inline Deadline In(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

class KubeletStub {
 public:
  enum class StopMode { kKeepPluginSockets, kRemoveAllSockets };

  explicit KubeletStub(std::string dir, std::string socket_name = "kubelet.sock");
  ~KubeletStub();  // Stop(kKeepPluginSockets)

  // Removes a stale kubelet.sock and serves Registration on it.
  absl::Status Start();
  void Stop(StopMode mode = StopMode::kKeepPluginSockets);

  // Every later Register call answers `status` (OK by default).
  void SetRegisterResponse(grpc::Status status);

  std::vector<v1beta1::RegisterRequest> Registrations() const;
  size_t RegistrationCount(const std::string& resource) const;
  // Waits until `resource` has registered at least `count` times in total.
  bool WaitForRegistration(const std::string& resource, Deadline deadline, size_t count = 1) const;
  // Waits until at least `count` registrations (any resource) were recorded.
  bool WaitForTotal(size_t count, Deadline deadline) const;
  // The most recent request for `resource` (empty request when none).
  v1beta1::RegisterRequest LastRegistration(const std::string& resource) const;

  const std::string& dir() const { return dir_; }
  std::string socket_path() const { return dir_ + "/" + socket_name_; }

 private:
  class Service;
  void Record(const v1beta1::RegisterRequest& req);
  grpc::Status response() const;

  const std::string dir_;
  const std::string socket_name_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<v1beta1::RegisterRequest> requests_;  // guarded by mu_
  grpc::Status register_response_;                  // guarded by mu_
};

// One ListAndWatch stream read by its own thread.
class WatchStream {
 public:
  explicit WatchStream(v1beta1::DevicePlugin::Stub* stub);
  ~WatchStream();  // Cancels and joins.

  std::vector<v1beta1::ListAndWatchResponse> Updates() const;
  size_t UpdateCount() const;
  // Waits until some received update satisfies `pred`.
  bool WaitFor(const std::function<bool(const v1beta1::ListAndWatchResponse&)>& pred,
               Deadline deadline) const;
  bool WaitForCount(size_t count, Deadline deadline) const;
  // Cancels the call from the client side.
  void Cancel();
  // Waits until the server ended the stream (or it was cancelled).
  bool WaitFinished(Deadline deadline) const;
  bool finished() const;
  grpc::Status status() const;  // meaningful once finished

 private:
  void Read();

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1beta1::ListAndWatchResponse>> reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<v1beta1::ListAndWatchResponse> updates_;  // guarded by mu_
  bool finished_ = false;                               // guarded by mu_
  grpc::Status status_;                                 // guarded by mu_
  std::thread thread_;
};

// A client for one plugin socket, like the kubelet's.
class PluginClient {
 public:
  explicit PluginClient(const std::string& socket_path);

  // Waits (up to `deadline`) for the socket to accept a connection.
  bool WaitConnected(Deadline deadline);
  grpc::Status GetOptions(v1beta1::DevicePluginOptions* out,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
  grpc::Status Allocate(const v1beta1::AllocateRequest& req, v1beta1::AllocateResponse* out,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));
  grpc::Status GetPreferredAllocation(const v1beta1::PreferredAllocationRequest& req,
                                      v1beta1::PreferredAllocationResponse* out,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  grpc::Status PreStartContainer(const v1beta1::PreStartContainerRequest& req,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5));
  std::unique_ptr<WatchStream> Watch();

  // Shorthands for tests.
  static v1beta1::AllocateRequest AllocateRequestFor(
      const std::vector<std::vector<std::string>>& containers);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1beta1::DevicePlugin::Stub> stub_;
};

}  // namespace gdp::kubelet_stub
