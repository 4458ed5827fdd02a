#include "src/config/overrides.h"

#include <CLI/CLI.hpp>

#include <cstdlib>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/config/schema.h"

namespace gdp::config {

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    // The daemon reads its environment at start and never changes it.
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::vector<std::string> OptionNames(const char* primary, const char* aliases) {
  std::vector<std::string> names = {primary};
  if (aliases != nullptr) {
    for (absl::string_view a : absl::StrSplit(aliases, ',', absl::SkipEmpty())) {
      names.emplace_back(a);
    }
  }
  return names;
}

namespace {

// A health-check variable's value: its words `all` and `xids`, and the rest
// (the XIDs), comma-joined.
struct HealthCheckValue {
  bool all = false;
  bool xids_word = false;
  std::string xids;
};
HealthCheckValue ParseHealthCheckValue(const std::string& value) {
  HealthCheckValue out;
  std::vector<std::string> numbers;
  for (absl::string_view t : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    const std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(t));
    if (word == "all") {
      out.all = true;
    } else if (word == "xids") {
      out.xids_word = true;
    } else {
      numbers.push_back(word);
    }
  }
  out.xids = absl::StrJoin(numbers, ",");
  return out;
}

// NVIDIA's DP_DISABLE_HEALTHCHECKS / DP_ENABLE_HEALTHCHECKS, as overrides of
// the health fields they mean; none where one of ours sets that field.
void HealthCheckVariables(const EnvLookup& env, std::vector<Override>* overrides) {
  auto set_by_us = [&](const std::string& path) {
    return std::any_of(overrides->begin(), overrides->end(),
                       [&](const Override& o) { return o.path == path; });
  };
  if (std::optional<std::string> v = env("DP_DISABLE_HEALTHCHECKS"); v && !v->empty()) {
    const HealthCheckValue h = ParseHealthCheckValue(*v);
    if (h.all || h.xids_word) {
      if (!set_by_us("health.enabled")) {
        overrides->push_back(Override{"health.enabled", "false", "DP_DISABLE_HEALTHCHECKS"});
      }
    } else if (!h.xids.empty() && !set_by_us("health.additionalIgnoredXids")) {
      overrides->push_back(
          Override{"health.additionalIgnoredXids", h.xids, "DP_DISABLE_HEALTHCHECKS"});
    }
  }
  if (std::optional<std::string> v = env("DP_ENABLE_HEALTHCHECKS"); v && !v->empty()) {
    const HealthCheckValue h = ParseHealthCheckValue(*v);
    if (h.all) {
      if (!set_by_us("health.ignoredXids")) {
        overrides->push_back(Override{"health.ignoredXids", "", "DP_ENABLE_HEALTHCHECKS"});
      }
    } else if (!h.xids.empty() && !set_by_us("health.criticalXids")) {
      overrides->push_back(Override{"health.criticalXids", h.xids, "DP_ENABLE_HEALTHCHECKS"});
    }
  }
}

}  // namespace

std::vector<Override> CollectOverrides(const FlagValues& flags, const EnvLookup& env) {
  std::vector<Override> overrides;
  for (const detail::FieldSpec& spec : detail::Fields()) {
    if (spec.flag == nullptr) continue;  // the file only
    // A flag under any of its names (RegisterFlags stores them under the
    // primary one; a caller may hand in an alias too).
    bool found = false;
    for (const std::string& name : OptionNames(spec.flag, spec.flag_aliases)) {
      if (auto it = flags.find(name); it != flags.end()) {
        overrides.push_back(Override{spec.path, it->second, name, spec.negate});
        found = true;
        break;
      }
    }
    if (found) continue;
    // An empty variable counts as unset: manifests often template "" in.
    for (const std::string& name : OptionNames(spec.env, spec.env_aliases)) {
      if (std::optional<std::string> value = env(name); value && !value->empty()) {
        overrides.push_back(Override{spec.path, *value, name, spec.negate});
        break;
      }
    }
  }
  HealthCheckVariables(env, &overrides);
  // NVIDIA's KUBELET_SOCKET names the kubelet's socket; the plugin directory
  // is the folder it is in (the kubelet always names it kubelet.sock).
  if (std::optional<std::string> v = env("KUBELET_SOCKET"); v && !v->empty()) {
    const bool ours = std::any_of(overrides.begin(), overrides.end(), [](const Override& o) {
      return o.path == "flags.plugin.pluginDirectory";
    });
    const size_t slash = v->rfind('/');
    if (!ours && slash != std::string::npos && slash > 0) {
      overrides.push_back(
          Override{"flags.plugin.pluginDirectory", v->substr(0, slash), "KUBELET_SOCKET"});
    }
  }
  return overrides;
}

std::string ConfigFilePath(const FlagValues& flags, const EnvLookup& env) {
  if (auto it = flags.find(kConfigFileFlag); it != flags.end()) return it->second;
  return env(kConfigFileEnv).value_or("");
}

void RegisterFlags(CLI::App& app, FlagValues* values) {
  auto add = [&](const std::string& flag, const std::string& help, bool is_switch) {
    CLI::Option* opt = app.add_option_function<std::string>(
        flag, [values, flag](const std::string& v) { (*values)[flag] = v; }, help);
    if (is_switch) opt->expected(0, 1)->default_str("true");
  };
  add(kConfigFileFlag, absl::StrCat("YAML config file (env ", kConfigFileEnv, ")"), false);
  for (const detail::FieldSpec& spec : detail::Fields()) {
    if (spec.flag == nullptr) continue;  // the file only
    // Aliases are other names of the same option, stored under the primary one.
    std::string names = spec.flag;
    if (spec.flag_aliases != nullptr) absl::StrAppend(&names, ",", spec.flag_aliases);
    std::string envs = spec.env;
    if (spec.env_aliases != nullptr) absl::StrAppend(&envs, ", ", spec.env_aliases);
    const std::string primary = spec.flag;
    CLI::Option* opt = app.add_option_function<std::string>(
        names, [values, primary](const std::string& v) { (*values)[primary] = v; },
        absl::StrCat(spec.help, " (env ", envs, "; ", spec.path, ")"));
    if (spec.codec.kind == detail::FieldKind::kBool) opt->expected(0, 1)->default_str("true");
  }
}

}  // namespace gdp::config
