// Preferred allocation: named topologies, then property checks over random
// ones (valid, deterministic, order-independent, optimal against brute force).
#include "src/resources/topology.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "src/config/config.h"
#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::resources {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
namespace t = testing;

TEST(PairScoreTest, RanksEveryNvLinkAboveEveryPcieLevelAndMoreLinksHigher) {
  using nvml::PathKind;
  const int32_t system = PairScore({PathKind::kSystem, 0});
  const int32_t numa = PairScore({PathKind::kNumaNode, 0});
  const int32_t bridge = PairScore({PathKind::kHostBridge, 0});
  const int32_t multi = PairScore({PathKind::kPcieMultiSwitch, 0});
  const int32_t single = PairScore({PathKind::kPcieSwitch, 0});
  const int32_t nvl1 = PairScore({PathKind::kNvLink, 1});
  const int32_t nvl18 = PairScore({PathKind::kNvLink, 18});
  EXPECT_LT(system, numa);
  EXPECT_LT(numa, bridge);
  EXPECT_LT(bridge, multi);
  EXPECT_LT(multi, single);
  EXPECT_LT(single, nvl1);
  EXPECT_LT(nvl1, nvl18);
  // Six NVLink pairs must beat any mix with fewer NVLink pairs, e.g. a split 4-of-8.
  EXPECT_GT(6 * nvl1, 2 * nvl18 + 4 * single);
}

TEST(GpuScoresTest, WithoutLinksFallsBackToNumaNodes) {
  nvml::Inventory inv = t::Blank(3);
  inv.links.clear();
  inv.gpus[0].numa_node = 0;
  inv.gpus[1].numa_node = 0;
  inv.gpus[2].numa_node = 1;
  const std::vector<int32_t> s = GpuScoresFromInventory(inv);
  EXPECT_EQ(s[0 * 3 + 1], PairScore({nvml::PathKind::kNumaNode, 0}));
  EXPECT_EQ(s[0 * 3 + 2], PairScore({nvml::PathKind::kSystem, 0}));
  EXPECT_EQ(s[1 * 3 + 0], s[0 * 3 + 1]);
}

// A resource built from the inventory with short IDs ("0", "1", ...).
std::shared_ptr<const plugin::ResourceBackend> Backend(const nvml::Inventory& full) {
  const nvml::Inventory inv = t::ShortIds(full);
  config::Config cfg;
  FakeFileSystem fs;
  for (const nvml::Gpu& g : inv.gpus) {
    fs.AddCharDevice("/dev/nvidia" + std::to_string(g.minor), 195, g.minor);
  }
  auto built = BuildResources(inv, cfg, fs);
  EXPECT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->size(), 1u);
  return built->front();
}

std::vector<std::string> Ids(std::initializer_list<int> indices) {
  std::vector<std::string> out;
  for (int i : indices) out.push_back(std::to_string(i));
  return out;
}

std::vector<std::string> Range(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(std::to_string(i));
  return out;
}

struct Case {
  const char* name;
  std::vector<std::string> available;
  std::vector<std::string> must;
  int size;
  std::vector<std::string> want;
};

void RunCases(const plugin::ResourceBackend& backend, const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = backend.PreferredAllocation(c.available, c.must, c.size);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_THAT(*got, ElementsAreArray(c.want));
  }
}

TEST(PreferredAllocationTest, DgxAllNvLinkHonoursMustIncludeAndTakesLowestIndices) {
  auto backend = Backend(t::DgxH100());
  RunCases(*backend, {
                         {"one", Range(0, 8), {}, 1, Ids({0})},
                         {"four", Range(0, 8), {}, 4, Ids({0, 1, 2, 3})},
                         {"all", Range(0, 8), {}, 8, Range(0, 8)},
                         {"must 5 and 7", Range(0, 8), Ids({7, 5}), 3, Ids({0, 5, 7})},
                         {"holes", Ids({6, 1, 3}), {}, 2, Ids({1, 3})},
                     });
}

TEST(PreferredAllocationTest, TwoIslandsKeepsRequestsInsideOneIsland) {
  auto backend = Backend(t::TwoIslands());
  RunCases(*backend, {
                         // Island 4-7 scores higher because (6,7) has 6 links.
                         {"four of eight", Range(0, 8), {}, 4, Ids({4, 5, 6, 7})},
                         {"four without 7", Ids({0, 1, 2, 3, 4, 5, 6}), {}, 4, Ids({0, 1, 2, 3})},
                         {"must 1", Range(0, 8), Ids({1}), 4, Ids({0, 1, 2, 3})},
                         {"pair prefers more links", Range(0, 8), {}, 2, Ids({6, 7})},
                         {"pair in island A", Ids({0, 1, 2, 3}), {}, 2, Ids({2, 3})},
                         {"pair with must 0", Range(0, 8), Ids({0}), 2, Ids({0, 1})},
                         {"three with must 4", Range(0, 8), Ids({4}), 3, Ids({4, 6, 7})},
                         {"split islands", Ids({0, 1, 4, 5, 6}), {}, 3, Ids({4, 5, 6})},
                     });
}

TEST(PreferredAllocationTest, T4PcieTopologyPrefersSwitchPartner) {
  auto backend = Backend(t::T4x4());
  RunCases(*backend, {
                         {"pair", Range(0, 4), {}, 2, Ids({0, 1})},
                         {"must 2", Range(0, 4), Ids({2}), 2, Ids({2, 3})},
                         {"must 1", Range(0, 4), Ids({1}), 2, Ids({0, 1})},
                         {"0 taken", Ids({1, 2, 3}), {}, 2, Ids({2, 3})},
                         {"three", Range(0, 4), {}, 3, Ids({0, 1, 2})},
                     });
}

TEST(PreferredAllocationTest, SixtyFourGpusFillsWholeIslands) {
  auto backend = Backend(t::Islands64());
  RunCases(*backend, {
                         {"island", Range(0, 64), {}, 8, Range(0, 8)},
                         {"must 42 -> island 5", Range(0, 64), Ids({42}), 8, Range(40, 48)},
                         {"two islands on one NUMA node", Range(0, 64), {}, 16, Range(0, 16)},
                         {"island 0 broken", Range(1, 64), {}, 8, Range(8, 16)},
                         {"pair", Range(0, 64), Ids({63}), 2, Ids({56, 63})},
                     });
}

// --- properties over random topologies ---

ScoreTable RandomTable(std::mt19937& rng, size_t n) {
  ScoreTable table;
  table.gpu_count = n;
  table.gpu_scores.assign(n * n, 0);
  std::uniform_int_distribution<int> kind(1, 6), links(0, 18);
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = a + 1; b < n; ++b) {
      nvml::Link l{static_cast<nvml::PathKind>(kind(rng)), 0};
      if (l.path == nvml::PathKind::kNvLink) l.nvlinks = static_cast<unsigned>(links(rng));
      table.gpu_scores[a * n + b] = table.gpu_scores[b * n + a] = PairScore(l);
    }
  }
  table.device_gpu.resize(n);
  std::iota(table.device_gpu.begin(), table.device_gpu.end(), 0u);
  return table;
}

struct Request {
  std::vector<uint32_t> available, must;
  size_t size;
};

Request RandomRequest(std::mt19937& rng, size_t n) {
  Request r;
  std::bernoulli_distribution coin(0.8);
  for (uint32_t i = 0; i < n; ++i) {
    if (coin(rng)) r.available.push_back(i);
  }
  if (r.available.empty()) r.available.push_back(0);
  std::uniform_int_distribution<size_t> size(1, r.available.size());
  r.size = size(rng);
  std::uniform_int_distribution<size_t> musts(0, std::min<size_t>(r.size, 3));
  std::vector<uint32_t> pool = r.available;
  std::shuffle(pool.begin(), pool.end(), rng);
  pool.resize(musts(rng));
  std::sort(pool.begin(), pool.end());
  r.must = pool;
  return r;
}

// The lexicographically smallest best set, by trying every subset.
std::vector<uint32_t> BruteForce(const ScoreTable& table, const Request& r) {
  std::vector<uint32_t> best;
  int64_t best_score = -1;
  const size_t n = r.available.size();
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (static_cast<size_t>(__builtin_popcount(mask)) != r.size) continue;
    std::vector<uint32_t> set;
    for (size_t i = 0; i < n; ++i) {
      if (mask & (1u << i)) set.push_back(r.available[i]);
    }
    if (!std::includes(set.begin(), set.end(), r.must.begin(), r.must.end())) continue;
    const int64_t s = table.SetScore(set);
    if (s > best_score || (s == best_score && set < best)) {
      best_score = s;
      best = set;
    }
  }
  return best;
}

void ExpectValid(const std::vector<uint32_t>& got, const Request& r) {
  EXPECT_EQ(got.size(), r.size);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end());
  EXPECT_TRUE(std::includes(r.available.begin(), r.available.end(), got.begin(), got.end()));
  EXPECT_TRUE(std::includes(got.begin(), got.end(), r.must.begin(), r.must.end()));
}

TEST(SelectDevicesPropertyTest, ExactSearchMatchesBruteForceUpToEightGpus) {
  std::mt19937 rng(20240611);
  for (int iteration = 0; iteration < 3000; ++iteration) {
    const size_t n = 1 + iteration % 8;
    const ScoreTable table = RandomTable(rng, n);
    const Request r = RandomRequest(rng, n);
    SCOPED_TRACE(::testing::Message() << "iteration " << iteration << " n=" << n);
    const std::vector<uint32_t> got = SelectDevices(table, r.available, r.must, r.size);
    ExpectValid(got, r);
    EXPECT_EQ(got, BruteForce(table, r));
    EXPECT_EQ(table.SetScore(got), table.SetScore(BruteForce(table, r)));
  }
}

TEST(SelectDevicesPropertyTest, ExactSearchMatchesBruteForceOnSixteenWithTies) {
  // Few distinct scores: many ties, so the tie rule is exercised hard.
  std::mt19937 rng(7);
  for (int iteration = 0; iteration < 60; ++iteration) {
    const size_t n = 12 + iteration % 5;
    ScoreTable table = RandomTable(rng, n);
    for (int32_t& s : table.gpu_scores) s = s > 50 ? 100 : (s > 0 ? 1 : 0);
    const Request r = RandomRequest(rng, n);
    SCOPED_TRACE(::testing::Message() << "iteration " << iteration);
    EXPECT_EQ(SelectDevices(table, r.available, r.must, r.size), BruteForce(table, r));
  }
}

TEST(SelectDevicesPropertyTest, GreedySearchIsValidDeterministicAndNearOptimal) {
  std::mt19937 rng(99);
  SelectOptions greedy;
  greedy.exact_combination_limit = 0;  // always greedy
  int64_t greedy_total = 0, exact_total = 0;
  for (int iteration = 0; iteration < 400; ++iteration) {
    const size_t n = 2 + iteration % 11;
    const ScoreTable table = RandomTable(rng, n);
    const Request r = RandomRequest(rng, n);
    SCOPED_TRACE(::testing::Message() << "iteration " << iteration);
    const std::vector<uint32_t> got = SelectDevices(table, r.available, r.must, r.size, greedy);
    ExpectValid(got, r);
    EXPECT_EQ(got, SelectDevices(table, r.available, r.must, r.size, greedy));
    const std::vector<uint32_t> best = SelectDevices(table, r.available, r.must, r.size);
    EXPECT_LE(table.SetScore(got), table.SetScore(best));
    greedy_total += table.SetScore(got);
    exact_total += table.SetScore(best);
  }
  // Greedy growth plus the swap pass stays within 2% of optimal overall.
  EXPECT_GE(static_cast<double>(greedy_total), 0.98 * static_cast<double>(exact_total));
}

TEST(SelectDevicesPropertyTest, LargeRandomTopologiesGiveValidDeterministicAnswers) {
  std::mt19937 rng(5);
  for (int iteration = 0; iteration < 40; ++iteration) {
    const size_t n = 24 + iteration;  // up to 63: both searches depending on the size
    const ScoreTable table = RandomTable(rng, n);
    const Request r = RandomRequest(rng, n);
    SCOPED_TRACE(::testing::Message() << "iteration " << iteration << " n=" << n);
    const std::vector<uint32_t> got = SelectDevices(table, r.available, r.must, r.size);
    ExpectValid(got, r);
    EXPECT_EQ(got, SelectDevices(table, r.available, r.must, r.size));
  }
}

TEST(PreferredAllocationPropertyTest, AnswerDoesNotDependOnRequestOrder) {
  std::mt19937 rng(3);
  auto backend = Backend(t::TwoIslands());
  for (int iteration = 0; iteration < 200; ++iteration) {
    std::vector<std::string> available = Range(0, 8);
    std::shuffle(available.begin(), available.end(), rng);
    available.resize(1 + iteration % 8);
    std::vector<std::string> must(available.begin(), available.begin() + iteration % 2);
    const int size = 1 + static_cast<int>(rng() % available.size());
    auto first = backend->PreferredAllocation(available, must, size);
    std::shuffle(available.begin(), available.end(), rng);
    auto second = backend->PreferredAllocation(available, must, size);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(*first, *second);
  }
}

}  // namespace
}  // namespace gdp::resources
