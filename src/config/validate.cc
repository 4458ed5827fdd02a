// Validate(): the problems of a decoded Config that no single field's type
// shows (paths, names, ranges, sharing and pattern conflicts), each naming its
// field. ParseConfig adds where the value came from.
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/config/config.h"
#include "src/config/schema.h"

namespace gdp::config {
namespace {

using detail::kMaxXid;
using detail::kMinXid;
using detail::Quote;

bool IsAbsolutePath(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos;
}

void CheckPath(std::vector<std::string>* problems, const char* path, const std::string& value,
               bool may_be_empty) {
  if (value.empty() && may_be_empty) return;
  if (!IsAbsolutePath(value)) {
    problems->push_back(absl::StrCat(path, ": ", Quote(value), " must be an absolute path"));
  }
}

bool IsHostname(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  return true;
}

// The resource name the replicas of `r` are advertised under.
std::string SharedName(const SharedResource& r, bool rename_by_default) {
  if (!r.rename.empty()) return r.rename;
  return rename_by_default ? r.name + ".shared" : r.name;
}

void ValidateSharing(const Config& c, std::vector<std::string>* problems) {
  struct Seen {
    std::string path;
    bool mps;
  };
  std::map<std::string, Seen> shared;          // shared resource name -> where
  std::map<std::string, std::string> targets;  // advertised name -> where
  auto check = [&](const char* list, const std::vector<SharedResource>& resources, bool mps,
                   bool rename_by_default) {
    for (size_t i = 0; i < resources.size(); ++i) {
      const SharedResource& r = resources[i];
      const std::string path = absl::StrCat(list, "[", i, "]");
      std::string why;
      if (!detail::IsValidExtendedResourceName(r.name, &why)) {
        problems->push_back(absl::StrCat(path, ".name: ", Quote(r.name),
                                         " is not a valid extended resource name: ", why));
      }
      if (!r.rename.empty() && !detail::IsValidExtendedResourceName(r.rename, &why)) {
        problems->push_back(absl::StrCat(path, ".rename: ", Quote(r.rename),
                                         " is not a valid extended resource name: ", why));
      }
      const std::string target = SharedName(r, rename_by_default);
      if (r.rename.empty() && rename_by_default &&
          !detail::IsValidExtendedResourceName(target, &why)) {
        problems->push_back(absl::StrCat(path, ".name: renameByDefault makes ", Quote(target),
                                         ", not a valid extended resource name (", why,
                                         "); set rename"));
      }
      if (mps && absl::StartsWith(r.name, "nvidia.com/mig-")) {
        problems->push_back(absl::StrCat(
            path, ".name: ", Quote(r.name),
            " is a MIG device: MPS cannot share MIG devices here (MIG already partitions memory "
            "and compute); share it with sharing.timeSlicing or share a full GPU with MPS"));
      }
      if (auto [it, fresh] = shared.emplace(r.name, Seen{path, mps}); !fresh) {
        problems->push_back(absl::StrCat(
            path, ".name: ", Quote(r.name), " is already shared by ", it->second.path,
            it->second.mps != mps ? "; a resource is shared by time-slicing or by MPS, not both"
                                  : "; list each resource once"));
      }
      if (auto [it, fresh] = targets.emplace(target, path); !fresh) {
        problems->push_back(absl::StrCat(path, ": its replicas would be advertised as ",
                                         Quote(target), ", as those of ", it->second,
                                         "; give each entry its own rename"));
      }
    }
  };
  check("sharing.timeSlicing.resources", c.sharing.time_slicing.resources, false,
        c.sharing.time_slicing.rename_by_default);
  check("sharing.mps.resources", c.sharing.mps.resources, true, c.sharing.mps.rename_by_default);
  // A renamed target must not be a resource that is itself shared.
  for (const auto& [target, where] : targets) {
    auto it = shared.find(target);
    if (it != shared.end() && it->second.path != where) {
      problems->push_back(absl::StrCat(where, ": its replicas would be advertised as ",
                                       Quote(target), ", a resource that ", it->second.path,
                                       " shares; pick another rename"));
    }
  }
  for (const auto* list : {&c.sharing.time_slicing.resources, &c.sharing.mps.resources}) {
    for (const SharedResource& r : *list) {
      if (!r.devices.all && r.devices.ids.empty() && r.devices.count == 0) {
        problems->push_back(
            absl::StrCat("sharing: ", Quote(r.name), " selects no device; write devices: all"));
      }
    }
  }
}

// resources.gpus / resources.mig, when acted on: valid names, a pattern each,
// and no name holding both full GPUs and MIG devices.
void ValidateResourcePatterns(const Config& c, std::vector<std::string>* problems) {
  if (!c.use_resource_patterns) return;
  std::map<std::string, std::string> gpu_names;  // name -> where
  for (const auto& [list, section] : {std::pair{&c.gpu_patterns, "resources.gpus"},
                                      std::pair{&c.mig_patterns, "resources.mig"}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const ResourcePattern& p = (*list)[i];
      const std::string where = absl::StrCat(section, "[", i, "]");
      std::string why;
      if (p.pattern.empty()) problems->push_back(absl::StrCat(where, ".pattern: is empty"));
      if (!detail::IsValidExtendedResourceName(p.name, &why)) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name),
                                         " is not a valid extended resource name: ", why));
      } else if (p.name == c.resource_name && list == &c.mig_patterns) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name),
                                         " is the full GPUs' resource (flags.plugin.resourceName); "
                                         "a resource holds either full GPUs or MIG devices"));
      }
      if (list == &c.gpu_patterns) {
        gpu_names.emplace(p.name, where);
      } else if (auto it = gpu_names.find(p.name); it != gpu_names.end()) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name), " is also ", it->second,
                                         "'s; a resource holds either full GPUs or MIG devices"));
      }
    }
  }
}

}  // namespace

std::vector<std::string> Validate(const Config& c) {
  std::vector<std::string> problems;
  auto add = [&](const char* path, const std::string& what) {
    problems.push_back(absl::StrCat(path, ": ", what));
  };
  if (c.version != "v1") {
    add("version",
        absl::StrCat(Quote(c.version), " is not supported; this plugin reads version v1"));
  }
  CheckPath(&problems, "flags.nvidiaDriverRoot", c.driver_root, false);
  CheckPath(&problems, "flags.containerDriverRoot", c.container_driver_root, true);
  CheckPath(&problems, "flags.nvmlLibrary", c.nvml_library, true);
  CheckPath(&problems, "flags.sysfsRoot", c.sysfs_root, false);
  CheckPath(&problems, "flags.plugin.pluginDirectory", c.plugin_directory, false);
  CheckPath(&problems, "flags.plugin.cdiRoot", c.cdi_root, false);
  CheckPath(&problems, "flags.plugin.nvidiaCTKPath", c.nvidia_cdi_hook_path, true);
  CheckPath(&problems, "metrics.tls.certFile", c.metrics_tls_cert_file, true);
  CheckPath(&problems, "metrics.tls.keyFile", c.metrics_tls_key_file, true);
  if (c.metrics_tls_cert_file.empty() != c.metrics_tls_key_file.empty()) {
    add("metrics.tls", "certFile and keyFile go together: set both for TLS, or neither");
  }
  if (c.metrics_auth_enabled && c.metrics_tls_cert_file.empty()) {
    add("metrics.auth.enabled",
        "needs metrics.tls.certFile and keyFile: a bearer token must not cross the network in "
        "clear text");
  }
  if (c.metrics_auth_cache_ttl.count() <= 0) {
    add("metrics.auth.cacheTtl", "must be at least 1s");
  }
  CheckPath(&problems, "flags.nvidiaDevRoot", c.dev_root, true);
  {
    // An annotation key prefix: a DNS subdomain and a slash ("cdi.k8s.io/").
    const std::string& p = c.cdi_annotation_prefix;
    const bool ok = p.size() >= 2 && p.size() <= 254 && p.back() == '/' &&
                    std::all_of(p.begin(), p.end() - 1,
                                [](char ch) {
                                  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                                         ch == '-' || ch == '.';
                                }) &&
                    p.front() != '.' && p.front() != '-' && p[p.size() - 2] != '.' &&
                    p[p.size() - 2] != '-';
    if (!ok) {
      add("flags.plugin.cdiAnnotationPrefix",
          absl::StrCat(Quote(p),
                       " is not an annotation key prefix: a lower-case DNS name and a slash, "
                       "such as cdi.k8s.io/"));
    }
  }
  CheckPath(&problems, "sharing.mps.root", c.sharing.mps.root, false);
  CheckPath(&problems, "sharing.mps.controlBinary", c.sharing.mps.control_binary, true);
  ValidateSharing(c, &problems);
  ValidateResourcePatterns(c, &problems);

  if (c.device_list_strategy.empty()) {
    add("flags.plugin.deviceListStrategy",
        absl::StrCat("must name at least one of ",
                     absl::StrJoin(detail::kDeviceListStrategyNames, ", ")));
  }
  std::set<DeviceListStrategy> strategies;
  for (DeviceListStrategy s : c.device_list_strategy) {
    if (!strategies.insert(s).second) {
      add("flags.plugin.deviceListStrategy", absl::StrCat(ToString(s), " is listed twice"));
    }
  }

  std::string why;
  if (!detail::IsValidExtendedResourceName(c.resource_name, &why)) {
    add("flags.plugin.resourceName",
        absl::StrCat(Quote(c.resource_name), " is not a valid extended resource name: ", why));
  }

  std::set<unsigned> xids;
  for (unsigned xid : c.health.ignored_xids) {
    if (xid < kMinXid || xid > kMaxXid) {
      add("health.ignoredXids",
          absl::StrCat("XID ", xid, " is out of range ", kMinXid, " to ", kMaxXid));
    }
    if (!xids.insert(xid).second)
      add("health.ignoredXids", absl::StrCat("XID ", xid, " is listed twice"));
  }
  if (c.health.recovery_quiet_period < std::chrono::seconds(0)) {
    add("health.recoveryQuietPeriod",
        absl::StrCat(detail::FormatDuration(c.health.recovery_quiet_period),
                     " is negative; use 0 to never recover without a restart"));
  }
  if (c.health.probe_interval <= std::chrono::milliseconds(0)) {
    add("health.probeInterval",
        absl::StrCat(detail::FormatDuration(c.health.probe_interval), " must be positive"));
  }

  if (c.metrics_sample_interval < std::chrono::milliseconds(100)) {
    add("metrics.sampleInterval",
        absl::StrCat(detail::FormatDuration(c.metrics_sample_interval),
                     " is too short; use at least 100ms (NVML calls can take milliseconds each)"));
  }
  if (!c.metrics_pod_resources_socket.empty() && c.metrics_pod_resources_socket[0] != '/') {
    add("metrics.podResourcesSocket",
        absl::StrCat(Quote(c.metrics_pod_resources_socket),
                     " must be an absolute path (or empty to switch pod attribution off)"));
  }
  if (c.metrics_port < 0 || c.metrics_port > 65535) {
    add("metrics.port", absl::StrCat(c.metrics_port, " is out of range 0 to 65535"));
  }
  {
    unsigned char buf[sizeof(struct in6_addr)];
    const std::string& a = c.metrics_bind_address;
    if (inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1 &&
        !IsHostname(a)) {
      add("metrics.bindAddress",
          absl::StrCat(Quote(a),
                       " is not an IP address or host name (e.g. 0.0.0.0, ::, 127.0.0.1)"));
    }
  }

  if (std::find(detail::kLogLevelNames.begin(), detail::kLogLevelNames.end(), c.log_level) ==
      detail::kLogLevelNames.end()) {
    add("log.level", absl::StrCat(Quote(c.log_level), " is not one of ",
                                  absl::StrJoin(detail::kLogLevelNames, ", ")));
  }
  if (std::find(detail::kLogFormatNames.begin(), detail::kLogFormatNames.end(), c.log_format) ==
      detail::kLogFormatNames.end()) {
    add("log.format", absl::StrCat(Quote(c.log_format), " is not one of ",
                                   absl::StrJoin(detail::kLogFormatNames, ", ")));
  }

  if (const std::string& cm = c.node_config.config_map; !cm.empty()) {
    const size_t slash = cm.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == cm.size() ||
        cm.find('/', slash + 1) != std::string::npos || !IsHostname(cm.substr(0, slash)) ||
        !IsHostname(cm.substr(slash + 1))) {
      add("flags.nodeConfig.configMap",
          absl::StrCat(Quote(cm),
                       " is not namespace/name (e.g. kube-system/gpu-device-plugin-configs)"));
    }
  }
  if (c.node_config.label.empty()) {
    add("flags.nodeConfig.label",
        "must name a node label (default nvidia.com/device-plugin.config)");
  }
  if (c.rescan_interval != std::chrono::milliseconds(0) &&
      c.rescan_interval < std::chrono::milliseconds(100)) {
    add("flags.rescanInterval",
        absl::StrCat(detail::FormatDuration(c.rescan_interval),
                     " is too short: use 0 (events only) or at least 100ms"));
  }
  if (!c.node_name.empty() && !IsHostname(c.node_name)) {
    add("flags.nodeName",
        absl::StrCat(Quote(c.node_name), " is not a node name (a DNS subdomain, e.g. gpu-node-1)"));
  }
  CheckPath(&problems, "labels.kubeconfig", c.labels.kubeconfig, true);
  CheckPath(&problems, "labels.nfdFeatureFile", c.labels.nfd_feature_file, true);
  if (c.labels.resync_interval < std::chrono::seconds(1)) {
    add("labels.resyncInterval",
        absl::StrCat(detail::FormatDuration(c.labels.resync_interval), " must be at least 1s"));
  }
  return problems;
}
}  // namespace gdp::config
