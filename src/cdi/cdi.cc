#include "src/cdi/cdi.h"

#include <nlohmann/json.hpp>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/common/log.h"
#include "src/resources/resources.h"

namespace gdp::cdi {
namespace {

nlohmann::json Nodes(const std::vector<plugin::DeviceSpec>& nodes) {
  nlohmann::json out = nlohmann::json::array();
  for (const plugin::DeviceSpec& n : nodes) {
    out.push_back(
        {{"path", n.container_path}, {"hostPath", n.host_path}, {"permissions", n.permissions}});
  }
  return out;
}

}  // namespace

std::string BuildSpec(const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources,
                      const driver::DriverFiles& driver) {
  nlohmann::json devices = nlohmann::json::array();
  std::vector<plugin::DeviceSpec> common;
  std::set<std::string> names;
  const std::string prefix = absl::StrCat(kKind, "=");
  for (const auto& backend : resources) {
    const resources::Resource* r = resources::AsResource(*backend);
    if (r == nullptr) continue;
    for (const resources::DeviceEntry& d : r->spec().devices) {
      if (!absl::StartsWith(d.cdi_name, prefix)) continue;
      std::string name = d.cdi_name.substr(prefix.size());
      if (!names.insert(name).second) continue;
      devices.push_back({{"name", std::move(name)},
                         {"containerEdits", {{"deviceNodes", Nodes(d.device_nodes)}}}});
    }
    for (const plugin::DeviceSpec& n : r->spec().control_nodes) {
      bool have = false;
      for (const plugin::DeviceSpec& c : common)
        have = have || c.container_path == n.container_path;
      if (!have) common.push_back(n);
    }
  }
  nlohmann::json spec = {{"cdiVersion", kCdiVersion}, {"kind", kKind}, {"devices", devices}};
  nlohmann::json edits = nlohmann::json::object();
  if (!common.empty()) edits["deviceNodes"] = Nodes(common);
  if (!driver.mounts.empty()) {
    nlohmann::json mounts = nlohmann::json::array();
    for (const driver::Mount& m : driver.mounts) {
      mounts.push_back({{"hostPath", m.host_path},
                        {"containerPath", m.container_path},
                        {"options", kMountOptions}});
    }
    edits["mounts"] = std::move(mounts);
  }
  if (!edits.empty()) spec["containerEdits"] = std::move(edits);
  return spec.dump(2) + "\n";
}

absl::Status SpecWriter::Write(
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources,
    const driver::DriverFiles& driver) {
  const std::string path = absl::StrCat(dir_, "/", kSpecFile);
  const std::string text = BuildSpec(resources, driver);
  absl::StatusOr<std::string> current = fs_.ReadFile(path);
  if (!current.ok() || *current != text) {
    if (absl::Status s = fs_.WriteFileAtomic(path, text); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("cannot write the CDI spec ", path, ": ", s.message(),
                                       "; is the CDI directory (flags.plugin.cdiRoot) mounted "
                                       "read-write?"));
    }
    log::Info("CDI spec written",
              {{"path", path}, {"bytes", text.size()}, {"driver_mounts", driver.mounts.size()}});
    for (const std::string& note : driver.notes) {
      log::Warn("CDI spec without part of the driver", {{"path", path}, {"why", note}});
    }
  }
  return RemoveOwned(/*keep_current=*/true);
}

absl::Status SpecWriter::RemoveAll() { return RemoveOwned(/*keep_current=*/false); }

absl::Status SpecWriter::RemoveOwned(bool keep_current) {
  absl::StatusOr<std::vector<std::string>> entries = fs_.ListDir(dir_);
  if (!entries.ok()) {
    if (absl::IsNotFound(entries.status())) return absl::OkStatus();
    return absl::Status(
        entries.status().code(),
        absl::StrCat("cannot list the CDI directory ", dir_, ": ", entries.status().message()));
  }
  for (const std::string& name : *entries) {
    if (!absl::StartsWith(name, kOwnedPrefix) || (keep_current && name == kSpecFile)) continue;
    const std::string path = absl::StrCat(dir_, "/", name);
    if (absl::Status s = fs_.Remove(path); !s.ok() && !absl::IsNotFound(s)) {
      return absl::Status(
          s.code(), absl::StrCat("cannot remove the stale CDI spec ", path, ": ", s.message()));
    }
    log::Info("stale CDI spec removed", {{"path", path}});
  }
  return absl::OkStatus();
}

}  // namespace gdp::cdi
