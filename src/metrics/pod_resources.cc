#include "src/metrics/pod_resources.h"

#include <cctype>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gdp::metrics {

namespace {

// "<UUID>::<n>" (a time-slicing or MPS replica) -> "<UUID>".
std::string StripReplica(const std::string& id) {
  const auto pos = id.find("::");
  return pos == std::string::npos ? id : id.substr(0, pos);
}

}  // namespace

Attribution Attribute(const std::vector<ContainerDevices>& containers,
                      const nvml::Inventory& inventory) {
  // Every ID a device may be listed under -> the devices (GPU and, for MIG,
  // the MIG device too) it stands for.
  std::map<std::string, std::vector<std::string>> by_uuid;
  for (const nvml::Gpu& g : inventory.gpus) {
    by_uuid[g.uuid].push_back(g.uuid);
    for (const nvml::MigDevice& m : g.mig_devices) {
      by_uuid[m.uuid] = {m.uuid, g.uuid};
    }
  }
  Attribution out;
  for (const ContainerDevices& c : containers) {
    const PodRef ref{c.pod_namespace, c.pod, c.container};
    const bool nvidia = absl::StartsWith(c.resource_name, "nvidia.com/");
    for (const std::string& raw : c.device_ids) {
      const std::string id = StripReplica(raw);
      if (auto it = by_uuid.find(id); it != by_uuid.end()) {
        for (const std::string& dev : it->second) out[dev].insert(ref);
        continue;
      }
      if (!nvidia) continue;
      // An index ID ("<gpu index>", or for MIG "<gpu index>:<gpu instance id>"), as
      // another plugin may have advertised; this one advertises UUIDs.
      const auto colon = id.find(':');
      unsigned index = 0, gi = 0;
      const bool is_mig = colon != std::string::npos;
      if (!absl::SimpleAtoi(id.substr(0, colon), &index)) continue;
      if (is_mig && !absl::SimpleAtoi(id.substr(colon + 1), &gi)) continue;
      for (const nvml::Gpu& g : inventory.gpus) {
        if (g.index != index) continue;
        out[g.uuid].insert(ref);
        if (!is_mig) continue;
        for (const nvml::MigDevice& m : g.mig_devices) {
          if (m.gpu_instance_id == gi) out[m.uuid].insert(ref);
        }
      }
    }
  }
  return out;
}

}  // namespace gdp::metrics
