// Named configs: one ConfigMap holds several configs (each key a config
// file), and a node picks one with a label, as NVIDIA's device plugin and its
// config-manager do. The choice, in NVIDIA's order:
//   1. the node label's value (nvidia.com/device-plugin.config by default),
//      when the label is set: a value naming no config is an error, and the
//      running config is kept;
//   2. else the configured default name (flags.nodeConfig.default), which must
//      exist when set;
//   3. else the fallbacks, in the order given: `named` (a key called
//      "default"), `single` (the only key, when there is exactly one), `empty`
//      (the built-in defaults, no file at all).
// Pure functions over plain values; thread-safe.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::config {

enum class FallbackStrategy { kNamed, kSingle, kEmpty };

struct NamedConfigChoice {
  std::string name;  // the key chosen; empty for the built-in defaults
  std::string yaml;  // its text ("" for the built-in defaults)
  std::string why;   // "node label nvidia.com/device-plugin.config=timeslice4", ...
  bool operator==(const NamedConfigChoice&) const = default;
};

// `configs`: the ConfigMap's data; `label_value`: the node label's value ("" when
// the node has no such label). NotFound naming the value and the keys there
// are when the label (or the default) names a missing config, or no fallback
// applies.
absl::StatusOr<NamedConfigChoice> ChooseNamedConfig(
    const std::map<std::string, std::string>& configs, const std::string& label_key,
    const std::string& label_value, const std::string& default_name,
    const std::vector<FallbackStrategy>& fallbacks);

// "named" | "single" | "empty"; false for anything else.
bool ParseFallbackStrategy(const std::string& text, FallbackStrategy* out);
const char* ToString(FallbackStrategy s);

}  // namespace gdp::config
