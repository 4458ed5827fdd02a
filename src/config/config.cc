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

namespace {

using detail::Field;

constexpr unsigned kMinXid = 1;
constexpr unsigned kMaxXid = 999;

std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 80;
  if (s.size() > kMax) return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)), "...\"");
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return node.Tag() == "!" ? absl::StrCat("the quoted string ", Quote(node.Scalar()))
                               : Quote(node.Scalar());
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// Counts the documents of a YAML stream without building them.
class DocumentScan : public YAML::EventHandler {
 public:
  YAML::Mark start;   // where the last document started
  int non_empty = 0;  // documents whose root is not null

  void OnDocumentStart(const YAML::Mark& mark) override {
    start = mark;
    depth_ = 0;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override { Leaf(false); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { Leaf(true); }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Leaf(true);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Leaf(true);
    ++depth_;
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Leaf(true);
    ++depth_;
  }
  void OnMapEnd() override { --depth_; }

 private:
  void Leaf(bool non_null) {
    if (depth_ == 0 && non_null) ++non_empty;
  }
  int depth_ = 0;
};

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
  std::string Seen() const { return ov != nullptr ? Quote(ov->value) : Describe(node); }
};

class Decoder {
 public:
  std::vector<std::string> errors;

  void Error(const std::string& where, const std::string& what) {
    errors.push_back(absl::StrCat(where, ": ", what));
  }

  static std::string Suffix(const YAML::Mark& mark) {
    if (mark.is_null()) return "";
    return absl::StrCat(" (line ", mark.line + 1, ")");
  }
  static std::string Where(const std::string& path, const YAML::Mark& mark) {
    return path + Suffix(mark);
  }

  // Walks a mapping, reporting duplicate and unknown keys and non-mapping sections.
  void CheckKeys(const YAML::Node& map, const std::string& prefix) {
    std::set<std::string> seen;
    std::vector<std::string> known = detail::ChildKeys(prefix);
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies: the iterator's -> yields a temporary pair.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(Where(prefix.empty() ? "(document)" : prefix, key.Mark()),
              absl::StrCat("keys must be plain names, got ", Describe(key)));
        continue;
      }
      const std::string path =
          prefix.empty() ? key.Scalar() : absl::StrCat(prefix, ".", key.Scalar());
      if (!seen.insert(key.Scalar()).second) {
        Error(Where(path, key.Mark()), "duplicate key; each field may appear once");
        continue;
      }
      if (std::find(known.begin(), known.end(), key.Scalar()) == known.end()) {
        Error(Where(path, key.Mark()), UnknownFieldMessage(key.Scalar(), prefix, known));
        continue;
      }
      if (detail::IsSection(path)) {
        if (value.IsNull()) continue;  // "flags:" with nothing under it: all defaults
        if (!value.IsMap()) {
          Error(Where(path, key.Mark()),
                absl::StrCat("expected a mapping of fields, got ", Describe(value)));
          continue;
        }
        CheckKeys(value, path);
      }
    }
  }

  static std::string UnknownFieldMessage(const std::string& key, const std::string& prefix,
                                         const std::vector<std::string>& known) {
    std::string best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const std::string& candidate : known) {
      size_t d = detail::EditDistance(key, candidate);
      if (d < best_distance) best_distance = d, best = candidate;
    }
    std::string msg = "unknown field";
    const size_t limit = std::max<size_t>(2, key.size() / 3);
    if (!best.empty() && best_distance <= limit) {
      absl::StrAppend(&msg, " (did you mean ", best, "?)");
      return msg;
    }
    // The same name in another section: say where it belongs.
    for (const Field& f : detail::Fields()) {
      std::string_view path = f.path;
      std::string_view last = path.substr(path.rfind('.') + 1);
      if (last == key) {
        absl::StrAppend(&msg, " (did you mean ", A(path), "?)");
        return msg;
      }
    }
    if (known.empty()) return msg;
    absl::StrAppend(&msg, "; known fields", prefix.empty() ? "" : absl::StrCat(" of ", prefix),
                    ": ", absl::StrJoin(known, ", "));
    return msg;
  }

  // The value for a field: an override wins over the document.
  std::optional<Raw> Lookup(const YAML::Node& doc, const std::string& path,
                            const std::map<std::string, const Override*>& overrides) {
    const Override* ov = nullptr;
    if (auto it = overrides.find(path); it != overrides.end()) ov = it->second;
    if (ov != nullptr && !ov->fallback) {
      return Raw{path, absl::StrCat(" (from ", ov->source, ")"), YAML::Node(), ov};
    }
    std::optional<Raw> in_doc = InDocument(doc, path);
    if (!in_doc && ov != nullptr) {
      return Raw{path, absl::StrCat(" (from ", ov->source, ")"), YAML::Node(), ov};
    }
    return in_doc;
  }

  // The value for a field in the document alone.
  std::optional<Raw> InDocument(const YAML::Node& doc, const std::string& path) {
    if (!doc.IsMap()) return std::nullopt;
    YAML::Node node = doc;
    YAML::Mark mark = YAML::Mark::null_mark();
    for (absl::string_view part : absl::StrSplit(path, '.')) {
      if (!node.IsMap()) return std::nullopt;
      // Find the first matching key without creating it (and keep its mark).
      YAML::Node next;
      bool found = false;
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == part) {
          next.reset(it->second);
          mark = it->first.Mark();
          found = true;
          break;
        }
      }
      if (!found) return std::nullopt;
      node.reset(next);  // rebinds; operator= would overwrite the document
    }
    // null is unset (NVIDIA's plugin prints "useNodeFeatureAPI": null).
    if (node.IsNull()) return std::nullopt;
    return Raw{path, Suffix(mark), node, nullptr};
  }

  std::optional<bool> Bool(const Raw& raw) {
    bool value = false;
    if (raw.IsScalar() && !raw.Quoted() && ParseBool(raw.Text(), raw.ov != nullptr, &value)) {
      if (raw.ov != nullptr && raw.ov->negate) value = !value;
      return value;
    }
    Error(raw.where(), absl::StrCat("expected a boolean (true or false), got ", raw.Seen()));
    return std::nullopt;
  }

  static bool ParseBool(const std::string& text, bool lenient, bool* value) {
    // Flags and environment variables take what Go's strconv.ParseBool does;
    // the document only YAML's true and false.
    if (lenient) {
      std::optional<bool> v = ParseGoBool(text);
      if (v) *value = *v;
      return v.has_value();
    }
    static const std::set<std::string> kTrue = {"true", "True", "TRUE"};
    static const std::set<std::string> kFalse = {"false", "False", "FALSE"};
    if (kTrue.count(text) || kFalse.count(text)) {
      *value = kTrue.count(text) != 0;
      return true;
    }
    return false;
  }

  std::optional<std::string> String(const Raw& raw) {
    if (raw.IsScalar()) return raw.Text();
    Error(raw.where(), absl::StrCat("expected a string, got ", raw.Seen()));
    return std::nullopt;
  }

  std::optional<int64_t> Int(const Raw& raw, int64_t min, int64_t max) {
    if (raw.IsScalar() && !raw.Quoted()) {
      std::string text = raw.Text();
      int64_t value = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty()) {
        if (value >= min && value <= max) return value;
        Error(raw.where(), absl::StrCat(value, " is out of range ", min, " to ", max));
        return std::nullopt;
      }
    }
    Error(raw.where(), absl::StrCat("expected an integer, got ", raw.Seen()));
    return std::nullopt;
  }

  std::optional<std::string> Enum(const Raw& raw, const std::vector<std::string>& names) {
    if (!raw.IsScalar()) {
      Error(raw.where(),
            absl::StrCat("expected one of ", absl::StrJoin(names, ", "), ", got ", raw.Seen()));
      return std::nullopt;
    }
    std::string text = raw.Text();
    if (std::find(names.begin(), names.end(), text) != names.end()) return text;
    Error(raw.where(), absl::StrCat(Quote(text), " is not one of ", absl::StrJoin(names, ", ")));
    return std::nullopt;
  }

  // A list: a YAML sequence, or (from a flag, env var, or for string lists a
  // YAML string) comma-separated items. Each item carries its own path.
  std::optional<std::vector<Raw>> List(const Raw& raw, bool allow_scalar) {
    std::vector<Raw> items;
    if (raw.ov != nullptr || (allow_scalar && raw.node.IsScalar())) {
      std::string text = raw.Text();
      int index = 0;
      for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
        auto* item = &owned_.emplace_back(Override{raw.ov ? raw.ov->path : "",
                                                   std::string(absl::StripAsciiWhitespace(part)),
                                                   raw.ov ? raw.ov->source : "", false});
        items.push_back(
            Raw{absl::StrCat(raw.path, "[", index++, "]"), raw.suffix, YAML::Node(), item});
      }
      return items;
    }
    if (!raw.node.IsSequence()) {
      Error(raw.where(), absl::StrCat("expected a list, got ", raw.Seen()));
      return std::nullopt;
    }
    for (size_t i = 0; i < raw.node.size(); ++i) {
      const YAML::Node item = raw.node[i];
      items.push_back(Raw{absl::StrCat(raw.path, "[", i, "]"), Suffix(item.Mark()), item, nullptr});
    }
    return items;
  }

  std::optional<std::vector<unsigned>> XidList(const Raw& raw) {
    auto items = List(raw, false);
    if (!items) return std::nullopt;
    std::vector<unsigned> xids;
    bool ok = true;
    for (const Raw& item : *items) {
      auto value = Int(item, kMinXid, kMaxXid);
      if (!value) {
        ok = false;
        continue;
      }
      xids.push_back(static_cast<unsigned>(*value));
    }
    if (!ok) return std::nullopt;
    return xids;
  }

  std::optional<std::chrono::nanoseconds> Duration(const Raw& raw) {
    if (!raw.IsScalar()) {
      Error(raw.where(),
            absl::StrCat("expected a duration such as \"30s\" or \"5m\", got ", raw.Seen()));
      return std::nullopt;
    }
    auto d = detail::ParseDuration(raw.Text());
    if (!d.ok()) {
      Error(raw.where(), std::string(d.status().message()));
      return std::nullopt;
    }
    return *d;
  }

  // A device selector: "all", a count, or a list of indices and UUIDs.
  std::optional<DeviceSelector> Devices(const Raw& raw) {
    DeviceSelector sel;
    if (raw.node.IsScalar() && !raw.Quoted() && raw.Text() == "all") return sel;
    if (raw.node.IsScalar()) {
      if (auto n = Int(raw, 1, 1 << 20)) {
        sel.all = false;
        sel.count = static_cast<unsigned>(*n);
        return sel;
      }
      errors.back() = absl::StrCat(raw.where(),
                                   ": expected all, a device count or a list of "
                                   "device indices and UUIDs, got ",
                                   raw.Seen());
      return std::nullopt;
    }
    auto items = List(raw, false);
    if (!items) return std::nullopt;
    if (items->empty()) {
      Error(raw.where(), "an empty list selects no device; write all or list some");
      return std::nullopt;
    }
    sel.all = false;
    bool ok = true;
    for (const Raw& item : *items) {
      auto v = String(item);
      if (!v || v->empty()) {
        if (v) Error(item.where(), "expected a device index or UUID, got an empty string");
        ok = false;
        continue;
      }
      sel.ids.push_back(*v);
    }
    if (!ok) return std::nullopt;
    return sel;
  }

  // sharing.timeSlicing.resources / sharing.mps.resources: a list of mappings.
  std::optional<std::vector<SharedResource>> SharedList(const Raw& raw, bool mps) {
    if (raw.ov != nullptr) {
      Error(raw.where(), "can only be set in the config file");
      return std::nullopt;
    }
    if (!raw.node.IsSequence()) {
      Error(raw.where(),
            absl::StrCat("expected a list of {name, replicas, devices}, got ", raw.Seen()));
      return std::nullopt;
    }
    std::vector<std::string> keys = {"name", "rename", "replicas", "devices"};
    if (mps) keys.insert(keys.end(), {"memoryLimit", "activeThreadPercentage"});
    std::vector<SharedResource> out;
    bool ok = true;
    for (size_t i = 0; i < raw.node.size(); ++i) {
      const YAML::Node item = raw.node[i];
      const std::string path = absl::StrCat(raw.path, "[", i, "]");
      if (!item.IsMap()) {
        Error(Where(path, item.Mark()),
              absl::StrCat("expected a mapping with name and replicas, got ", Describe(item)));
        ok = false;
        continue;
      }
      SharedResource r;
      std::map<std::string, Raw> fields;
      for (auto it = item.begin(); it != item.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        const std::string kpath = absl::StrCat(path, ".", key.IsScalar() ? key.Scalar() : "?");
        if (!key.IsScalar() || std::find(keys.begin(), keys.end(), key.Scalar()) == keys.end()) {
          std::string msg = UnknownFieldMessage(key.IsScalar() ? key.Scalar() : "", path, keys);
          if (!mps && key.IsScalar() &&
              (key.Scalar() == "memoryLimit" || key.Scalar() == "activeThreadPercentage")) {
            msg =
                "unknown field; memory limits and thread shares are MPS settings "
                "(sharing.mps.resources), time-slicing has none";
          }
          Error(Where(kpath, key.Mark()), msg);
          ok = false;
          continue;
        }
        if (!fields.emplace(key.Scalar(), Raw{kpath, Suffix(key.Mark()), value, nullptr}).second) {
          Error(Where(kpath, key.Mark()), "duplicate key; each field may appear once");
          ok = false;
        }
      }
      auto field = [&](const char* name) -> const Raw* {
        auto it = fields.find(name);
        return it == fields.end() ? nullptr : &it->second;
      };
      bool item_ok = true;
      if (const Raw* f = field("name")) {
        if (auto v = String(*f))
          r.name = *v;
        else
          item_ok = false;
      } else {
        Error(Where(path, item.Mark()),
              "name is required (the resource to share, e.g. nvidia.com/gpu)");
        item_ok = false;
      }
      if (const Raw* f = field("rename")) {
        if (auto v = String(*f))
          r.rename = *v;
        else
          item_ok = false;
      }
      if (const Raw* f = field("replicas")) {
        const int64_t max = mps ? kMaxMpsReplicas : kMaxTimeSlicingReplicas;
        if (auto v = Int(*f, 1, max)) {
          r.replicas = static_cast<unsigned>(*v);
        } else {
          if (mps && !errors.empty() && absl::StrContains(errors.back(), "out of range")) {
            absl::StrAppend(&errors.back(), " (an MPS server takes at most 48 clients per GPU)");
          }
          item_ok = false;
        }
      } else {
        Error(Where(path, item.Mark()),
              "replicas is required (how many pods may share each device)");
        item_ok = false;
      }
      if (const Raw* f = field("devices")) {
        if (auto v = Devices(*f))
          r.devices = *v;
        else
          item_ok = false;
      }
      if (const Raw* f = field("memoryLimit")) {
        auto v = String(*f);
        absl::StatusOr<uint64_t> bytes = v ? ParseMemorySize(*v) : absl::InvalidArgumentError("");
        if (v && !bytes.ok()) Error(f->where(), std::string(bytes.status().message()));
        if (v && bytes.ok() && *bytes == 0) Error(f->where(), "must be more than 0 bytes");
        if (bytes.ok() && *bytes > 0)
          r.memory_limit_bytes = *bytes;
        else
          item_ok = false;
      }
      if (const Raw* f = field("activeThreadPercentage")) {
        if (auto v = Int(*f, 1, 100))
          r.active_thread_percentage = static_cast<unsigned>(*v);
        else
          item_ok = false;
      }
      ok = ok && item_ok;
      if (item_ok) out.push_back(std::move(r));
    }
    if (!ok) return std::nullopt;
    return out;
  }

  static constexpr int64_t kMaxTimeSlicingReplicas = 1024;
  static constexpr int64_t kMaxMpsReplicas = 48;

 private:
  std::deque<Override> owned_;  // list items split from an override's text
};

template <typename E>
std::optional<E> EnumFromString(const std::string& text, std::initializer_list<E> values) {
  for (E v : values) {
    if (text == ToString(v)) return v;
  }
  return std::nullopt;
}

const std::vector<std::string> kMigNames = {"none", "single", "mixed"};
const std::vector<std::string> kIdNames = {"uuid", "index"};
const std::vector<std::string> kListNames = {"envvar", "volume-mounts", "cdi-annotations",
                                             "cdi-cri"};
const std::vector<std::string> kPolicyNames = {"distributed", "packed"};
const std::vector<std::string> kFallbackNames = {"named", "single", "empty"};
const std::vector<std::string> kLevelNames = {"debug", "info", "warn", "error"};
const std::vector<std::string> kFormatNames = {"text", "json"};
const std::vector<std::string> kDiscoveryNames = {"auto", "nvml", "tegra"};

// Fields NVIDIA's config format keeps where this plugin keeps another:
// either place is read; both, with different values, is an error.
struct Alias {
  const char* ours;
  const char* nvidia;
};
constexpr Alias kAliases[] = {
    {"flags.containerDriverRoot", "flags.plugin.containerDriverRoot"},
    {"sharing.allocationPolicy", "flags.plugin.sharedDevicesAllocationPolicy"},
    {"sharing.mps.root", "flags.mpsRoot"},
};

bool IsAbsolutePath(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos;
}

void CheckPath(std::vector<std::string>* problems, const char* path, const std::string& value,
               bool may_be_empty) {
  if (value.empty() && may_be_empty) return;
  if (!IsAbsolutePath(value)) {
    problems->push_back(absl::StrCat(path, ": ", Quote(value), " must be an absolute path"));
  }
}

bool IsHostname(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  return true;
}

// The resource name the replicas of `r` are advertised under.
std::string SharedName(const SharedResource& r, bool rename_by_default) {
  if (!r.rename.empty()) return r.rename;
  return rename_by_default ? r.name + ".shared" : r.name;
}

void ValidateSharing(const Config& c, std::vector<std::string>* problems) {
  struct Seen {
    std::string path;
    bool mps;
  };
  std::map<std::string, Seen> shared;          // shared resource name -> where
  std::map<std::string, std::string> targets;  // advertised name -> where
  auto check = [&](const char* list, const std::vector<SharedResource>& resources, bool mps,
                   bool rename_by_default) {
    for (size_t i = 0; i < resources.size(); ++i) {
      const SharedResource& r = resources[i];
      const std::string path = absl::StrCat(list, "[", i, "]");
      std::string why;
      if (!detail::IsValidExtendedResourceName(r.name, &why)) {
        problems->push_back(absl::StrCat(path, ".name: ", Quote(r.name),
                                         " is not a valid extended resource name: ", why));
      }
      if (!r.rename.empty() && !detail::IsValidExtendedResourceName(r.rename, &why)) {
        problems->push_back(absl::StrCat(path, ".rename: ", Quote(r.rename),
                                         " is not a valid extended resource name: ", why));
      }
      const std::string target = SharedName(r, rename_by_default);
      if (r.rename.empty() && rename_by_default &&
          !detail::IsValidExtendedResourceName(target, &why)) {
        problems->push_back(absl::StrCat(path, ".name: renameByDefault makes ", Quote(target),
                                         ", not a valid extended resource name (", why,
                                         "); set rename"));
      }
      if (mps && absl::StartsWith(r.name, "nvidia.com/mig-")) {
        problems->push_back(absl::StrCat(
            path, ".name: ", Quote(r.name),
            " is a MIG device: MPS cannot share MIG devices here (MIG already partitions memory "
            "and compute); share it with sharing.timeSlicing or share a full GPU with MPS"));
      }
      if (auto [it, fresh] = shared.emplace(r.name, Seen{path, mps}); !fresh) {
        problems->push_back(absl::StrCat(
            path, ".name: ", Quote(r.name), " is already shared by ", it->second.path,
            it->second.mps != mps ? "; a resource is shared by time-slicing or by MPS, not both"
                                  : "; list each resource once"));
      }
      if (auto [it, fresh] = targets.emplace(target, path); !fresh) {
        problems->push_back(absl::StrCat(path, ": its replicas would be advertised as ",
                                         Quote(target), ", as those of ", it->second,
                                         "; give each entry its own rename"));
      }
    }
  };
  check("sharing.timeSlicing.resources", c.sharing.time_slicing.resources, false,
        c.sharing.time_slicing.rename_by_default);
  check("sharing.mps.resources", c.sharing.mps.resources, true, c.sharing.mps.rename_by_default);
  // A renamed target must not be a resource that is itself shared.
  for (const auto& [target, where] : targets) {
    auto it = shared.find(target);
    if (it != shared.end() && it->second.path != where) {
      problems->push_back(absl::StrCat(where, ": its replicas would be advertised as ",
                                       Quote(target), ", a resource that ", it->second.path,
                                       " shares; pick another rename"));
    }
  }
  for (const auto* list : {&c.sharing.time_slicing.resources, &c.sharing.mps.resources}) {
    for (const SharedResource& r : *list) {
      if (!r.devices.all && r.devices.ids.empty() && r.devices.count == 0) {
        problems->push_back(
            absl::StrCat("sharing: ", Quote(r.name), " selects no device; write devices: all"));
      }
    }
  }
}

}  // namespace

// resources.gpus / resources.mig, when acted on: valid names, a pattern each,
// and no name holding both full GPUs and MIG devices.
static void ValidateResourcePatterns(const Config& c, std::vector<std::string>* problems) {
  if (!c.use_resource_patterns) return;
  std::map<std::string, std::string> gpu_names;  // name -> where
  for (const auto& [list, section] : {std::pair{&c.gpu_patterns, "resources.gpus"},
                                      std::pair{&c.mig_patterns, "resources.mig"}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const ResourcePattern& p = (*list)[i];
      const std::string where = absl::StrCat(section, "[", i, "]");
      std::string why;
      if (p.pattern.empty()) problems->push_back(absl::StrCat(where, ".pattern: is empty"));
      if (!detail::IsValidExtendedResourceName(p.name, &why)) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name),
                                         " is not a valid extended resource name: ", why));
      } else if (p.name == c.resource_name && list == &c.mig_patterns) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name),
                                         " is the full GPUs' resource (flags.plugin.resourceName); "
                                         "a resource holds either full GPUs or MIG devices"));
      }
      if (list == &c.gpu_patterns) {
        gpu_names.emplace(p.name, where);
      } else if (auto it = gpu_names.find(p.name); it != gpu_names.end()) {
        problems->push_back(absl::StrCat(where, ".name: ", Quote(p.name), " is also ", it->second,
                                         "'s; a resource holds either full GPUs or MIG devices"));
      }
    }
  }
}

namespace detail {

const std::vector<Field>& Fields() {
  static const std::vector<Field> kFields = {
      {"version", FieldKind::kString},
      {"flags.migStrategy", FieldKind::kEnum},
      {"flags.failOnInitError", FieldKind::kBool},
      {"flags.nvidiaDriverRoot", FieldKind::kString},
      {"flags.containerDriverRoot", FieldKind::kString},
      {"flags.nvmlLibrary", FieldKind::kString},
      {"flags.requireMinimumVersions", FieldKind::kBool},
      {"flags.nodeName", FieldKind::kString},
      {"flags.rescanInterval", FieldKind::kDuration},
      {"flags.deployLabel", FieldKind::kString},
      {"flags.nodeConfig.configMap", FieldKind::kString},
      {"flags.nodeConfig.label", FieldKind::kString},
      {"flags.nodeConfig.default", FieldKind::kString},
      {"flags.nodeConfig.fallbackStrategies", FieldKind::kEnumList},
      {"flags.plugin.passDeviceSpecs", FieldKind::kBool},
      {"flags.plugin.deviceListStrategy", FieldKind::kEnumList},
      {"flags.plugin.deviceIDStrategy", FieldKind::kEnum},
      {"flags.plugin.pluginDirectory", FieldKind::kString},
      {"flags.plugin.resourceName", FieldKind::kString},
      {"flags.plugin.cdiRoot", FieldKind::kString},
      {"flags.plugin.useResourcePatterns", FieldKind::kBool},
      // NVIDIA's config format (v0.20): accepted with NVIDIA's meaning, some at
      // NVIDIA's place for one of ours (kAliases), some not acted on (kNotActedOn).
      {"flags.mpsRoot", FieldKind::kString},
      {"flags.nvidiaDevRoot", FieldKind::kString},
      {"flags.gdrcopyEnabled", FieldKind::kBool},
      {"flags.gdsEnabled", FieldKind::kBool},
      {"flags.mofedEnabled", FieldKind::kBool},
      {"flags.useNodeFeatureAPI", FieldKind::kBool},
      {"flags.deviceDiscoveryStrategy", FieldKind::kEnum},
      {"flags.plugin.cdiAnnotationPrefix", FieldKind::kString},
      {"flags.plugin.nvidiaCTKPath", FieldKind::kString},
      {"flags.plugin.containerDriverRoot", FieldKind::kString},
      {"flags.plugin.sharedDevicesAllocationPolicy", FieldKind::kEnum},
      {"flags.gfd.oneshot", FieldKind::kBool},
      {"flags.gfd.noTimestamp", FieldKind::kBool},
      {"flags.gfd.sleepInterval", FieldKind::kDuration},
      {"flags.gfd.outputFile", FieldKind::kString},
      {"flags.gfd.machineTypeFile", FieldKind::kString},
      {"resources.gpus", FieldKind::kObjectList},
      {"resources.mig", FieldKind::kObjectList},
      {"imex.channelIDs", FieldKind::kIntList},
      {"imex.required", FieldKind::kBool},
      {"sharing.allocationPolicy", FieldKind::kEnum},
      {"sharing.timeSlicing.renameByDefault", FieldKind::kBool},
      {"sharing.timeSlicing.failRequestsGreaterThanOne", FieldKind::kBool},
      {"sharing.timeSlicing.resources", FieldKind::kObjectList},
      {"sharing.mps.renameByDefault", FieldKind::kBool},
      {"sharing.mps.failRequestsGreaterThanOne", FieldKind::kBool},
      {"sharing.mps.resources", FieldKind::kObjectList},
      {"sharing.mps.root", FieldKind::kString},
      {"sharing.mps.controlBinary", FieldKind::kString},
      {"health.enabled", FieldKind::kBool},
      {"health.ignoredXids", FieldKind::kIntList},
      {"health.additionalIgnoredXids", FieldKind::kIntList},
      {"health.criticalXids", FieldKind::kIntList},
      {"health.recoveryQuietPeriod", FieldKind::kDuration},
      {"health.probeInterval", FieldKind::kDuration},
      {"metrics.bindAddress", FieldKind::kString},
      {"metrics.port", FieldKind::kInt},
      {"metrics.sampleInterval", FieldKind::kDuration},
      {"metrics.podResourcesSocket", FieldKind::kString},
      {"metrics.dcgmCompatibility", FieldKind::kBool},
      {"log.level", FieldKind::kEnum},
      {"log.format", FieldKind::kEnum},
      {"labels.enabled", FieldKind::kBool},
      {"labels.kubeconfig", FieldKind::kString},
      {"labels.nfdFeatureFile", FieldKind::kString},
      {"labels.events", FieldKind::kBool},
      {"labels.resyncInterval", FieldKind::kDuration},
  };
  return kFields;
}

bool IsSection(std::string_view path) {
  const std::string prefix = absl::StrCat(A(path), ".");
  for (const Field& f : Fields()) {
    if (absl::StartsWith(f.path, prefix)) return true;
  }
  return false;
}

std::vector<std::string> ChildKeys(std::string_view section) {
  std::vector<std::string> keys;
  const std::string prefix = section.empty() ? "" : absl::StrCat(A(section), ".");
  for (const Field& f : Fields()) {
    std::string_view path = f.path;
    if (!absl::StartsWith(A(path), prefix)) continue;
    path.remove_prefix(prefix.size());
    std::string key(path.substr(0, path.find('.')));
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  return keys;
}

}  // namespace detail

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text,
                                   const std::vector<Override>& overrides) {
  Config config;
  Decoder dec;

  YAML::Node doc;
  try {
    // yaml-cpp 0.7's LoadAll loops forever on a document that starts with a
    // stray ',' (and Load takes it for an empty document), so documents are
    // first counted with a scan that notices when the parser stops advancing.
    DocumentScan scan;
    std::istringstream stream(yaml_text);
    YAML::Parser parser(stream);
    std::optional<YAML::Mark> previous;
    while (parser.HandleNextDocument(scan)) {
      if (previous && previous->pos == scan.start.pos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "(document) (line ", scan.start.line + 1, ", column ", scan.start.column + 1,
            "): not valid YAML: unexpected character where a document should start"));
      }
      previous = scan.start;
    }
    if (scan.non_empty > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("(document): the file holds ", scan.non_empty,
                       " YAML documents (separated by ---); put the whole config in one"));
    }
    for (const YAML::Node& d : YAML::LoadAll(yaml_text)) {
      if (!d.IsNull()) doc.reset(d);  // reset, not =: yaml-cpp's = assigns content
    }
  } catch (const YAML::Exception& e) {
    // Syntax errors stop here: nothing below can be trusted.
    return absl::InvalidArgumentError(absl::StrCat("(document) (line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1,
                                                   "): not valid YAML: ", e.msg));
  }

  const bool empty_document = doc.IsNull();
  if (!empty_document && !doc.IsMap()) {
    dec.Error("(document)",
              absl::StrCat("expected a mapping with version: v1 at the top, got ", Describe(doc)));
  } else if (!empty_document) {
    dec.CheckKeys(doc, "");
  }

  std::map<std::string, const Override*> by_path;
  for (const Override& ov : overrides) {
    bool known = false;
    for (const Field& f : detail::Fields()) known = known || ov.path == f.path;
    if (!known || ov.path == "version") {
      dec.Error(ov.path, absl::StrCat("(from ", ov.source, ") no such setting"));
      continue;
    }
    if (ov.fallback) {
      by_path.try_emplace(ov.path, &ov);  // only where no override says
    } else {
      by_path[ov.path] = &ov;  // later overrides win
    }
  }

  // version: required in a non-empty document.
  if (doc.IsMap()) {
    if (auto raw = dec.Lookup(doc, "version", {})) {
      if (auto v = dec.String(*raw)) {
        if (*v != "v1") {
          dec.Error(raw->where(),
                    absl::StrCat(Quote(*v), " is not supported; this plugin reads version v1"));
        }
      }
    } else {
      dec.Error("version", "required; add \"version: v1\" at the top of the file");
    }
  }

  // Where each field's value came from (" (line N)" or " (from --flag)"), so
  // validation problems can say it too.
  std::map<std::string, std::string> origin;
  auto get = [&](const char* path) {
    std::optional<Raw> raw = dec.Lookup(doc, path, by_path);
    for (const Alias& a : kAliases) {
      if (std::string_view(a.ours) != path) continue;
      std::optional<Raw> theirs = dec.Lookup(doc, a.nvidia, {});
      if (!theirs) break;
      if (!raw || (raw->ov != nullptr && raw->ov->fallback)) {
        raw = std::move(theirs);
      } else if (raw->ov == nullptr && raw->Text() != theirs->Text()) {
        dec.Error(theirs->where(), absl::StrCat("sets ", path, " (NVIDIA's place for it), which ",
                                                raw->where(), " sets to another value; keep one"));
      }
      break;
    }
    if (raw) origin[path] = raw->suffix;
    return raw;
  };

  if (auto raw = get("flags.migStrategy")) {
    if (auto v = dec.Enum(*raw, kMigNames)) {
      config.mig_strategy =
          *EnumFromString(*v, {MigStrategy::kNone, MigStrategy::kSingle, MigStrategy::kMixed});
    }
  }
  if (auto raw = get("flags.failOnInitError")) {
    if (auto v = dec.Bool(*raw)) config.fail_on_init_error = *v;
  }
  if (auto raw = get("flags.nvidiaDriverRoot")) {
    if (auto v = dec.String(*raw)) config.driver_root = *v;
  }
  if (auto raw = get("flags.containerDriverRoot")) {
    if (auto v = dec.String(*raw)) config.container_driver_root = *v;
  }
  if (auto raw = get("flags.nvmlLibrary")) {
    if (auto v = dec.String(*raw)) config.nvml_library = *v;
  }
  if (auto raw = get("flags.requireMinimumVersions")) {
    if (auto v = dec.Bool(*raw)) config.require_minimum_versions = *v;
  }
  if (auto raw = get("flags.nodeName")) {
    if (auto v = dec.String(*raw)) config.node_name = *v;
  }
  if (auto raw = get("flags.deployLabel")) {
    if (auto v = dec.String(*raw)) config.deploy_label = *v;
  }
  if (auto raw = get("flags.nodeConfig.configMap")) {
    if (auto v = dec.String(*raw)) config.node_config.config_map = *v;
  }
  if (auto raw = get("flags.nodeConfig.label")) {
    if (auto v = dec.String(*raw)) config.node_config.label = *v;
  }
  if (auto raw = get("flags.nodeConfig.default")) {
    if (auto v = dec.String(*raw)) config.node_config.default_name = *v;
  }
  if (auto raw = get("flags.nodeConfig.fallbackStrategies")) {
    if (auto items = dec.List(*raw, /*allow_scalar=*/true)) {
      std::vector<FallbackStrategy> strategies;
      bool ok = true;
      for (const Raw& item : *items) {
        FallbackStrategy f{};
        if (auto v = dec.Enum(item, kFallbackNames); v && ParseFallbackStrategy(*v, &f)) {
          strategies.push_back(f);
        } else {
          ok = false;
        }
      }
      if (ok) config.node_config.fallback_strategies = strategies;
    }
  }
  if (auto raw = get("flags.rescanInterval")) {
    if (auto d = dec.Duration(*raw)) {
      if (*d % std::chrono::milliseconds(1) != std::chrono::nanoseconds(0)) {
        dec.Error(raw->where(),
                  absl::StrCat(raw->Seen(), " must be a whole number of milliseconds"));
      } else {
        config.rescan_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
      }
    }
  }
  if (auto raw = get("flags.plugin.passDeviceSpecs")) {
    if (auto v = dec.Bool(*raw)) config.pass_device_specs = *v;
  }
  if (auto raw = get("flags.plugin.deviceListStrategy")) {
    if (auto items = dec.List(*raw, /*allow_scalar=*/true)) {
      std::vector<DeviceListStrategy> strategies;
      bool ok = true;
      for (const Raw& item : *items) {
        if (auto v = dec.Enum(item, kListNames)) {
          strategies.push_back(*EnumFromString(
              *v, {DeviceListStrategy::kEnvvar, DeviceListStrategy::kVolumeMounts,
                   DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri}));
        } else {
          ok = false;
        }
      }
      if (ok) config.device_list_strategy = strategies;
    }
  }
  if (auto raw = get("flags.plugin.deviceIDStrategy")) {
    if (auto v = dec.Enum(*raw, kIdNames)) {
      config.device_id_strategy =
          *EnumFromString(*v, {DeviceIdStrategy::kUuid, DeviceIdStrategy::kIndex});
    }
  }
  if (auto raw = get("flags.plugin.pluginDirectory")) {
    if (auto v = dec.String(*raw)) config.plugin_directory = *v;
  }
  if (auto raw = get("flags.plugin.resourceName")) {
    if (auto v = dec.String(*raw)) config.resource_name = *v;
  }
  if (auto raw = get("flags.plugin.cdiRoot")) {
    if (auto v = dec.String(*raw)) config.cdi_root = *v;
  }
  if (auto raw = get("flags.plugin.cdiAnnotationPrefix")) {
    if (auto v = dec.String(*raw)) config.cdi_annotation_prefix = *v;
  }
  if (auto raw = get("flags.nvidiaDevRoot")) {
    if (auto v = dec.String(*raw)) config.dev_root = *v;
  }
  if (auto raw = get("flags.deviceDiscoveryStrategy")) {
    if (auto v = dec.Enum(*raw, kDiscoveryNames); v && *v == "tegra") {
      dec.Error(raw->where(),
                "tegra is not supported: this plugin finds GPUs through NVML; use auto or nvml");
    }
  }
  // NVIDIA's fields this plugin accepts without acting on them: checked for
  // their type, then noted with the reason (only when they ask for something).
  {
    auto note = [&](const char* path, const std::string& why) {
      config.not_acted_on.push_back(absl::StrCat(path, ": ", why));
    };
    auto enabled = [&](const char* path) {
      std::optional<Raw> raw = get(path);
      std::optional<bool> v = raw ? dec.Bool(*raw) : std::nullopt;
      return v.value_or(false);
    };
    config.gdrcopy_enabled = enabled("flags.gdrcopyEnabled");
    config.gds_enabled = enabled("flags.gdsEnabled");
    config.mofed_enabled = enabled("flags.mofedEnabled");
    if (enabled("flags.useNodeFeatureAPI")) {
      note("flags.useNodeFeatureAPI",
           "this plugin labels the Node itself, or writes NFD's local feature file "
           "(labels.nfdFeatureFile)");
    }
    if (auto raw = get("flags.plugin.nvidiaCTKPath"); raw && dec.String(*raw)) {
      note("flags.plugin.nvidiaCTKPath", "the CDI specs this plugin writes run no nvidia-ctk hook");
    }
    for (const char* path : {"flags.gfd.oneshot", "flags.gfd.noTimestamp"}) {
      if (enabled(path)) {
        note(path,
             "a GPU feature discovery setting; this plugin labels the node itself (labels.*)");
      }
    }
    if (auto raw = get("flags.gfd.sleepInterval"); raw && dec.Duration(*raw)) {
      note("flags.gfd.sleepInterval",
           "a GPU feature discovery setting; labels.resyncInterval is this plugin's");
    }
    for (const char* path : {"flags.gfd.outputFile", "flags.gfd.machineTypeFile"}) {
      if (auto raw = get(path); raw && dec.String(*raw)) {
        note(path,
             "a GPU feature discovery setting; this plugin labels the node itself (labels.*)");
      }
    }
    if (auto raw = get("flags.plugin.useResourcePatterns")) {
      if (auto v = dec.Bool(*raw)) config.use_resource_patterns = *v;
    }
    for (const char* path : {"resources.gpus", "resources.mig"}) {
      auto raw = get(path);
      auto items = raw ? dec.List(*raw, /*allow_scalar=*/false) : std::nullopt;
      if (!items) continue;
      std::vector<ResourcePattern>& out =
          std::string_view(path) == "resources.gpus" ? config.gpu_patterns : config.mig_patterns;
      for (const Raw& item : *items) {
        if (!item.node.IsMap() || !item.node["pattern"] || !item.node["name"] ||
            !item.node["pattern"].IsScalar() || !item.node["name"].IsScalar() ||
            item.node.size() != 2) {
          dec.Error(item.where(), absl::StrCat("expected {pattern, name}, got ", item.Seen()));
          continue;
        }
        std::string name = item.node["name"].Scalar();
        if (name.find('/') == std::string::npos) name.insert(0, "nvidia.com/");
        out.push_back(ResourcePattern{item.node["pattern"].Scalar(), std::move(name)});
      }
      if (!out.empty() && !config.use_resource_patterns) {
        note(path,
             "per-model resource names are ignored, as NVIDIA's plugin ignores them; "
             "flags.plugin.useResourcePatterns: true acts on them");
      }
    }
    if (auto raw = get("imex.channelIDs")) {
      if (auto items = dec.List(*raw, /*allow_scalar=*/true)) {
        for (const Raw& item : *items) {
          if (auto v = dec.Int(item, 0, 2047)) {
            config.imex_channel_ids.push_back(static_cast<unsigned>(*v));
          }
        }
      }
    }
    config.imex_required = enabled("imex.required");
    if (config.imex_required && config.imex_channel_ids.empty()) {
      dec.Error("imex.required", "is true, but imex.channelIDs names no channel");
    }
  }

  // sharing
  if (auto raw = get("sharing.allocationPolicy")) {
    if (auto v = dec.Enum(*raw, kPolicyNames)) {
      config.sharing.allocation_policy =
          *EnumFromString(*v, {AllocationPolicy::kDistributed, AllocationPolicy::kPacked});
    }
  }
  if (auto raw = get("sharing.timeSlicing.renameByDefault")) {
    if (auto v = dec.Bool(*raw)) config.sharing.time_slicing.rename_by_default = *v;
  }
  if (auto raw = get("sharing.timeSlicing.failRequestsGreaterThanOne")) {
    if (auto v = dec.Bool(*raw)) config.sharing.time_slicing.fail_requests_greater_than_one = *v;
  }
  if (auto raw = get("sharing.timeSlicing.resources")) {
    if (auto v = dec.SharedList(*raw, false)) config.sharing.time_slicing.resources = *v;
  }
  if (auto raw = get("sharing.mps.renameByDefault")) {
    if (auto v = dec.Bool(*raw)) config.sharing.mps.rename_by_default = *v;
  }
  if (auto raw = get("sharing.mps.failRequestsGreaterThanOne")) {
    if (auto v = dec.Bool(*raw)) config.sharing.mps.fail_requests_greater_than_one = *v;
  }
  if (auto raw = get("sharing.mps.resources")) {
    if (auto v = dec.SharedList(*raw, true)) config.sharing.mps.resources = *v;
  }
  if (auto raw = get("sharing.mps.root")) {
    if (auto v = dec.String(*raw)) config.sharing.mps.root = *v;
  }
  if (auto raw = get("sharing.mps.controlBinary")) {
    if (auto v = dec.String(*raw)) config.sharing.mps.control_binary = *v;
  }

  // health: the ignored list is the base list (ignoredXids or the default),
  // plus additionalIgnoredXids, minus criticalXids.
  if (auto raw = get("health.enabled")) {
    if (auto v = dec.Bool(*raw)) config.health.enabled = *v;
  }
  {
    std::optional<std::vector<unsigned>> base, added, critical;
    if (auto raw = get("health.ignoredXids")) base = dec.XidList(*raw);
    if (auto raw = get("health.additionalIgnoredXids")) added = dec.XidList(*raw);
    if (auto raw = get("health.criticalXids")) critical = dec.XidList(*raw);
    std::set<unsigned> ignored(config.health.ignored_xids.begin(),
                               config.health.ignored_xids.end());
    if (base) ignored = std::set<unsigned>(base->begin(), base->end());
    if (added) ignored.insert(added->begin(), added->end());
    if (critical) {
      for (unsigned xid : *critical) {
        if (added && std::count(added->begin(), added->end(), xid)) {
          dec.Error("health.criticalXids",
                    absl::StrCat("XID ", xid,
                                 " is also in health.additionalIgnoredXids; an XID cannot be both "
                                 "ignored and critical"));
        } else if (base && std::count(base->begin(), base->end(), xid)) {
          dec.Error("health.criticalXids",
                    absl::StrCat("XID ", xid,
                                 " is also in health.ignoredXids; an XID cannot be both ignored "
                                 "and critical"));
        }
        ignored.erase(xid);
      }
    }
    config.health.ignored_xids.assign(ignored.begin(), ignored.end());
  }
  if (auto raw = get("health.recoveryQuietPeriod")) {
    if (auto d = dec.Duration(*raw)) {
      if (*d % std::chrono::seconds(1) != std::chrono::nanoseconds(0)) {
        dec.Error(raw->where(), absl::StrCat(raw->Seen(), " must be a whole number of seconds"));
      } else {
        config.health.recovery_quiet_period = std::chrono::duration_cast<std::chrono::seconds>(*d);
      }
    }
  }
  if (auto raw = get("health.probeInterval")) {
    if (auto d = dec.Duration(*raw)) {
      if (*d % std::chrono::milliseconds(1) != std::chrono::nanoseconds(0)) {
        dec.Error(raw->where(),
                  absl::StrCat(raw->Seen(), " must be a whole number of milliseconds"));
      } else {
        config.health.probe_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
      }
    }
  }
  if (auto raw = get("metrics.bindAddress")) {
    if (auto v = dec.String(*raw)) config.metrics_bind_address = *v;
  }
  if (auto raw = get("metrics.port")) {
    if (auto v = dec.Int(*raw, 0, 65535)) config.metrics_port = static_cast<int>(*v);
  }
  if (auto raw = get("metrics.sampleInterval")) {
    if (auto d = dec.Duration(*raw)) {
      if (*d % std::chrono::milliseconds(1) != std::chrono::nanoseconds(0)) {
        dec.Error(raw->where(),
                  absl::StrCat(raw->Seen(), " must be a whole number of milliseconds"));
      } else {
        config.metrics_sample_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
      }
    }
  }
  if (auto raw = get("metrics.podResourcesSocket")) {
    if (auto v = dec.String(*raw)) config.metrics_pod_resources_socket = *v;
  }
  if (auto raw = get("metrics.dcgmCompatibility")) {
    if (auto v = dec.Bool(*raw)) config.metrics_dcgm_compatibility = *v;
  }
  if (auto raw = get("log.level")) {
    if (auto v = dec.Enum(*raw, kLevelNames)) config.log_level = *v;
  }
  if (auto raw = get("log.format")) {
    if (auto v = dec.Enum(*raw, kFormatNames)) config.log_format = *v;
  }
  if (auto raw = get("labels.enabled")) {
    if (auto v = dec.Bool(*raw)) config.labels.enabled = *v;
  }
  if (auto raw = get("labels.kubeconfig")) {
    if (auto v = dec.String(*raw)) config.labels.kubeconfig = *v;
  }
  if (auto raw = get("labels.nfdFeatureFile")) {
    if (auto v = dec.String(*raw)) config.labels.nfd_feature_file = *v;
  }
  if (auto raw = get("labels.events")) {
    if (auto v = dec.Bool(*raw)) config.labels.events = *v;
  }
  if (auto raw = get("labels.resyncInterval")) {
    if (auto d = dec.Duration(*raw)) {
      config.labels.resync_interval = std::chrono::duration_cast<std::chrono::seconds>(*d);
    }
  }

  std::vector<std::string> problems = std::move(dec.errors);
  for (std::string& p : Validate(config)) {
    const size_t colon = p.find(": ");
    if (auto it = origin.find(p.substr(0, colon));
        colon != std::string::npos && it != origin.end()) {
      p.insert(colon, it->second);
    }
    problems.push_back(std::move(p));
  }
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
  return config;
}

std::vector<std::string> Validate(const Config& c) {
  std::vector<std::string> problems;
  auto add = [&](const char* path, const std::string& what) {
    problems.push_back(absl::StrCat(path, ": ", what));
  };
  if (c.version != "v1") {
    add("version",
        absl::StrCat(Quote(c.version), " is not supported; this plugin reads version v1"));
  }
  CheckPath(&problems, "flags.nvidiaDriverRoot", c.driver_root, false);
  CheckPath(&problems, "flags.containerDriverRoot", c.container_driver_root, true);
  CheckPath(&problems, "flags.nvmlLibrary", c.nvml_library, true);
  CheckPath(&problems, "flags.plugin.pluginDirectory", c.plugin_directory, false);
  CheckPath(&problems, "flags.plugin.cdiRoot", c.cdi_root, false);
  CheckPath(&problems, "flags.nvidiaDevRoot", c.dev_root, true);
  {
    // An annotation key prefix: a DNS subdomain and a slash ("cdi.k8s.io/").
    const std::string& p = c.cdi_annotation_prefix;
    const bool ok = p.size() >= 2 && p.size() <= 254 && p.back() == '/' &&
                    std::all_of(p.begin(), p.end() - 1,
                                [](char ch) {
                                  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                                         ch == '-' || ch == '.';
                                }) &&
                    p.front() != '.' && p.front() != '-' && p[p.size() - 2] != '.' &&
                    p[p.size() - 2] != '-';
    if (!ok) {
      add("flags.plugin.cdiAnnotationPrefix",
          absl::StrCat(Quote(p),
                       " is not an annotation key prefix: a lower-case DNS name and a slash, "
                       "such as cdi.k8s.io/"));
    }
  }
  CheckPath(&problems, "sharing.mps.root", c.sharing.mps.root, false);
  CheckPath(&problems, "sharing.mps.controlBinary", c.sharing.mps.control_binary, true);
  ValidateSharing(c, &problems);
  ValidateResourcePatterns(c, &problems);

  if (c.device_list_strategy.empty()) {
    add("flags.plugin.deviceListStrategy",
        absl::StrCat("must name at least one of ", absl::StrJoin(kListNames, ", ")));
  }
  std::set<DeviceListStrategy> strategies;
  for (DeviceListStrategy s : c.device_list_strategy) {
    if (!strategies.insert(s).second) {
      add("flags.plugin.deviceListStrategy", absl::StrCat(ToString(s), " is listed twice"));
    }
  }

  std::string why;
  if (!detail::IsValidExtendedResourceName(c.resource_name, &why)) {
    add("flags.plugin.resourceName",
        absl::StrCat(Quote(c.resource_name), " is not a valid extended resource name: ", why));
  }

  std::set<unsigned> xids;
  for (unsigned xid : c.health.ignored_xids) {
    if (xid < kMinXid || xid > kMaxXid) {
      add("health.ignoredXids",
          absl::StrCat("XID ", xid, " is out of range ", kMinXid, " to ", kMaxXid));
    }
    if (!xids.insert(xid).second)
      add("health.ignoredXids", absl::StrCat("XID ", xid, " is listed twice"));
  }
  if (c.health.recovery_quiet_period < std::chrono::seconds(0)) {
    add("health.recoveryQuietPeriod",
        absl::StrCat(detail::FormatDuration(c.health.recovery_quiet_period),
                     " is negative; use 0 to never recover without a restart"));
  }
  if (c.health.probe_interval <= std::chrono::milliseconds(0)) {
    add("health.probeInterval",
        absl::StrCat(detail::FormatDuration(c.health.probe_interval), " must be positive"));
  }

  if (c.metrics_sample_interval < std::chrono::milliseconds(100)) {
    add("metrics.sampleInterval",
        absl::StrCat(detail::FormatDuration(c.metrics_sample_interval),
                     " is too short; use at least 100ms (NVML calls can take milliseconds each)"));
  }
  if (!c.metrics_pod_resources_socket.empty() && c.metrics_pod_resources_socket[0] != '/') {
    add("metrics.podResourcesSocket",
        absl::StrCat(Quote(c.metrics_pod_resources_socket),
                     " must be an absolute path (or empty to switch pod attribution off)"));
  }
  if (c.metrics_port < 0 || c.metrics_port > 65535) {
    add("metrics.port", absl::StrCat(c.metrics_port, " is out of range 0 to 65535"));
  }
  {
    unsigned char buf[sizeof(struct in6_addr)];
    const std::string& a = c.metrics_bind_address;
    if (inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1 &&
        !IsHostname(a)) {
      add("metrics.bindAddress",
          absl::StrCat(Quote(a),
                       " is not an IP address or host name (e.g. 0.0.0.0, ::, 127.0.0.1)"));
    }
  }

  if (std::find(kLevelNames.begin(), kLevelNames.end(), c.log_level) == kLevelNames.end()) {
    add("log.level",
        absl::StrCat(Quote(c.log_level), " is not one of ", absl::StrJoin(kLevelNames, ", ")));
  }
  if (std::find(kFormatNames.begin(), kFormatNames.end(), c.log_format) == kFormatNames.end()) {
    add("log.format",
        absl::StrCat(Quote(c.log_format), " is not one of ", absl::StrJoin(kFormatNames, ", ")));
  }

  if (const std::string& cm = c.node_config.config_map; !cm.empty()) {
    const size_t slash = cm.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == cm.size() ||
        cm.find('/', slash + 1) != std::string::npos || !IsHostname(cm.substr(0, slash)) ||
        !IsHostname(cm.substr(slash + 1))) {
      add("flags.nodeConfig.configMap",
          absl::StrCat(Quote(cm),
                       " is not namespace/name (e.g. kube-system/gpu-device-plugin-configs)"));
    }
  }
  if (c.node_config.label.empty()) {
    add("flags.nodeConfig.label",
        "must name a node label (default nvidia.com/device-plugin.config)");
  }
  if (c.rescan_interval != std::chrono::milliseconds(0) &&
      c.rescan_interval < std::chrono::milliseconds(100)) {
    add("flags.rescanInterval",
        absl::StrCat(detail::FormatDuration(c.rescan_interval),
                     " is too short: use 0 (events only) or at least 100ms"));
  }
  if (!c.node_name.empty() && !IsHostname(c.node_name)) {
    add("flags.nodeName",
        absl::StrCat(Quote(c.node_name), " is not a node name (a DNS subdomain, e.g. gpu-node-1)"));
  }
  CheckPath(&problems, "labels.kubeconfig", c.labels.kubeconfig, true);
  CheckPath(&problems, "labels.nfdFeatureFile", c.labels.nfd_feature_file, true);
  if (c.labels.resync_interval < std::chrono::seconds(1)) {
    add("labels.resyncInterval",
        absl::StrCat(detail::FormatDuration(c.labels.resync_interval), " must be at least 1s"));
  }
  return problems;
}

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
