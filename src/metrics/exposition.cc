#include "src/metrics/exposition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace gdp::metrics {
namespace {

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kCounter:
      return "counter";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// name="escaped value", appended in place: this runs for every label of
// every sample of every sample round, so no temporary strings.
void AppendLabel(std::string* out, const std::string& name, std::string_view value) {
  out->append(name);
  out->append("=\"");
  for (size_t special; (special = value.find_first_of("\\\"\n")) != std::string_view::npos;) {
    out->append(value.substr(0, special));
    out->append(value[special] == '\n' ? "\\n" : value[special] == '"' ? "\\\"" : "\\\\");
    value.remove_prefix(special + 1);
  }
  out->append(value);
  out->push_back('"');
}

void AppendLabels(std::string* out, const Labels& labels, const std::string* extra_name = nullptr,
                  const std::string* extra_value = nullptr) {
  if (labels.empty() && extra_name == nullptr) return;
  out->push_back('{');
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out->push_back(',');
    first = false;
    AppendLabel(out, k, v);
  }
  if (extra_name != nullptr) {
    if (!first) out->push_back(',');
    AppendLabel(out, *extra_name, *extra_value);
  }
  out->push_back('}');
}

}  // namespace

MetricFamily& MetricFamily::Add(Labels labels, double value) {
  Sample s;
  s.labels = std::move(labels);
  s.value = value;
  samples.push_back(std::move(s));
  return *this;
}

MetricFamily& MetricFamily::AddHistogram(Labels labels, HistogramValue histogram) {
  Sample s;
  s.labels = std::move(labels);
  s.histogram = std::move(histogram);
  samples.push_back(std::move(s));
  return *this;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return absl::StrCat(value);
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Render(std::vector<MetricFamily> families) {
  // Merge by name, keeping the first family's help and type.
  std::map<std::string, MetricFamily> by_name;
  for (MetricFamily& f : families) {
    auto [it, inserted] = by_name.try_emplace(f.name);
    if (inserted) {
      it->second = std::move(f);
    } else {
      for (Sample& s : f.samples) it->second.samples.push_back(std::move(s));
    }
  }
  std::string out;
  size_t samples = 0;
  for (const auto& [name, f] : by_name) samples += f.samples.size();
  out.reserve(samples * 160);  // about a line per sample; saves the doublings
  for (auto& [name, f] : by_name) {
    if (f.samples.empty()) continue;
    for (Sample& s : f.samples) {
      // Collectors mostly build labels in order already; checking is cheaper than sorting.
      if (!std::is_sorted(s.labels.begin(), s.labels.end())) {
        std::sort(s.labels.begin(), s.labels.end());
      }
    }
    std::stable_sort(f.samples.begin(), f.samples.end(),
                     [](const Sample& a, const Sample& b) { return a.labels < b.labels; });
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(f.help), "\n# TYPE ", name, " ",
                    TypeName(f.type), "\n");
    for (const Sample& s : f.samples) {
      if (f.type != MetricType::kHistogram) {
        out += name;
        AppendLabels(&out, s.labels);
        absl::StrAppend(&out, " ", FormatValue(s.value), "\n");
        continue;
      }
      static const std::string kLe = "le";
      const HistogramValue& h = s.histogram;
      for (size_t i = 0; i < h.upper_bounds.size() && i < h.counts.size(); ++i) {
        const std::string le = FormatValue(h.upper_bounds[i]);
        absl::StrAppend(&out, name, "_bucket");
        AppendLabels(&out, s.labels, &kLe, &le);
        absl::StrAppend(&out, " ", h.counts[i], "\n");
      }
      static const std::string kInf = "+Inf";
      absl::StrAppend(&out, name, "_bucket");
      AppendLabels(&out, s.labels, &kLe, &kInf);
      absl::StrAppend(&out, " ", h.count, "\n", name, "_sum");
      AppendLabels(&out, s.labels);
      absl::StrAppend(&out, " ", FormatValue(h.sum), "\n", name, "_count");
      AppendLabels(&out, s.labels);
      absl::StrAppend(&out, " ", h.count, "\n");
    }
  }
  return out;
}

}  // namespace gdp::metrics
