// The strict decoder: YAML in, Config out, every problem named by its path
// and where its value came from. Which fields exist and how each is decoded is
// the schema's (schema.cc); this file walks the document and the overrides.
#include "src/config/decoder.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/config/schema.h"

namespace gdp::config {
namespace detail {
namespace {

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

// YAML's booleans in the document; Go's strconv.ParseBool's in flags and
// environment variables.
std::optional<bool> ParseBool(const std::string& text, bool lenient) {
  if (lenient) return ParseGoBool(text);
  static const std::set<std::string> kTrue = {"true", "True", "TRUE"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE"};
  if (kTrue.count(text) != 0) return true;
  if (kFalse.count(text) != 0) return false;
  return std::nullopt;
}

// Reads the one document of `yaml_text` (null when empty) into *doc; an error
// status for text that is not one YAML document.
absl::Status LoadDocument(const std::string& yaml_text, YAML::Node* doc) {
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
      if (!d.IsNull()) doc->reset(d);  // reset, not =: yaml-cpp's = assigns content
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("(document) (line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1,
                                                   "): not valid YAML: ", e.msg));
  }
  return absl::OkStatus();
}

// health's three XID lists, combined (Decoding says how).
void CombineXids(Decoder& dec, Decoding& d) {
  std::set<unsigned> ignored(d.config.health.ignored_xids.begin(),
                             d.config.health.ignored_xids.end());
  if (d.ignored_xids) ignored = std::set<unsigned>(d.ignored_xids->begin(), d.ignored_xids->end());
  if (d.additional_ignored_xids) {
    ignored.insert(d.additional_ignored_xids->begin(), d.additional_ignored_xids->end());
  }
  if (d.critical_xids) {
    auto in = [](const std::optional<std::vector<unsigned>>& list, unsigned xid) {
      return list && std::count(list->begin(), list->end(), xid) != 0;
    };
    for (unsigned xid : *d.critical_xids) {
      if (in(d.additional_ignored_xids, xid)) {
        dec.Error("health.criticalXids",
                  absl::StrCat("XID ", xid,
                               " is also in health.additionalIgnoredXids; an XID cannot be both "
                               "ignored and critical"));
      } else if (in(d.ignored_xids, xid)) {
        dec.Error("health.criticalXids",
                  absl::StrCat("XID ", xid,
                               " is also in health.ignoredXids; an XID cannot be both ignored "
                               "and critical"));
      }
      ignored.erase(xid);
    }
  }
  d.config.health.ignored_xids.assign(ignored.begin(), ignored.end());
}

}  // namespace

std::string Raw::Seen() const { return ov != nullptr ? Quote(ov->value) : Describe(node); }

void Decoder::Error(const std::string& where, const std::string& what) {
  errors.push_back(absl::StrCat(where, ": ", what));
}

std::string Decoder::Suffix(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat(" (line ", mark.line + 1, ")");
}

std::string Decoder::Where(const std::string& path, const YAML::Mark& mark) {
  return path + Suffix(mark);
}

void Decoder::CheckKeys(const YAML::Node& map, const std::string& prefix) {
  std::set<std::string> seen;
  std::vector<std::string> known = ChildKeys(prefix);
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
    if (IsSection(path)) {
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

std::string Decoder::UnknownFieldMessage(const std::string& key, const std::string& prefix,
                                         const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : known) {
    size_t d = EditDistance(key, candidate);
    if (d < best_distance) best_distance = d, best = candidate;
  }
  std::string msg = "unknown field";
  const size_t limit = std::max<size_t>(2, key.size() / 3);
  if (!best.empty() && best_distance <= limit) {
    absl::StrAppend(&msg, " (did you mean ", best, "?)");
    return msg;
  }
  // The same name in another section: say where it belongs.
  for (const FieldSpec& f : Fields()) {
    for (const char* place : {f.path, f.nvidia_path}) {
      if (place == nullptr) continue;
      std::string_view path = place;
      if (path.substr(path.rfind('.') + 1) == key) {
        absl::StrAppend(&msg, " (did you mean ", place, "?)");
        return msg;
      }
    }
  }
  if (known.empty()) return msg;
  absl::StrAppend(&msg, "; known fields", prefix.empty() ? "" : absl::StrCat(" of ", prefix), ": ",
                  absl::StrJoin(known, ", "));
  return msg;
}

std::optional<Raw> Decoder::Lookup(const YAML::Node& doc, const std::string& path,
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

std::optional<Raw> Decoder::InDocument(const YAML::Node& doc, const std::string& path) {
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

std::optional<bool> Decoder::Bool(const Raw& raw) {
  if (raw.IsScalar() && !raw.Quoted()) {
    if (std::optional<bool> v = ParseBool(raw.Text(), raw.ov != nullptr)) {
      return raw.ov != nullptr && raw.ov->negate ? !*v : *v;
    }
  }
  Error(raw.where(), absl::StrCat("expected a boolean (true or false), got ", raw.Seen()));
  return std::nullopt;
}

std::optional<std::string> Decoder::String(const Raw& raw) {
  if (raw.IsScalar()) return raw.Text();
  Error(raw.where(), absl::StrCat("expected a string, got ", raw.Seen()));
  return std::nullopt;
}

std::optional<int64_t> Decoder::Int(const Raw& raw, int64_t min, int64_t max) {
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

std::optional<std::string> Decoder::Enum(const Raw& raw, const std::vector<std::string>& names) {
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

std::optional<std::vector<Raw>> Decoder::List(const Raw& raw, bool allow_scalar) {
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

std::optional<std::vector<unsigned>> Decoder::UintList(const Raw& raw, bool allow_scalar,
                                                       unsigned min, unsigned max) {
  auto items = List(raw, allow_scalar);
  if (!items) return std::nullopt;
  std::vector<unsigned> values;
  bool ok = true;
  for (const Raw& item : *items) {
    if (auto value = Int(item, min, max)) {
      values.push_back(static_cast<unsigned>(*value));
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return values;
}

std::optional<std::chrono::nanoseconds> Decoder::Duration(const Raw& raw) {
  if (!raw.IsScalar()) {
    Error(raw.where(),
          absl::StrCat("expected a duration such as \"30s\" or \"5m\", got ", raw.Seen()));
    return std::nullopt;
  }
  auto d = ParseDuration(raw.Text());
  if (!d.ok()) {
    Error(raw.where(), std::string(d.status().message()));
    return std::nullopt;
  }
  return *d;
}

std::optional<DeviceSelector> Decoder::Devices(const Raw& raw) {
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

std::optional<std::vector<SharedResource>> Decoder::SharedList(const Raw& raw, bool mps) {
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
      if (auto v = String(*f)) {
        r.name = *v;
      } else {
        item_ok = false;
      }
    } else {
      Error(Where(path, item.Mark()),
            "name is required (the resource to share, e.g. nvidia.com/gpu)");
      item_ok = false;
    }
    if (const Raw* f = field("rename")) {
      if (auto v = String(*f)) {
        r.rename = *v;
      } else {
        item_ok = false;
      }
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
      Error(Where(path, item.Mark()), "replicas is required (how many pods may share each device)");
      item_ok = false;
    }
    if (const Raw* f = field("devices")) {
      if (auto v = Devices(*f)) {
        r.devices = *v;
      } else {
        item_ok = false;
      }
    }
    if (const Raw* f = field("memoryLimit")) {
      auto v = String(*f);
      absl::StatusOr<uint64_t> bytes = v ? ParseMemorySize(*v) : absl::InvalidArgumentError("");
      if (v && !bytes.ok()) Error(f->where(), std::string(bytes.status().message()));
      if (v && bytes.ok() && *bytes == 0) Error(f->where(), "must be more than 0 bytes");
      if (bytes.ok() && *bytes > 0) {
        r.memory_limit_bytes = *bytes;
      } else {
        item_ok = false;
      }
    }
    if (const Raw* f = field("activeThreadPercentage")) {
      if (auto v = Int(*f, 1, 100)) {
        r.active_thread_percentage = static_cast<unsigned>(*v);
      } else {
        item_ok = false;
      }
    }
    ok = ok && item_ok;
    if (item_ok) out.push_back(std::move(r));
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<ResourcePattern>> Decoder::PatternList(const Raw& raw) {
  auto items = List(raw, /*allow_scalar=*/false);
  if (!items) return std::nullopt;
  std::vector<ResourcePattern> out;
  for (const Raw& item : *items) {
    const YAML::Node& n = item.node;
    if (!n.IsMap() || n.size() != 2 || !n["pattern"] || !n["name"] || !n["pattern"].IsScalar() ||
        !n["name"].IsScalar()) {
      Error(item.where(), absl::StrCat("expected {pattern, name}, got ", item.Seen()));
      continue;
    }
    std::string name = n["name"].Scalar();
    if (name.find('/') == std::string::npos) name.insert(0, "nvidia.com/");
    out.push_back(ResourcePattern{n["pattern"].Scalar(), std::move(name)});
  }
  return out;
}

}  // namespace detail

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text,
                                   const std::vector<Override>& overrides) {
  using detail::Raw;
  detail::Decoder dec;
  detail::Decoding decoding;

  YAML::Node doc;
  // Syntax errors stop here: nothing below can be trusted.
  if (absl::Status s = detail::LoadDocument(yaml_text, &doc); !s.ok()) return s;

  const bool empty_document = doc.IsNull();
  if (!empty_document && !doc.IsMap()) {
    dec.Error("(document)", absl::StrCat("expected a mapping with version: v1 at the top, got ",
                                         detail::Describe(doc)));
  } else if (!empty_document) {
    dec.CheckKeys(doc, "");
  }

  // Overrides set fields at our places (not NVIDIA's, not the version).
  std::map<std::string, const Override*> by_path;
  for (const Override& ov : overrides) {
    const detail::FieldSpec* f = detail::FindField(ov.path);
    if (f == nullptr || ov.path != f->path || ov.path == "version") {
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
  if (doc.IsMap() && !dec.InDocument(doc, "version")) {
    dec.Error("version", "required; add \"version: v1\" at the top of the file");
  }

  // Where each field's value came from (" (line N)" or " (from --flag)"), so
  // validation problems can say it too.
  std::map<std::string, std::string> origin;
  for (const detail::FieldSpec& f : detail::Fields()) {
    std::optional<Raw> raw = dec.Lookup(doc, f.path, by_path);
    if (f.nvidia_path != nullptr) {
      // Either place; both, with different values, is an error. NVIDIA's
      // place in the file wins over a fallback default.
      if (std::optional<Raw> theirs = dec.InDocument(doc, f.nvidia_path)) {
        if (!raw || (raw->ov != nullptr && raw->ov->fallback)) {
          raw = std::move(theirs);
        } else if (raw->ov == nullptr && raw->Text() != theirs->Text()) {
          dec.Error(theirs->where(),
                    absl::StrCat("sets ", f.path, " (NVIDIA's place for it), which ", raw->where(),
                                 " sets to another value; keep one"));
        }
      }
    }
    if (!raw) continue;
    origin[f.path] = raw->suffix;
    const size_t errors_before = dec.errors.size();
    f.codec.decode(dec, *raw, decoding);
    if (f.not_acted_on != nullptr && dec.errors.size() == errors_before) {
      // Noted when it asks for something: a boolean when true.
      const bool asks = f.codec.kind != detail::FieldKind::kBool || dec.Bool(*raw).value_or(false);
      if (asks) decoding.config.not_acted_on.push_back(absl::StrCat(f.path, ": ", f.not_acted_on));
    }
  }
  detail::CombineXids(dec, decoding);

  std::vector<std::string> problems = std::move(dec.errors);
  for (std::string& p : Validate(decoding.config)) {
    const size_t colon = p.find(": ");
    if (auto it = origin.find(p.substr(0, colon));
        colon != std::string::npos && it != origin.end()) {
      p.insert(colon, it->second);
    }
    problems.push_back(std::move(p));
  }
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
  return std::move(decoding.config);
}

}  // namespace gdp::config
