// The strict decoder's parts, for the schema's codecs (schema.cc) and
// ParseConfig (decoder.cc): one value to decode (Raw), the typed readers that
// report a wrong value by its path and origin (Decoder), and the Config being
// built (Decoding). Internal to the config component; single-threaded, one
// Decoder per ParseConfig call.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace gdp::config::detail {

// One value to decode: from the document (node) or from an override (text).
struct Raw {
  std::string path;    // field path, e.g. "health.ignoredXids[2]"
  std::string suffix;  // " (line N)" or " (from --flag)"
  YAML::Node node;     // valid when from the document
  const Override* ov = nullptr;

  std::string where() const { return path + suffix; }
  bool IsScalar() const { return ov != nullptr || node.IsScalar(); }
  std::string Text() const { return ov != nullptr ? ov->value : node.Scalar(); }
  // A quoted string where a number or boolean belongs is a type error, as in Go's YAML.
  bool Quoted() const { return ov == nullptr && node.Tag() == "!"; }
  std::string Seen() const;
};

// The Config being decoded, and what is decoded together once every field is read.
struct Decoding {
  Config config;
  // health: the ignored list is ignoredXids (or the default) plus
  // additionalIgnoredXids minus criticalXids.
  std::optional<std::vector<unsigned>> ignored_xids;
  std::optional<std::vector<unsigned>> additional_ignored_xids;
  std::optional<std::vector<unsigned>> critical_xids;
};

// Typed readers: each returns the value, or nullopt after recording an error
// that names the field, where its value came from, what was expected and what
// was seen.
class Decoder {
 public:
  std::vector<std::string> errors;

  void Error(const std::string& where, const std::string& what);
  static std::string Suffix(const YAML::Mark& mark);
  static std::string Where(const std::string& path, const YAML::Mark& mark);
  // "unknown field", with a did-you-mean or the known fields of the section.
  static std::string UnknownFieldMessage(const std::string& key, const std::string& prefix,
                                         const std::vector<std::string>& known);

  // Walks a mapping, reporting duplicate and unknown keys and non-mapping sections.
  void CheckKeys(const YAML::Node& map, const std::string& prefix);
  // The value for a field: an override wins over the document (a fallback
  // override only where the document says nothing).
  std::optional<Raw> Lookup(const YAML::Node& doc, const std::string& path,
                            const std::map<std::string, const Override*>& overrides);
  // The value for a field in the document alone; null is unset.
  static std::optional<Raw> InDocument(const YAML::Node& doc, const std::string& path);

  std::optional<bool> Bool(const Raw& raw);
  std::optional<std::string> String(const Raw& raw);
  std::optional<int64_t> Int(const Raw& raw, int64_t min, int64_t max);
  std::optional<std::string> Enum(const Raw& raw, const std::vector<std::string>& names);
  // A list: a YAML sequence, or (from a flag, env var, or with allow_scalar a
  // YAML string) comma-separated items. Each item carries its own path.
  std::optional<std::vector<Raw>> List(const Raw& raw, bool allow_scalar);
  // Integers min..max, all of them or nothing.
  std::optional<std::vector<unsigned>> UintList(const Raw& raw, bool allow_scalar, unsigned min,
                                                unsigned max);
  std::optional<std::chrono::nanoseconds> Duration(const Raw& raw);
  // A duration that is a whole number of `unit`s (named in the error).
  template <typename Unit>
  std::optional<Unit> WholeDuration(const Raw& raw, const char* unit_name);
  // A device selector: "all", a count, or a list of indices and UUIDs.
  std::optional<DeviceSelector> Devices(const Raw& raw);
  // sharing.timeSlicing.resources / sharing.mps.resources: a list of mappings.
  std::optional<std::vector<SharedResource>> SharedList(const Raw& raw, bool mps);
  // resources.gpus / resources.mig: a list of {pattern, name}.
  std::optional<std::vector<ResourcePattern>> PatternList(const Raw& raw);

  static constexpr int64_t kMaxTimeSlicingReplicas = 1024;
  static constexpr int64_t kMaxMpsReplicas = 48;

 private:
  std::deque<Override> owned_;  // list items split from an override's text
};

template <typename Unit>
std::optional<Unit> Decoder::WholeDuration(const Raw& raw, const char* unit_name) {
  std::optional<std::chrono::nanoseconds> d = Duration(raw);
  if (!d) return std::nullopt;
  if (*d % Unit(1) != std::chrono::nanoseconds(0)) {
    Error(raw.where(), raw.Seen() + " must be a whole number of " + unit_name);
    return std::nullopt;
  }
  return std::chrono::duration_cast<Unit>(*d);
}

}  // namespace gdp::config::detail
