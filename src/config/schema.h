// Internals of the config decoder, exposed for overrides.cc and the tests:
// the table of settable fields (their YAML paths) and the small parsers the
// decoder and the validator share. Everything here is pure and thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp::config::detail {

enum class FieldKind {
  kBool,
  kString,
  kInt,
  kEnum,
  kEnumList,
  kIntList,
  kDuration,
  kObjectList
};  // kObjectList: a list of mappings, decoded by its owner

// One leaf of the YAML document.
struct Field {
  const char* path;  // e.g. "flags.plugin.deviceIDStrategy"
  FieldKind kind;
};

// Every leaf field, in document order.
const std::vector<Field>& Fields();
// True when `path` has fields under it ("flags", "flags.plugin", "health", ...).
bool IsSection(std::string_view path);
// The keys directly under a section ("" is the document root), in document order.
std::vector<std::string> ChildKeys(std::string_view section);

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
