#include "src/config/named_configs.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gdp::config {
namespace {

std::string Keys(const std::map<std::string, std::string>& configs) {
  if (configs.empty()) return "none";
  std::vector<std::string> keys;
  keys.reserve(configs.size());
  for (const auto& [k, v] : configs) keys.push_back(k);
  return absl::StrJoin(keys, ", ");
}

}  // namespace

bool ParseFallbackStrategy(const std::string& text, FallbackStrategy* out) {
  if (text == "named") {
    *out = FallbackStrategy::kNamed;
  } else if (text == "single") {
    *out = FallbackStrategy::kSingle;
  } else if (text == "empty") {
    *out = FallbackStrategy::kEmpty;
  } else {
    return false;
  }
  return true;
}

const char* ToString(FallbackStrategy s) {
  switch (s) {
    case FallbackStrategy::kNamed:
      return "named";
    case FallbackStrategy::kSingle:
      return "single";
    case FallbackStrategy::kEmpty:
      return "empty";
  }
  return "named";
}

absl::StatusOr<NamedConfigChoice> ChooseNamedConfig(
    const std::map<std::string, std::string>& configs, const std::string& label_key,
    const std::string& label_value, const std::string& default_name,
    const std::vector<FallbackStrategy>& fallbacks) {
  if (!label_value.empty()) {
    auto it = configs.find(label_value);
    if (it == configs.end()) {
      return absl::NotFoundError(absl::StrCat("node label ", label_key, "=", label_value,
                                              " names no config (the configs are: ", Keys(configs),
                                              "); keeping the running config"));
    }
    return NamedConfigChoice{it->first, it->second,
                             absl::StrCat("node label ", label_key, "=", label_value)};
  }
  if (!default_name.empty()) {
    auto it = configs.find(default_name);
    if (it == configs.end()) {
      return absl::NotFoundError(absl::StrCat("the default config ", default_name,
                                              " is not among the configs (", Keys(configs),
                                              "); keeping the running config"));
    }
    return NamedConfigChoice{it->first, it->second, "the default config"};
  }
  for (FallbackStrategy f : fallbacks) {
    switch (f) {
      case FallbackStrategy::kNamed:
        if (auto it = configs.find("default"); it != configs.end()) {
          return NamedConfigChoice{it->first, it->second, "fallback named: the key \"default\""};
        }
        break;
      case FallbackStrategy::kSingle:
        if (configs.size() == 1) {
          return NamedConfigChoice{configs.begin()->first, configs.begin()->second,
                                   "fallback single: the only config"};
        }
        break;
      case FallbackStrategy::kEmpty:
        return NamedConfigChoice{"", "", "fallback empty: the built-in defaults"};
    }
  }
  std::vector<std::string> tried;
  tried.reserve(fallbacks.size());
  for (FallbackStrategy f : fallbacks) tried.emplace_back(ToString(f));
  return absl::NotFoundError(absl::StrCat(
      "no config applies: the node has no ", label_key, " label, no default config is set, and ",
      "no fallback applies (tried: ", tried.empty() ? "none" : absl::StrJoin(tried, ", "),
      "; the configs are: ", Keys(configs), "); keeping the running config"));
}

}  // namespace gdp::config
