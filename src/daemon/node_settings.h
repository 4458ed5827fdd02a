// NodeSettings: what this node's own labels (and the named-config ConfigMap)
// tell the daemon to do, followed live through the API server with watches:
//   - the deploy label (nvidia.com/gpu.deploy.device-plugin by default), by
//     which NVIDIA's GPU Operator pauses the plugin for a driver upgrade or a
//     MIG change (paused-for-driver-upgrade, paused-for-mig-change, false) and
//     resumes it (true, or the label absent);
//   - the config label (nvidia.com/device-plugin.config), which picks one of
//     the named configs in a ConfigMap (src/config/named_configs.h), and the
//     ConfigMap's contents themselves: an edit to the chosen config applies
//     too, not only a change of the label.
// It owns one kube::ObjectWatcher for the Node and, with named configs, one
// for the ConfigMap; whenever what they say changes it hands the owner a
// NodeDirective. The owner applies it (on its own thread).
//
// Thread-safety: Start() and Stop() from one owning thread; the callback runs
// on a watcher's thread, one call at a time, and must be quick.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/config/config.h"
#include "src/kube/api_client.h"
#include "src/kube/object_watcher.h"

namespace gdp::daemon {

struct NodeDirective {
  // The deploy label says pause (its value in `pause_value`).
  bool paused = false;
  std::string pause_value;
  // Named configs in use: the choice, or why there is none (keep running).
  bool named_configs = false;
  std::optional<config::NamedConfigChoice> choice;
  std::string config_error;
  bool operator==(const NodeDirective&) const = default;
};

struct NodeSettingsOptions {
  std::string node_name;
  std::string deploy_label;          // empty: not followed
  config::NodeConfigSettings named;  // config_map empty: no named configs
};

// What the labels and the ConfigMap say, as a pure function (tests).
// `node`: the Node object, nullopt when unknown or absent; `config_map`
// likewise (ignored without named configs).
NodeDirective DirectiveFor(const NodeSettingsOptions& options,
                           const std::optional<nlohmann::json>& node,
                           const std::optional<nlohmann::json>& config_map);

// True for the deploy label's values that pause the plugin.
bool IsPauseValue(const std::string& value);

class NodeSettings {
 public:
  using Callback = std::function<void(const NodeDirective&)>;

  // `client` must outlive the object. Nothing is watched unless the options
  // ask for the deploy label or named configs.
  NodeSettings(kube::ApiClient& client, NodeSettingsOptions options, Callback on_change);
  ~NodeSettings();
  NodeSettings(const NodeSettings&) = delete;
  NodeSettings& operator=(const NodeSettings&) = delete;

  void Start();
  void Stop();
  // Both watchers have listed once (the first directive was delivered).
  bool synced() const;

 private:
  void OnNode(const std::optional<nlohmann::json>& node);
  void OnConfigMap(const std::optional<nlohmann::json>& config_map);
  void Deliver();

  kube::ApiClient& client_;
  const NodeSettingsOptions options_;
  const Callback on_change_;
  std::unique_ptr<kube::ObjectWatcher> node_watcher_;
  std::unique_ptr<kube::ObjectWatcher> config_watcher_;

  std::mutex mu_;  // the watchers' threads both deliver
  std::optional<nlohmann::json> node_ ABSL_GUARDED_BY(mu_);
  std::optional<nlohmann::json> config_map_ ABSL_GUARDED_BY(mu_);
  bool node_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool config_seen_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<NodeDirective> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gdp::daemon
