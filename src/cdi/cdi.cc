#include "src/cdi/cdi.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/common/log.h"
#include "src/resources/resources.h"

namespace gdp::cdi {
namespace {

std::string Dir(const std::string& path) { return path.substr(0, path.rfind('/')); }
std::string Base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// The hook binary's command words: nvidia-ctk has its hooks under `hook`.
nlohmann::json HookArgs(const std::string& hook_path, const std::string& hook) {
  const std::string base = Base(hook_path);
  if (base == "nvidia-ctk") return {base, "hook", hook};
  return {base, hook};
}

// The driver's edits: its files as mounts; with a hook binary, the libraries'
// other names as links it makes and their folders in the ld cache.
void AddDriver(const DriverEdits& driver, nlohmann::json* edits) {
  nlohmann::json mounts = nlohmann::json::array();
  nlohmann::json links = nlohmann::json::array();
  std::vector<std::string> folders;
  const bool hook = !driver.hook_path.empty();
  for (const driver::Mount& m : driver.files.mounts) {
    if (hook && !m.link_to.empty()) {
      // NVIDIA's form: <target>::<link>, the target relative in its folder.
      const std::string target =
          Dir(m.link_to) == Dir(m.container_path) ? Base(m.link_to) : m.link_to;
      links.push_back("--link");
      links.push_back(absl::StrCat(target, "::", m.container_path));
      continue;
    }
    if (m.library &&
        std::find(folders.begin(), folders.end(), Dir(m.container_path)) == folders.end()) {
      folders.push_back(Dir(m.container_path));
    }
    mounts.push_back({{"hostPath", m.host_path},
                      {"containerPath", m.container_path},
                      {"options", kMountOptions}});
  }
  // An NVIDIA runtime reading the environment or the volume-mounts list adds nothing.
  mounts.push_back({{"hostPath", "/dev/null"},
                    {"containerPath", "/var/run/nvidia-container-devices/void"},
                    {"options", {"ro", "nosuid", "nodev", "bind"}}});
  (*edits)["env"] = {"NVIDIA_VISIBLE_DEVICES=void"};
  (*edits)["mounts"] = std::move(mounts);
  if (!hook) return;
  nlohmann::json hooks = nlohmann::json::array();
  if (!links.empty()) {
    nlohmann::json args = HookArgs(driver.hook_path, "create-symlinks");
    args.insert(args.end(), links.begin(), links.end());
    hooks.push_back({{"hookName", "createContainer"}, {"path", driver.hook_path}, {"args", args}});
  }
  if (!folders.empty()) {
    nlohmann::json args = HookArgs(driver.hook_path, "update-ldcache");
    for (const std::string& f : folders) {
      args.push_back("--folder");
      args.push_back(f);
    }
    hooks.push_back({{"hookName", "createContainer"}, {"path", driver.hook_path}, {"args", args}});
  }
  if (!hooks.empty()) (*edits)["hooks"] = std::move(hooks);
}

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
                      const DriverEdits& driver) {
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
  AddDriver(driver, &edits);
  spec["containerEdits"] = std::move(edits);
  return spec.dump(2) + "\n";
}

std::string UsableHook(const FileSystem& fs, const std::string& configured,
                       std::vector<std::string>* notes) {
  if (configured.empty()) return "";
  absl::StatusOr<FileInfo> info = fs.Stat(configured);
  if (info.ok() &&
      (info->type == FileInfo::Type::kRegular || info->type == FileInfo::Type::kSymlink)) {
    return configured;
  }
  notes->push_back(absl::StrCat(
      "the CDI hook ", configured, " (flags.plugin.nvidiaCTKPath) is not a file here (",
      info.ok() ? "not a regular file" : info.status().message(),
      "): the spec mounts the library links and runs no hook; mount the host's binary at "
      "that path (the chart's cdi.hookPath) to use it"));
  return "";
}

absl::Status SpecWriter::Write(
    const std::vector<std::shared_ptr<const plugin::ResourceBackend>>& resources,
    const DriverEdits& driver) {
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
    log::Info("CDI spec written", {{"path", path},
                                   {"bytes", text.size()},
                                   {"driver_mounts", driver.files.mounts.size()},
                                   {"hook", driver.hook_path.empty() ? "none" : driver.hook_path}});
    for (const std::string& note : driver.files.notes) {
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
