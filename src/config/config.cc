#include "src/config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/config/schema.h"

namespace gdp::config {

std::optional<bool> ParseGoBool(const std::string& text) {
  static const std::set<std::string> kTrue = {"1", "t", "T", "true", "True", "TRUE"};
  static const std::set<std::string> kFalse = {"0", "f", "F", "false", "False", "FALSE"};
  if (kTrue.count(text) != 0) return true;
  if (kFalse.count(text) != 0) return false;
  return std::nullopt;
}

const char* ToString(MigStrategy s) {
  switch (s) {
    case MigStrategy::kNone:
      return "none";
    case MigStrategy::kSingle:
      return "single";
    case MigStrategy::kMixed:
      return "mixed";
  }
  return "invalid";
}

const char* ToString(DeviceIdStrategy s) {
  switch (s) {
    case DeviceIdStrategy::kUuid:
      return "uuid";
    case DeviceIdStrategy::kIndex:
      return "index";
  }
  return "invalid";
}

const char* ToString(DeviceListStrategy s) {
  switch (s) {
    case DeviceListStrategy::kEnvvar:
      return "envvar";
    case DeviceListStrategy::kVolumeMounts:
      return "volume-mounts";
    case DeviceListStrategy::kCdiAnnotations:
      return "cdi-annotations";
    case DeviceListStrategy::kCdiCri:
      return "cdi-cri";
  }
  return "invalid";
}

const char* ToString(AllocationPolicy s) {
  switch (s) {
    case AllocationPolicy::kDistributed:
      return "distributed";
    case AllocationPolicy::kPacked:
      return "packed";
  }
  return "invalid";
}

absl::StatusOr<uint64_t> ParseMemorySize(const std::string& text) {
  struct Suffix {
    const char* name;
    uint64_t factor;
  };
  static constexpr Suffix kSuffixes[] = {
      {"Ki", 1ULL << 10}, {"Mi", 1ULL << 20}, {"Gi", 1ULL << 30},   {"Ti", 1ULL << 40},
      {"k", 1000ULL},     {"M", 1000000ULL},  {"G", 1000000000ULL}, {"T", 1000000000000ULL},
  };
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  uint64_t factor = 0;
  if (unit.empty()) factor = 1;
  for (const Suffix& s : kSuffixes) {
    if (unit == s.name) factor = s.factor;
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (digits == 0 || factor == 0 || ec != std::errc() || ptr != text.data() + digits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", absl::CHexEscape(text),
        "\" is not a memory size; write bytes or a quantity such as 4Gi, 512Mi or 10G"));
  }
  if (value > std::numeric_limits<uint64_t>::max() / factor) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(text), "\" is too large a memory size"));
  }
  return value * factor;
}

namespace {
// Debian's Abseil has its own string_view type; convert at the boundary.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

namespace detail {

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  const std::string quoted = absl::StrCat("\"", absl::CHexEscape(A(text)), "\"");
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " is not a duration"));
  }
  struct Unit {
    std::string_view name;
    int64_t nanos;
  };
  static constexpr Unit kUnits[] = {{"ns", 1},
                                    {"us", 1000},
                                    {"µs", 1000},
                                    {"ms", 1000LL * 1000},
                                    {"s", 1000LL * 1000 * 1000},
                                    {"m", 60LL * 1000 * 1000 * 1000},
                                    {"h", 3600LL * 1000 * 1000 * 1000}};
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    std::string_view whole = s.substr(0, i);
    std::string_view frac;
    if (i < s.size() && s[i] == '.') {
      size_t j = i + 1;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      frac = s.substr(i + 1, j - i - 1);
      i = j;
    }
    if (whole.empty() && frac.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          quoted, " is not a duration; write one such as \"30s\", \"5m\" or \"1h30m\""));
    }
    size_t u = i;
    while (u < s.size() && !std::isdigit(static_cast<unsigned char>(s[u])) && s[u] != '.') ++u;
    std::string_view unit_name = s.substr(i, u - i);
    if (unit_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(quoted,
                                                     " has no unit; write a duration such as \"",
                                                     A(text), "s\" (units: ns, us, ms, s, m, h)"));
    }
    const Unit* unit = nullptr;
    for (const Unit& candidate : kUnits) {
      if (candidate.name == unit_name) unit = &candidate;
    }
    if (unit == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an unknown unit \"",
                                                     absl::CHexEscape(A(unit_name)),
                                                     "\" (units: ns, us, ms, s, m, h)"));
    }
    int64_t value = 0;
    if (!whole.empty()) {
      auto [ptr, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), value);
      if (ec != std::errc() || ptr != whole.data() + whole.size() || value > kMax / unit->nanos) {
        return absl::InvalidArgumentError(absl::StrCat(quoted, " is too long a duration"));
      }
      value *= unit->nanos;
    }
    if (!frac.empty()) {
      // At most 18 digits matter for nanosecond resolution of an hour.
      double f = 0, scale = 0.1;
      for (size_t k = 0; k < frac.size() && k < 18; ++k, scale /= 10) f += (frac[k] - '0') * scale;
      value += static_cast<int64_t>(std::llround(f * static_cast<double>(unit->nanos)));
    }
    if (value > kMax - total) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " is too long a duration"));
    }
    total += value;
    s.remove_prefix(u);
  }
  return std::chrono::nanoseconds(negative ? -total : total);
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  if (d == nanoseconds(0)) return "0";
  std::string out = d < nanoseconds(0) ? "-" : "";
  auto left = d < nanoseconds(0) ? -d : d;
  auto emit = [&](auto unit, const char* name) {
    auto n = duration_cast<decltype(unit)>(left);
    if (n.count() > 0) {
      absl::StrAppend(&out, n.count(), name);
      left -= duration_cast<nanoseconds>(n);
    }
  };
  emit(hours(1), "h");
  emit(minutes(1), "m");
  emit(seconds(1), "s");
  emit(milliseconds(1), "ms");
  emit(microseconds(1), "us");
  emit(nanoseconds(1), "ns");
  return out;
}

bool IsValidExtendedResourceName(const std::string& name, std::string* why) {
  auto is_alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  const size_t slash = name.find('/');
  if (slash == std::string::npos) {
    *why = "must be <domain>/<name>, e.g. nvidia.com/gpu";
    return false;
  }
  const std::string domain = name.substr(0, slash);
  const std::string base = name.substr(slash + 1);
  if (domain.empty() || domain.size() > 253) {
    *why = "the domain before '/' must be 1 to 253 characters";
    return false;
  }
  for (absl::string_view label : absl::StrSplit(domain, '.')) {
    if (label.empty() || label.size() > 63 || !is_alnum(label.front()) || !is_alnum(label.back()) ||
        !std::all_of(label.begin(), label.end(), [&](char c) {
          return (std::islower(static_cast<unsigned char>(c)) ||
                  std::isdigit(static_cast<unsigned char>(c)) || c == '-');
        })) {
      *why = absl::StrCat("the domain \"", absl::CHexEscape(domain),
                          "\" must be a DNS subdomain (lower-case letters, digits, '-' and '.')");
      return false;
    }
  }
  if (domain == "kubernetes.io" || absl::EndsWith(domain, ".kubernetes.io")) {
    *why = "the kubernetes.io domain is reserved for native resources";
    return false;
  }
  if (domain == "requests" || absl::StartsWith(domain, "requests.")) {
    *why = "names starting with \"requests.\" are reserved for quotas";
    return false;
  }
  if (base.empty() || base.size() > 63) {
    *why = "the name after '/' must be 1 to 63 characters";
    return false;
  }
  if (!is_alnum(base.front()) || !is_alnum(base.back()) ||
      !std::all_of(base.begin(), base.end(),
                   [&](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; })) {
    *why = absl::StrCat("the name \"", absl::CHexEscape(base),
                        "\" must be letters, digits, '-', '_' or '.', starting and ending "
                        "with a letter or digit");
    return false;
  }
  return true;
}

}  // namespace detail

absl::StatusOr<Config> LoadConfig(const FileSystem& fs, const std::string& config_file,
                                  const std::vector<Override>& overrides) {
  if (config_file.empty()) return ParseConfig("", overrides);
  absl::StatusOr<std::string> text = fs.ReadFile(config_file);
  if (!text.ok()) {
    return absl::Status(
        text.status().code(),
        absl::StrCat("cannot read config file ", config_file, ": ", text.status().message(),
                     "; check --config-file / CONFIG_FILE and the volume mount"));
  }
  absl::StatusOr<Config> config = ParseConfig(*text, overrides);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat("invalid config file ", config_file,
                                                             ":\n", config.status().message()));
  }
  return config;
}

}  // namespace gdp::config
