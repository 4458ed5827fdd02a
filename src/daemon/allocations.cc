#include "src/daemon/allocations.h"

#include <nlohmann/json.hpp>

namespace gdp::daemon {

std::string AllocationsJson(
    const std::vector<ResourceView>& resources,
    const absl::StatusOr<std::vector<podresources::Assignment>>& assignments,
    const std::string& pod_resources_socket) {
  const podresources::HolderIndex index =
      assignments.ok() ? podresources::IndexByDevice(*assignments) : podresources::HolderIndex{};
  nlohmann::json out_resources = nlohmann::json::array();
  for (const ResourceView& r : resources) {
    const auto by_device = index.find(r.name);
    nlohmann::json devices = nlohmann::json::array();
    for (const DeviceView& d : r.devices) {
      nlohmann::json holders = nlohmann::json::array();
      if (by_device != index.end()) {
        if (auto it = by_device->second.find(d.id); it != by_device->second.end()) {
          for (const podresources::Holder& h : it->second) {
            holders.push_back(
                {{"namespace", h.pod_namespace}, {"pod", h.pod}, {"container", h.container}});
          }
        }
      }
      devices.push_back({{"id", d.id},
                         {"gpus", d.gpus},
                         {"health", d.healthy ? "Healthy" : "Unhealthy"},
                         {"holders", holders}});
    }
    out_resources.push_back({{"name", r.name}, {"devices", devices}});
  }
  nlohmann::json pr = {{"socket", pod_resources_socket}};
  if (!assignments.ok()) pr["error"] = std::string(assignments.status().message());
  return nlohmann::json{{"resources", out_resources}, {"podResources", pr}}.dump(2) + "\n";
}

}  // namespace gdp::daemon
