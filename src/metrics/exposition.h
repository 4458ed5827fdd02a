// Prometheus text exposition (format 0.0.4): plain values describing metric
// families, and a renderer that writes them deterministically.
//
// A MetricFamily is a name, help text, a type and its samples; a Sample is a
// label set and a value (histograms carry their buckets). Render() sorts the
// families by name and each family's samples by their labels, escapes help
// text and label values as the format requires, and writes `# HELP`,
// `# TYPE` and one line per sample, so two renders of equal input are equal
// byte for byte (golden tests rely on it).
//
// Everything here is a value type or a pure function: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gdp::metrics {

enum class MetricType { kGauge, kCounter, kHistogram };

// Label name -> value, in any order (Render sorts them by name).
using Labels = std::vector<std::pair<std::string, std::string>>;

// Cumulative histogram buckets: counts[i] observations <= upper_bounds[i];
// count and sum cover every observation (the +Inf bucket is `count`).
struct HistogramValue {
  std::vector<double> upper_bounds;
  std::vector<uint64_t> counts;  // cumulative, same length as upper_bounds
  uint64_t count = 0;
  double sum = 0;
};

struct Sample {
  Labels labels;
  double value = 0;          // gauges and counters
  HistogramValue histogram;  // histograms
};

struct MetricFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<Sample> samples;

  // Appends a sample; returns *this for chaining.
  MetricFamily& Add(Labels labels, double value);
  MetricFamily& AddHistogram(Labels labels, HistogramValue histogram);
};

inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// The exposition of `families`; families with no sample are left out, and
// families of the same name are merged (the first one's help and type win).
std::string Render(std::vector<MetricFamily> families);

// A sample value as the format writes it: integers without a fraction,
// others in the shortest form that reads back to the same double; NaN,
// +Inf and -Inf by name.
std::string FormatValue(double value);

// Escaping: label values escape backslash, double quote and newline; help
// text escapes backslash and newline.
std::string EscapeLabelValue(std::string_view value);
std::string EscapeHelp(std::string_view help);

}  // namespace gdp::metrics
