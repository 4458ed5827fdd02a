// The cluster's GPUs as `kubectl gpu` shows them: for every node, its GPUs by
// product, and for every nvidia.com/* resource its capacity, allocatable, in
// use and unhealthy counts, plus which pod and container holds which devices.
//
// Sources: the API server (nodes and pods, through kube::ApiClient) and, when
// reachable, each node's gpu-device-plugin HTTP endpoint (the plugin pod's
// hostIP and "metrics" port, else the node's InternalIP and a default port) (/allocations for
// device IDs per container, /inventory for the product when the node has no
// nvidia.com/gpu.product label), through the DaemonClient seam.
//
//   in use     = the nvidia.com/* requests (limits when no request) of the
//                node's pods that are Pending or Running (their devices are
//                held from admission until the pod ends);
//   unhealthy  = capacity - allocatable (the plugin advertises unhealthy
//                devices in capacity, not in allocatable).
//
// Everything here is single-threaded and stateless between calls.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "src/kube/api_client.h"

namespace gdp::kubectl_gpu {

// Reaches a node's gpu-device-plugin HTTP endpoint. HttpDaemonClient is the
// real one (GET http(s)://<host>:<port><path>, short timeouts).
class DaemonClient {
 public:
  virtual ~DaemonClient() = default;
  // The decoded JSON of GET <path> on the daemon at host:port.
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& host, int port,
                                             const std::string& path) = 0;
};

// How the daemons' endpoints are reached (their metrics.tls and metrics.auth).
struct DaemonAccess {
  bool tls = false;          // https
  std::string ca_file;       // verify the daemons' certificates with this CA (PEM)
  bool skip_verify = false;  // do not verify them (a self-signed certificate, knowingly)
  std::string token;         // sent as "Authorization: Bearer <token>" when not empty
};

class HttpDaemonClient final : public DaemonClient {
 public:
  explicit HttpDaemonClient(int timeout_seconds = 2, DaemonAccess access = {})
      : timeout_seconds_(timeout_seconds), access_(std::move(access)) {}
  absl::StatusOr<nlohmann::json> Get(const std::string& host, int port,
                                     const std::string& path) override;

 private:
  int timeout_seconds_;
  DaemonAccess access_;
};

struct ResourceCounts {
  std::string name;  // "nvidia.com/gpu"
  long capacity = 0;
  long allocatable = 0;
  long in_use = 0;
  long unhealthy = 0;
};

struct Holding {
  std::string pod_namespace, pod, container;
  std::string resource;
  long count = 0;                    // from the pod spec
  std::vector<std::string> devices;  // from /allocations; empty when unknown
};

struct NodeView {
  std::string name;
  std::string address;                    // InternalIP
  std::map<std::string, long> products;   // product -> GPUs
  std::vector<ResourceCounts> resources;  // sorted by name
  std::vector<Holding> holdings;          // sorted by namespace/pod/container/resource
  bool daemon_reached = false;
  std::string daemon_error;  // why /allocations was not read (empty when reached)
};

struct Options {
  std::string node;  // only this node (empty: all)
  // The daemon's port when the node runs no gpu-device-plugin pod that names
  // one (a container port called "metrics" of a pod labelled
  // app.kubernetes.io/name=gpu-device-plugin, reached at its hostIP).
  int daemon_port = 9101;
};

// Reads the nodes and pods and asks each node's daemon. Fails only when the
// API server does; an unreachable daemon is recorded in the node's view.
absl::StatusOr<std::vector<NodeView>> BuildClusterView(kube::ApiClient& api, DaemonClient& daemon,
                                                       const Options& options = {});

std::string RenderTable(const std::vector<NodeView>& nodes);
nlohmann::json ToJson(const std::vector<NodeView>& nodes);

// The resources this tool counts: "nvidia.com/..." names.
bool IsGpuResource(const std::string& name);

}  // namespace gdp::kubectl_gpu
