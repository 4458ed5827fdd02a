// The daemon's allocation view, served as JSON at GET /allocations: for each
// advertised resource, each device with its ID, the physical GPU UUID(s)
// behind it, its health, and which namespace/pod/container holds it according
// to the kubelet's pod-resources API (List).
//
//   {"resources": [{"name": "nvidia.com/gpu", "devices": [
//      {"id": "GPU-…", "gpus": ["GPU-…"], "health": "Healthy",
//       "holders": [{"namespace": "default", "pod": "p", "container": "c"}]}]}],
//    "podResources": {"socket": "/var/lib/kubelet/pod-resources/kubelet.sock",
//                     "error": "…"}}          // "error" only when List failed
//
// Pure functions of their inputs; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/podresources/podresources.h"

namespace gdp::daemon {

struct DeviceView {
  std::string id;
  std::vector<std::string> gpus;  // physical GPU UUIDs behind the device
  bool healthy = true;
};

struct ResourceView {
  std::string name;
  std::vector<DeviceView> devices;
};

// Devices held by nobody get "holders": []. Holders of device IDs that no
// advertised device has (a resource of another plugin) are left out.
std::string AllocationsJson(
    const std::vector<ResourceView>& resources,
    const absl::StatusOr<std::vector<podresources::Assignment>>& assignments,
    const std::string& pod_resources_socket);

}  // namespace gdp::daemon
