// One v1beta1.DevicePlugin gRPC server for one advertised resource, listening
// on unix://<plugin dir>/<SocketNameFor(resource)>.
//
// What it serves comes from a ResourceBackend; the server adds only a health
// overlay (SetHealth) on top of the backend's device list. It uses gRPC's
// async API on a completion queue of its own, served by one thread
// (`gdp-grpc`) that blocks until something happens: gRPC's callback API would
// start clamp(cores / 2, 2, 16) polling threads per process, each waking every
// second (docs/benchmarks.md, "Idle cost"). A ListAndWatch stream holds no
// thread, sends the whole list when it opens and again after every change, and
// coalesces bursts (a stream that is still writing sends only the newest list
// when its write completes). Any number of streams may be open at once. Unary
// handlers call the backend inline; backends are CPU-only and quick.
//
// Ownership: the server shares the backend (shared_ptr) with its owner.
// Start/Stop may be repeated (a kubelet restart needs a fresh socket); the
// health overlay and the statistics survive a restart.
//
// Thread-safety: every public method is thread-safe. Start and Stop are
// serialised by the caller in practice (the PluginManager's thread) but are
// safe to call from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/plugin/backend.h"

namespace grpc {
class Server;
class Status;
}  // namespace grpc

namespace gdp::plugin {

// The socket file name for a resource: the first label of the vendor domain,
// '-', the name, ".sock"; any character outside [A-Za-z0-9_.-] becomes '-'.
//   "nvidia.com/gpu"          -> "nvidia-gpu.sock"
//   "nvidia.com/mig-1g.10gb"  -> "nvidia-mig-1g.10gb.sock"
//   "nvidia.com/gpu.shared"   -> "nvidia-gpu.shared.sock"
//   "gpu" (no domain)         -> "gpu.sock"
// Two resources of one process never differ only in the domain's later labels.
std::string SocketNameFor(std::string_view resource_name);

// Converts an absl::Status into the grpc::Status an RPC returns (same code
// number, same message). The only place the plugin crosses that boundary.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Upper bounds (microseconds) of the RPC latency histogram buckets; a call
// slower than the last bound is counted only in the total.
inline constexpr std::array<uint64_t, 12> kLatencyBucketsUs = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};
// Per bucket (not cumulative): calls with latency in (bound[i-1], bound[i]].
using LatencyBuckets = std::array<std::atomic<uint64_t>, kLatencyBucketsUs.size()>;

// Counters for the RPCs the kubelet makes, exported on /metrics.
// Latencies are summed in microseconds; divide by the call count for a mean.
struct ServerStats {
  std::atomic<uint64_t> allocate_calls{0};
  std::atomic<uint64_t> allocate_errors{0};
  std::atomic<uint64_t> allocate_latency_us{0};
  LatencyBuckets allocate_latency_buckets{};
  std::atomic<uint64_t> preferred_allocation_calls{0};
  std::atomic<uint64_t> preferred_allocation_errors{0};
  std::atomic<uint64_t> preferred_allocation_latency_us{0};
  LatencyBuckets preferred_allocation_latency_buckets{};
  std::atomic<uint64_t> list_and_watch_sends{0};  // messages handed to gRPC
  std::atomic<int64_t> open_streams{0};           // ListAndWatch streams open now
};

namespace detail {
class ServerState;
class DevicePluginService;
class Loop;
}  // namespace detail

class DevicePluginServer {
 public:
  struct Options {
    std::string plugin_dir = "/var/lib/kubelet/device-plugins";
    // How long Stop gives in-flight unary calls before cancelling them.
    std::chrono::milliseconds shutdown_deadline{1000};
  };

  DevicePluginServer(std::shared_ptr<const ResourceBackend> backend, Options options);
  ~DevicePluginServer();  // Stops.
  DevicePluginServer(const DevicePluginServer&) = delete;
  DevicePluginServer& operator=(const DevicePluginServer&) = delete;

  // Removes a stale socket file, binds and starts serving. FailedPrecondition
  // when already running; Unavailable/Internal naming the socket when the bind
  // fails (directory missing or not writable, path too long).
  absl::Status Start();

  // Ends every open ListAndWatch stream (status OK), shuts the server down
  // with the configured deadline and removes our socket file. Idempotent.
  void Stop();

  bool running() const;

  // Health overlay: device ID -> healthy. IDs the backend does not list are
  // ignored; IDs not mentioned keep their current health. Streams get a new
  // list only when the resulting list really changed.
  void SetHealth(const std::map<std::string, bool>& health);
  void SetUnhealthy(const std::vector<std::string>& device_ids);

  // Replaces the backend while serving, with `health` applied to the overlay
  // in the same step (overlay entries of IDs the new backend does not list
  // are dropped). Open streams get the new list when it differs, so a device
  // list that changes (a GPU added or removed, a MIG re-layout, a config
  // reload) keeps the socket, the registration and every stream.
  void SwapBackend(std::shared_ptr<const ResourceBackend> backend,
                   const std::map<std::string, bool>& health = {});
  std::shared_ptr<const ResourceBackend> backend() const;

  // The list ListAndWatch sends now (backend devices with the health overlay).
  std::vector<Device> Devices() const;

  const std::string& resource_name() const { return resource_name_; }
  const std::string& socket_name() const { return socket_name_; }  // the Register endpoint
  const std::string& socket_path() const { return socket_path_; }
  const ServerStats& stats() const;

 private:
  const std::string resource_name_;
  const std::string socket_name_;
  const std::string socket_path_;
  const Options options_;
  const std::shared_ptr<detail::ServerState> state_;

  mutable std::mutex mu_;  // serialises Start/Stop
  std::unique_ptr<detail::DevicePluginService> service_ ABSL_GUARDED_BY(mu_);  // outlives loop_
  std::unique_ptr<detail::Loop> loop_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gdp::plugin
