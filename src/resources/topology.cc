#include "src/resources/topology.h"

#include <algorithm>
#include <iterator>
#include <limits>

namespace gdp::resources {
namespace {

// Tier values. NVLink starts far above the best PCIe level so that a set with
// more NVLink pairs wins over one with fewer even when the PCIe pairs of the
// latter are well connected; the link count only orders NVLink pairs.
constexpr int32_t kSystemScore = 1;
constexpr int32_t kNumaNodeScore = 2;
constexpr int32_t kHostBridgeScore = 3;
constexpr int32_t kMultiSwitchScore = 4;
constexpr int32_t kSwitchScore = 5;
constexpr int32_t kNvLinkBase = 100;
constexpr unsigned kMaxCountedLinks = 64;

// C(n, k), saturating at limit + 1.
uint64_t Combinations(size_t n, size_t k, uint64_t limit) {
  if (k > n) return 0;
  k = std::min(k, n - k);
  uint64_t c = 1;
  for (size_t i = 0; i < k; ++i) {
    // c * (n - i) / (i + 1) is exact at every step; stop before it can overflow.
    if (c > limit) return limit + 1;
    c = c * (n - i) / (i + 1);
  }
  return c > limit ? limit + 1 : c;
}

bool LexLess(std::span<const uint32_t> a, std::span<const uint32_t> b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}

// Exhaustive depth-first search over combinations of `free` in lexicographic
// order, with a bound: a branch is cut when even the best imaginable
// completion cannot beat (strictly) the best set found so far, so the first
// maximum found, the lexicographically smallest, is kept.
class ExactSearch {
 public:
  ExactSearch(const ScoreTable& table, std::span<const uint32_t> free, size_t k,
              std::span<const int64_t> base_gain)
      : table_(table), free_(free), f_(free.size()), k_(k), gains_((k + 1) * free.size()) {
    std::copy(base_gain.begin(), base_gain.end(), gains_.begin());
    for (size_t a = 0; a < f_; ++a) {
      for (size_t b = a + 1; b < f_; ++b) {
        max_pair_ = std::max<int64_t>(max_pair_, table_.Score(free_[a], free_[b]));
      }
    }
    current_.reserve(k);
  }

  // Indices into `free` of the best completion, and its score over the chosen
  // free devices (pairs with must_include included through base_gain).
  std::vector<uint32_t> Run() {
    Recurse(0, 0, 0);
    return best_;
  }

 private:
  void Recurse(size_t start, size_t depth, int64_t score) {
    const size_t remaining = k_ - depth;
    if (remaining == 0) {
      if (score > best_score_) {
        best_score_ = score;
        best_ = current_;
      }
      return;
    }
    const int64_t* gains = &gains_[depth * f_];
    const size_t last = f_ - remaining;  // the last index that still leaves room
    if (!best_.empty()) {
      int64_t max_gain = std::numeric_limits<int64_t>::min();
      for (size_t i = start; i < f_; ++i) max_gain = std::max(max_gain, gains[i]);
      const int64_t r = static_cast<int64_t>(remaining);
      const int64_t bound = score + r * max_gain + max_pair_ * r * (r - 1) / 2;
      if (bound <= best_score_) return;
    }
    for (size_t i = start; i <= last; ++i) {
      current_.push_back(static_cast<uint32_t>(i));
      if (remaining > 1) {
        int64_t* next = &gains_[(depth + 1) * f_];
        for (size_t c = i + 1; c < f_; ++c) next[c] = gains[c] + table_.Score(free_[i], free_[c]);
      }
      Recurse(i + 1, depth + 1, score + gains[i]);
      current_.pop_back();
    }
  }

  const ScoreTable& table_;
  std::span<const uint32_t> free_;
  size_t f_;
  size_t k_;
  std::vector<int64_t> gains_;  // one row of f_ per depth
  int64_t max_pair_ = 0;
  std::vector<uint32_t> current_;
  std::vector<uint32_t> best_;
  int64_t best_score_ = std::numeric_limits<int64_t>::min();
};

// Greedy growth from every seed, then single swaps on the winner until no
// swap improves it. Works on indices into `free`.
std::vector<uint32_t> GreedySearch(const ScoreTable& table, std::span<const uint32_t> free,
                                   size_t k, std::span<const int64_t> base_gain) {
  const size_t f = free.size();
  std::vector<int64_t> gains(f);
  std::vector<uint8_t> chosen(f);
  std::vector<uint32_t> picked;
  picked.reserve(k);
  std::vector<uint32_t> best;
  int64_t best_score = std::numeric_limits<int64_t>::min();

  for (size_t seed = 0; seed < f; ++seed) {
    std::copy(base_gain.begin(), base_gain.end(), gains.begin());
    std::fill(chosen.begin(), chosen.end(), 0);
    picked.clear();
    int64_t score = 0;
    size_t next = seed;
    for (size_t step = 0; step < k; ++step) {
      if (step > 0) {
        int64_t top = std::numeric_limits<int64_t>::min();
        for (size_t c = 0; c < f; ++c) {
          if (!chosen[c] && gains[c] > top) {
            top = gains[c];
            next = c;
          }
        }
      }
      chosen[next] = 1;
      picked.push_back(static_cast<uint32_t>(next));
      score += gains[next];
      for (size_t c = 0; c < f; ++c) {
        if (!chosen[c]) gains[c] += table.Score(free[next], free[c]);
      }
    }
    std::sort(picked.begin(), picked.end());
    if (score > best_score || (score == best_score && LexLess(picked, best))) {
      best_score = score;
      best = picked;
    }
  }

  // Swap pass: contrib[c] is what c adds to the set when it is (or would be)
  // in it, against every other chosen device and must_include.
  std::fill(chosen.begin(), chosen.end(), 0);
  for (uint32_t i : best) chosen[i] = 1;
  std::vector<int64_t> contrib(base_gain.begin(), base_gain.end());
  for (size_t c = 0; c < f; ++c) {
    for (uint32_t i : best) {
      if (i != c) contrib[c] += table.Score(free[c], free[i]);
    }
  }
  for (size_t round = 0; round < 4 * f; ++round) {
    int64_t best_delta = 0;
    size_t out = f, in = f;
    for (uint32_t x : best) {
      for (size_t y = 0; y < f; ++y) {
        if (chosen[y]) continue;
        const int64_t delta = contrib[y] - table.Score(free[y], free[x]) - contrib[x];
        if (delta > best_delta) {
          best_delta = delta;
          out = x;
          in = y;
        }
      }
    }
    if (out == f) break;
    for (size_t c = 0; c < f; ++c) {
      if (c != in) contrib[c] += table.Score(free[c], free[in]);
      if (c != out) contrib[c] -= table.Score(free[c], free[out]);
    }
    chosen[out] = 0;
    chosen[in] = 1;
    *std::find(best.begin(), best.end(), static_cast<uint32_t>(out)) = static_cast<uint32_t>(in);
    std::sort(best.begin(), best.end());
  }
  return best;
}

}  // namespace

int32_t PairScore(const nvml::Link& link) {
  switch (link.path) {
    case nvml::PathKind::kSelf:
      return 0;
    case nvml::PathKind::kNvLink:
      return kNvLinkBase + static_cast<int32_t>(std::min(link.nvlinks, kMaxCountedLinks));
    case nvml::PathKind::kPcieSwitch:
      return kSwitchScore;
    case nvml::PathKind::kPcieMultiSwitch:
      return kMultiSwitchScore;
    case nvml::PathKind::kHostBridge:
      return kHostBridgeScore;
    case nvml::PathKind::kNumaNode:
      return kNumaNodeScore;
    case nvml::PathKind::kSystem:
      return kSystemScore;
  }
  return kSystemScore;
}

int64_t ScoreTable::SetScore(std::span<const uint32_t> set) const {
  int64_t total = 0;
  for (size_t a = 0; a < set.size(); ++a) {
    for (size_t b = a + 1; b < set.size(); ++b) total += Score(set[a], set[b]);
  }
  return total;
}

std::vector<int32_t> GpuScoresFromInventory(const nvml::Inventory& inventory) {
  const size_t n = inventory.gpus.size();
  std::vector<int32_t> scores(n * n, 0);
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      if (a == b) continue;
      nvml::Link link;
      if (inventory.links.empty()) {
        const int na = inventory.gpus[a].numa_node, nb = inventory.gpus[b].numa_node;
        link.path = (na >= 0 && na == nb) ? nvml::PathKind::kNumaNode : nvml::PathKind::kSystem;
      } else {
        link = inventory.links[a][b];
      }
      scores[a * n + b] = PairScore(link);
    }
  }
  return scores;
}

std::vector<uint32_t> SelectDevices(const ScoreTable& table, std::span<const uint32_t> available,
                                    std::span<const uint32_t> must_include, size_t size,
                                    const SelectOptions& options) {
  std::vector<uint32_t> result(must_include.begin(), must_include.end());
  if (size <= must_include.size()) return result;
  if (size >= available.size()) return {available.begin(), available.end()};

  // The candidates: available minus must_include (both sorted).
  std::vector<uint32_t> free;
  free.reserve(available.size() - must_include.size());
  std::set_difference(available.begin(), available.end(), must_include.begin(), must_include.end(),
                      std::back_inserter(free));
  const size_t k = size - must_include.size();

  // What each candidate adds against must_include.
  std::vector<int64_t> base_gain(free.size(), 0);
  for (size_t c = 0; c < free.size(); ++c) {
    for (uint32_t m : must_include) base_gain[c] += table.Score(free[c], m);
  }

  std::vector<uint32_t> picked;
  if (Combinations(free.size(), k, options.exact_combination_limit) <=
      options.exact_combination_limit) {
    picked = ExactSearch(table, free, k, base_gain).Run();
  } else {
    picked = GreedySearch(table, free, k, base_gain);
  }
  for (uint32_t i : picked) result.push_back(free[i]);
  std::sort(result.begin(), result.end());
  return result;
}

}  // namespace gdp::resources
