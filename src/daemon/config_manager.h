// ConfigManager: `gpu-device-plugin config-manager` (also run under the name
// config-manager), with the meaning of NVIDIA's config-manager, so NVIDIA's
// chart can run this image for named configs. It picks one of the config files
// in a folder (the ConfigMap of named configs, mounted) by the node's label, in
// NVIDIA's order (src/config/named_configs.h), and copies it to where the
// plugin reads its config. With ONESHOT it does that once (the init
// container); otherwise it watches the Node and copies again when the label
// changes (the sidecar), and, as NVIDIA's does with SEND_SIGNAL, signals the
// plugin (which also reloads on the file change by itself).
//
// The daemon does not need it: it watches the label and the ConfigMap itself
// (flags.nodeConfig).
#pragma once

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "src/common/filesystem.h"
#include "src/config/named_configs.h"
#include "src/config/overrides.h"

namespace gdp::daemon {

struct ConfigManagerOptions {
  std::string node_name;                                  // NODE_NAME (required)
  std::string label = "nvidia.com/device-plugin.config";  // NODE_LABEL
  std::string source_dir = "/available-configs";          // CONFIG_FILE_SRCDIR
  std::string destination = "/config/config.yaml";        // CONFIG_FILE_DST
  std::string default_name;                               // DEFAULT_CONFIG
  std::vector<config::FallbackStrategy> fallbacks = {config::FallbackStrategy::kNamed,
                                                     config::FallbackStrategy::kSingle};
  bool oneshot = false;                                    // ONESHOT
  bool send_signal = false;                                // SEND_SIGNAL
  int signal = SIGHUP;                                     // SIGNAL (a number)
  std::string process_to_signal = "nvidia-device-plugin";  // PROCESS_TO_SIGNAL
  std::string proc_root = "/proc";                         // where processes are looked up
  std::string kubeconfig;                                  // KUBECONFIG; empty: in-cluster
};

// From NVIDIA's variables; InvalidArgument naming the variable on a bad value.
absl::StatusOr<ConfigManagerOptions> ConfigManagerOptionsFromEnv(const config::EnvLookup& env);

class ConfigManager {
 public:
  ConfigManager(ConfigManagerOptions options, const FileSystem& fs);

  // Picks the config for this Node object (its labels) among the files in
  // source_dir and writes it to destination when it differs from what is
  // there; *changed says whether it wrote. NotFound when the label (or the
  // default) names no file there, naming the files there are.
  absl::StatusOr<config::NamedConfigChoice> Apply(const nlohmann::json& node, bool* changed);

  // Sends options.signal to every process whose command is
  // process_to_signal (shareProcessNamespace shows the plugin's); the count.
  int SignalPlugin() const;

 private:
  absl::StatusOr<std::map<std::string, std::string>> ReadConfigs() const;

  ConfigManagerOptions options_;
  const FileSystem& fs_;
};

}  // namespace gdp::daemon
