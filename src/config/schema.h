// The config schema: one table of every field the plugin reads, from which
// everything else follows. A row says where the field lives in our layout and
// in NVIDIA's (when NVIDIA keeps it elsewhere), its type, its flag and
// environment variable (with NVIDIA's names for them), its --help line and
// its documentation, whether the plugin acts on it, and how its value is
// decoded into a Config. The decoder (decoder.cc), the flags and environment
// (overrides.cc), `--help`, `gpu-device-plugin config-fields` and the field
// table of docs/configuration.md all read this table, so adding a field is
// adding a row (schema.cc).
//
// Internal to the config component; the tests, overrides.cc and the
// daemon's `config-fields` use it.
// Everything here is immutable after first use and thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/config/config.h"

namespace gdp::config::detail {

class Decoder;
struct Raw;
struct Decoding;

// How a field is written, which decides how a flag or variable gives it.
enum class FieldKind {
  kBool,        // a flag given alone means true
  kScalar,      // a string, number, duration or enum word
  kList,        // a YAML list; comma-separated in a flag or variable
  kObjectList,  // a list of mappings: the file only
};

// How one field's value is read into a Config, and the value a Config holds
// for it as the docs show a default.
struct Codec {
  FieldKind kind = FieldKind::kScalar;
  std::function<void(Decoder&, const Raw&, Decoding&)> decode;
  std::function<std::string(const Config&)> show;  // "" means empty
};

// One row of the schema.
struct FieldSpec {
  const char* path;                    // our place, e.g. "flags.plugin.deviceIDStrategy"
  const char* type;                    // for the docs: "bool", "absolute path or empty", ...
  Codec codec;                         //
  const char* flag = nullptr;          // nullptr: set in the file only
  const char* env = nullptr;           //
  const char* help = "";               // one line: --help and the docs
  const char* flag_aliases = nullptr;  // NVIDIA's flag names, comma-separated
  const char* env_aliases = nullptr;   // NVIDIA's variable names, comma-separated
  const char* nvidia_path = nullptr;   // NVIDIA's place for the same field, when not ours
  // Why the plugin accepts this field of NVIDIA's format without acting on
  // it (nullptr: acted on). Given, it is noted in Config::not_acted_on (a
  // boolean only when true).
  const char* not_acted_on = nullptr;
  const char* default_doc = nullptr;  // the default in words; nullptr: codec.show(Config{})
  const char* env_doc = nullptr;      // other variables that set it (NVIDIA's), for the docs
  bool negate = false;                // the flag is the field's negation (--disable-health-checks)
};

// Every field, in document order.
const std::vector<FieldSpec>& Fields();
// The row whose path (ours or NVIDIA's) is `path`; nullptr when none.
const FieldSpec* FindField(std::string_view path);
// True when `path` has fields under it ("flags", "flags.plugin", "health", ...).
bool IsSection(std::string_view path);
// The keys directly under a section ("" is the document root), in document
// order, NVIDIA's places included.
std::vector<std::string> ChildKeys(std::string_view section);
// The Markdown table of every field (docs/configuration.md holds a copy that
// a test keeps equal to it; `gpu-device-plugin config-fields` prints it).
std::string FieldsMarkdown();

// The accepted words of the enum fields, in the order errors list them.
inline const std::vector<std::string> kMigStrategyNames = {"none", "single", "mixed"};
inline const std::vector<std::string> kDeviceIdStrategyNames = {"uuid", "index"};
inline const std::vector<std::string> kDeviceListStrategyNames = {"envvar", "volume-mounts",
                                                                  "cdi-annotations", "cdi-cri"};
inline const std::vector<std::string> kAllocationPolicyNames = {"distributed", "packed"};
inline const std::vector<std::string> kFallbackStrategyNames = {"named", "single", "empty"};
inline const std::vector<std::string> kLogLevelNames = {"debug", "info", "warn", "error"};
inline const std::vector<std::string> kLogFormatNames = {"text", "json"};
inline const std::vector<std::string> kDiscoveryStrategyNames = {"auto", "nvml", "tegra"};

inline constexpr unsigned kMinXid = 1;
inline constexpr unsigned kMaxXid = 999;

// A value as messages quote it: in double quotes, escaped, cut at 80 characters.
std::string Quote(std::string_view s);

// Levenshtein distance, ignoring ASCII case (for "did you mean").
size_t EditDistance(std::string_view a, std::string_view b);

// Go's time.ParseDuration syntax: "300ms", "30s", "5m", "1h30m", "1.5h", "0"
// (a bare number other than 0 has no unit and is an error).
absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text);
// The inverse, e.g. "1h30m" or "250ms"; "0" for zero.
std::string FormatDuration(std::chrono::nanoseconds d);

// A Kubernetes extended resource name: <DNS subdomain>/<name> (name at most 63
// characters), not in the kubernetes.io domain. On false, *why says what is wrong.
bool IsValidExtendedResourceName(const std::string& name, std::string* why);

}  // namespace gdp::config::detail
