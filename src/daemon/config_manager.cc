#include "src/daemon/config_manager.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/common/log.h"

namespace gdp::daemon {

absl::StatusOr<ConfigManagerOptions> ConfigManagerOptionsFromEnv(const config::EnvLookup& env) {
  ConfigManagerOptions o;
  auto get = [&](const char* name) { return env(name).value_or(""); };
  o.node_name = get("NODE_NAME");
  if (o.node_name.empty()) {
    return absl::InvalidArgumentError("NODE_NAME is not set; the chart passes spec.nodeName");
  }
  if (std::string v = get("NODE_LABEL"); !v.empty()) o.label = v;
  if (std::string v = get("CONFIG_FILE_SRCDIR"); !v.empty()) o.source_dir = v;
  if (std::string v = get("CONFIG_FILE_DST"); !v.empty()) o.destination = v;
  o.default_name = get("DEFAULT_CONFIG");
  o.kubeconfig = get("KUBECONFIG");
  if (std::string v = get("FALLBACK_STRATEGIES"); !v.empty()) {
    o.fallbacks.clear();
    for (absl::string_view s : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
      config::FallbackStrategy f{};
      if (!config::ParseFallbackStrategy(std::string(absl::StripAsciiWhitespace(s)), &f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("FALLBACK_STRATEGIES: \"", s, "\" is not one of named, single, empty"));
      }
      o.fallbacks.push_back(f);
    }
  }
  for (auto [name, out] :
       {std::pair{"ONESHOT", &o.oneshot}, std::pair{"SEND_SIGNAL", &o.send_signal}}) {
    if (std::string v = get(name); !v.empty()) {
      std::optional<bool> b = config::ParseGoBool(v);
      if (!b)
        return absl::InvalidArgumentError(absl::StrCat(name, ": \"", v, "\" is not a boolean"));
      *out = *b;
    }
  }
  if (std::string v = get("SIGNAL"); !v.empty()) {
    if (!absl::SimpleAtoi(v, &o.signal) || o.signal <= 0 || o.signal >= NSIG) {
      return absl::InvalidArgumentError(
          absl::StrCat("SIGNAL: \"", v, "\" is not a signal number (1 SIGHUP is the usual one)"));
    }
  }
  if (std::string v = get("PROCESS_TO_SIGNAL"); !v.empty()) o.process_to_signal = v;
  return o;
}

ConfigManager::ConfigManager(ConfigManagerOptions options, const FileSystem& fs)
    : options_(std::move(options)), fs_(fs) {}

absl::StatusOr<std::map<std::string, std::string>> ConfigManager::ReadConfigs() const {
  absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(options_.source_dir);
  if (!names.ok()) {
    return absl::Status(
        names.status().code(),
        absl::StrCat("cannot list the named configs in ", options_.source_dir, ": ",
                     names.status().message(), "; mount the ConfigMap there (CONFIG_FILE_SRCDIR)"));
  }
  std::map<std::string, std::string> configs;
  for (const std::string& name : *names) {
    if (name.empty() || name.front() == '.') continue;  // a ConfigMap mount's ..data and the like
    absl::StatusOr<std::string> text = fs_.ReadFile(options_.source_dir + "/" + name);
    if (text.ok()) configs[name] = *std::move(text);
  }
  return configs;
}

absl::StatusOr<config::NamedConfigChoice> ConfigManager::Apply(const nlohmann::json& node,
                                                               bool* changed) {
  *changed = false;
  std::string label_value;
  if (const auto* labels = node.contains("metadata") ? &node["metadata"] : nullptr;
      labels != nullptr && labels->contains("labels") && (*labels)["labels"].is_object()) {
    const nlohmann::json& l = (*labels)["labels"];
    if (auto it = l.find(options_.label); it != l.end() && it->is_string()) {
      label_value = it->get<std::string>();
    }
  }
  absl::StatusOr<std::map<std::string, std::string>> configs = ReadConfigs();
  if (!configs.ok()) return configs.status();
  absl::StatusOr<config::NamedConfigChoice> choice = config::ChooseNamedConfig(
      *configs, options_.label, label_value, options_.default_name, options_.fallbacks);
  if (!choice.ok()) return choice.status();
  absl::StatusOr<std::string> current = fs_.ReadFile(options_.destination);
  if (current.ok() && *current == choice->yaml) return choice;
  if (absl::Status s = fs_.WriteFileAtomic(options_.destination, choice->yaml); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot write ", options_.destination, ": ",
                                               s.message(), " (CONFIG_FILE_DST)"));
  }
  *changed = true;
  return choice;
}

int ConfigManager::SignalPlugin() const {
  int sent = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.proc_root, ec)) {
    const std::string pid_text = entry.path().filename().string();
    int pid = 0;
    if (!absl::SimpleAtoi(pid_text, &pid) || pid <= 0 || pid == ::getpid()) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    std::string argv0;
    std::getline(cmdline, argv0, '\0');
    const std::string base = std::filesystem::path(argv0).filename().string();
    if (base != options_.process_to_signal) continue;
    if (::kill(pid, options_.signal) == 0) ++sent;
  }
  return sent;
}

}  // namespace gdp::daemon
