#include "src/daemon/node_settings.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace gdp::daemon {
namespace {

std::string LabelOf(const std::optional<nlohmann::json>& node, const std::string& key) {
  if (!node.has_value() || key.empty()) return "";
  const nlohmann::json* labels = nullptr;
  if (auto m = node->find("metadata"); m != node->end() && m->is_object()) {
    if (auto l = m->find("labels"); l != m->end() && l->is_object()) labels = &*l;
  }
  if (labels == nullptr) return "";
  auto v = labels->find(key);
  return v != labels->end() && v->is_string() ? v->get<std::string>() : "";
}

}  // namespace

bool IsPauseValue(const std::string& value) {
  return value == "false" || value.rfind("paused", 0) == 0;
}

NodeDirective DirectiveFor(const NodeSettingsOptions& options,
                           const std::optional<nlohmann::json>& node,
                           const std::optional<nlohmann::json>& config_map) {
  NodeDirective d;
  const std::string deploy = LabelOf(node, options.deploy_label);
  if (IsPauseValue(deploy)) {
    d.paused = true;
    d.pause_value = deploy;
  }
  if (options.named.config_map.empty()) return d;
  d.named_configs = true;
  std::map<std::string, std::string> configs;
  if (config_map.has_value()) {
    if (auto data = config_map->find("data"); data != config_map->end() && data->is_object()) {
      for (const auto& [key, value] : data->items()) {
        if (value.is_string()) configs[key] = value.get<std::string>();
      }
    }
  }
  absl::StatusOr<config::NamedConfigChoice> choice =
      config::ChooseNamedConfig(configs, options.named.label, LabelOf(node, options.named.label),
                                options.named.default_name, options.named.fallback_strategies);
  if (choice.ok()) {
    d.choice = *std::move(choice);
  } else {
    d.config_error = std::string(choice.status().message());
    if (!config_map.has_value()) {
      absl::StrAppend(&d.config_error, " (the ConfigMap ", options.named.config_map,
                      " does not exist)");
    }
  }
  return d;
}

NodeSettings::NodeSettings(kube::ApiClient& client, NodeSettingsOptions options, Callback on_change)
    : client_(client), options_(std::move(options)), on_change_(std::move(on_change)) {}

NodeSettings::~NodeSettings() { Stop(); }

void NodeSettings::Start() {
  if (node_watcher_ != nullptr) return;
  kube::ObjectWatcher::Options node;
  node.collection_path = "/api/v1/nodes";
  node.name = options_.node_name;
  node_watcher_ = std::make_unique<kube::ObjectWatcher>(
      client_, node, [this](const std::optional<nlohmann::json>& n) { OnNode(n); });
  if (!options_.named.config_map.empty()) {
    const std::string& cm = options_.named.config_map;
    const size_t slash = cm.find('/');
    kube::ObjectWatcher::Options o;
    o.collection_path = absl::StrCat("/api/v1/namespaces/", cm.substr(0, slash), "/configmaps");
    o.name = cm.substr(slash + 1);
    config_watcher_ = std::make_unique<kube::ObjectWatcher>(
        client_, o, [this](const std::optional<nlohmann::json>& c) { OnConfigMap(c); });
    config_watcher_->Start();
  }
  node_watcher_->Start();
}

void NodeSettings::Stop() {
  if (node_watcher_ != nullptr) node_watcher_->Stop();
  if (config_watcher_ != nullptr) config_watcher_->Stop();
}

bool NodeSettings::synced() const {
  return node_watcher_ != nullptr && node_watcher_->synced() &&
         (config_watcher_ == nullptr || config_watcher_->synced());
}

void NodeSettings::OnNode(const std::optional<nlohmann::json>& node) {
  {
    std::lock_guard lock(mu_);
    node_ = node;
    node_seen_ = true;
  }
  Deliver();
}

void NodeSettings::OnConfigMap(const std::optional<nlohmann::json>& config_map) {
  {
    std::lock_guard lock(mu_);
    config_map_ = config_map;
    config_seen_ = true;
  }
  Deliver();
}

void NodeSettings::Deliver() {
  NodeDirective d;
  {
    std::lock_guard lock(mu_);
    // Both objects first: a config judged before the ConfigMap arrived
    // would be a false "no such config".
    if (!node_seen_ || (!options_.named.config_map.empty() && !config_seen_)) return;
    d = DirectiveFor(options_, node_, config_map_);
    if (last_.has_value() && *last_ == d) return;
    last_ = d;
    // Delivered under the lock so that two watchers' deliveries keep order.
    on_change_(d);
  }
}

}  // namespace gdp::daemon
