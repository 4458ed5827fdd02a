#include "src/metrics/exposition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace gdp::metrics {
namespace {

TEST(ExpositionTest, RendersSortedFamiliesSamplesAndLabels) {
  MetricFamily b{"b_total", "B things.", MetricType::kCounter, {}};
  b.Add({{"z", "1"}, {"a", "2"}}, 3).Add({{"a", "1"}}, 1.5);
  MetricFamily a{"a_bytes", "A bytes.", MetricType::kGauge, {}};
  a.Add({}, 1024);
  MetricFamily empty{"c_none", "No samples.", MetricType::kGauge, {}};
  EXPECT_EQ(Render({b, a, empty}),
            "# HELP a_bytes A bytes.\n"
            "# TYPE a_bytes gauge\n"
            "a_bytes 1024\n"
            "# HELP b_total B things.\n"
            "# TYPE b_total counter\n"
            "b_total{a=\"1\"} 1.5\n"
            "b_total{a=\"2\",z=\"1\"} 3\n");
}

TEST(ExpositionTest, EscapesLabelValuesAndHelp) {
  MetricFamily f{"m", "line one\nback\\slash \"quoted\"", MetricType::kGauge, {}};
  f.Add({{"reason", "XID 79: \"lost\"\nC:\\gpu"}}, 1);
  EXPECT_EQ(Render({f}),
            "# HELP m line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE m gauge\n"
            "m{reason=\"XID 79: \\\"lost\\\"\\nC:\\\\gpu\"} 1\n");
}

TEST(ExpositionTest, FormatsValues) {
  struct Case {
    double in;
    const char* want;
  };
  for (const Case& c :
       {Case{0, "0"}, Case{-3, "-3"}, Case{0.25, "0.25"}, Case{1e-6, "1e-06"},
        Case{85899345920, "85899345920"}, Case{0.1 + 0.2, "0.30000000000000004"},
        Case{std::numeric_limits<double>::infinity(), "+Inf"},
        Case{-std::numeric_limits<double>::infinity(), "-Inf"}, Case{std::nan(""), "NaN"}}) {
    EXPECT_EQ(FormatValue(c.in), c.want) << c.in;
  }
}

TEST(ExpositionTest, RendersHistogramsWithCumulativeBucketsSumAndCount) {
  MetricFamily h{"rpc_duration_seconds", "RPC latency.", MetricType::kHistogram, {}};
  h.AddHistogram({{"rpc", "Allocate"}}, HistogramValue{{0.001, 0.01}, {2, 3}, 4, 0.5});
  EXPECT_EQ(Render({h}),
            "# HELP rpc_duration_seconds RPC latency.\n"
            "# TYPE rpc_duration_seconds histogram\n"
            "rpc_duration_seconds_bucket{rpc=\"Allocate\",le=\"0.001\"} 2\n"
            "rpc_duration_seconds_bucket{rpc=\"Allocate\",le=\"0.01\"} 3\n"
            "rpc_duration_seconds_bucket{rpc=\"Allocate\",le=\"+Inf\"} 4\n"
            "rpc_duration_seconds_sum{rpc=\"Allocate\"} 0.5\n"
            "rpc_duration_seconds_count{rpc=\"Allocate\"} 4\n");
}

TEST(ExpositionTest, MergesFamiliesOfTheSameName) {
  MetricFamily one{"m", "first", MetricType::kGauge, {}};
  one.Add({{"x", "b"}}, 2);
  MetricFamily two{"m", "second", MetricType::kCounter, {}};
  two.Add({{"x", "a"}}, 1);
  EXPECT_EQ(Render({one, two}), "# HELP m first\n# TYPE m gauge\nm{x=\"a\"} 1\nm{x=\"b\"} 2\n");
}

}  // namespace
}  // namespace gdp::metrics
