// A stand-in for the kubelet's pod-resources API v1: serves
// PodResourcesLister.List on a unix socket from a list of assignments that the
// test sets (and changes) at any time. Get and GetAllocatableResources answer
// UNIMPLEMENTED; the project only lists.
//
// Start/Stop from one thread; SetAssignments, SetListResponse and ListCount
// are thread-safe and may race with List calls.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/podresources/podresources.h"

namespace grpc {
class Server;
class Status;
}  // namespace grpc

namespace gdp::kubelet_stub {

class PodResourcesStub {
 public:
  explicit PodResourcesStub(std::string socket_path);
  ~PodResourcesStub();  // Stop()

  // Removes a stale socket and serves List on it.
  absl::Status Start();
  void Stop();

  // What List answers from now on (containers grouped into pods in order).
  void SetAssignments(std::vector<podresources::Assignment> assignments);
  // Every later List fails with this code and message instead (OK: serve again).
  void SetListError(int grpc_code, std::string message);
  size_t ListCount() const { return list_count_.load(); }
  const std::string& socket_path() const { return socket_path_; }

 private:
  class Service;
  friend class Service;

  const std::string socket_path_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<size_t> list_count_{0};

  mutable std::mutex mu_;
  std::vector<podresources::Assignment> assignments_;  // guarded by mu_
  int error_code_ = 0;                                 // guarded by mu_
  std::string error_message_;                          // guarded by mu_
};

// Parses the text form podresources-list prints, one assignment a line:
//   NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...]
// Blank lines and lines starting with '#' are skipped. InvalidArgument names
// the line number of a malformed line.
absl::StatusOr<std::vector<podresources::Assignment>> ParseAssignments(const std::string& text);

}  // namespace gdp::kubelet_stub
