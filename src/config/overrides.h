// Command-line flags and environment variables that override config fields.
//
// The schema (src/config/schema.h) names, for every settable field, its YAML
// path, its flag and its environment variable (and NVIDIA's names for them),
// so the daemon, --help, the docs and the tests agree. Precedence: flag > environment > file >
// default. Overrides are applied by field path before decoding, so a bad flag value is reported
// like a bad file value, naming the path and the flag or variable it came from.
//
// The config file itself is named by --config-file or CONFIG_FILE.
// Everything here is stateless; RegisterFlags' callbacks write into the
// FlagValues the caller owns (CLI11 parses on one thread).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace CLI {
class App;
}

namespace gdp::config {

inline constexpr const char* kConfigFileFlag = "--config-file";
inline constexpr const char* kConfigFileEnv = "CONFIG_FILE";

// Raw values of the flags the user gave, keyed by flag name ("--mig-strategy").
using FlagValues = std::map<std::string, std::string>;
// Looks an environment variable up; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// A name and its comma-separated aliases (nullptr: none), as a list.
std::vector<std::string> OptionNames(const char* primary, const char* aliases);

// The process environment (getenv).
EnvLookup ProcessEnv();

// The overrides to apply: for each table entry, the flag's value if given
// (under its name or an alias), else the environment variable's if set and
// not empty (its name first, then its aliases). NVIDIA's health variables
// apply too: DP_DISABLE_HEALTHCHECKS (all or xids: health checks off; a list
// of XIDs: ignore these too) and DP_ENABLE_HEALTHCHECKS (a list of XIDs:
// never ignore these; all: ignore none), unless the health fields are set by
// our own flags or variables; and KUBELET_SOCKET (its folder is the plugin
// directory) unless --plugin-directory or PLUGIN_DIRECTORY is given.
std::vector<Override> CollectOverrides(const FlagValues& flags, const EnvLookup& env);

// The config file to read: --config-file, else CONFIG_FILE, else "" (no file).
std::string ConfigFilePath(const FlagValues& flags, const EnvLookup& env);

// Registers --config-file and every flag of the table on `app`; parsing stores
// the given ones in *values. `values` must outlive app.parse().
void RegisterFlags(CLI::App& app, FlagValues* values);

}  // namespace gdp::config
