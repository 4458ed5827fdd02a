// A stand-in for the kubelet's pod-resources API (v1.PodResourcesLister) on a
// unix socket, for tests: List answers whatever the test set with
// SetContainers(); Get and GetAllocatableResources answer UNIMPLEMENTED.
//
// Start/Stop from one thread; SetContainers and ListCalls from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace grpc {
class Server;
}

namespace gdp::kubelet_stub {

struct StubContainer {
  std::string pod_namespace;
  std::string pod;
  std::string container;
  std::string resource_name;
  std::vector<std::string> device_ids;
};

class PodResourcesStub {
 public:
  explicit PodResourcesStub(std::string socket_path);
  ~PodResourcesStub();  // Stop()

  // Removes a stale socket and serves on it.
  absl::Status Start();
  void Stop();

  // The containers List reports from now on (grouped into pods by namespace/pod).
  void SetContainers(std::vector<StubContainer> containers);
  int ListCalls() const;

  const std::string& socket_path() const { return socket_path_; }

 private:
  class Service;
  const std::string socket_path_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace gdp::kubelet_stub
