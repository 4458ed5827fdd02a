// GetPreferredAllocation latency on an 8-GPU all-NVLink DGX, an 8-GPU
// machine with two NVLink islands, and 64 GPUs in eight islands, for every
// request size (range(0) = size). The bar: p99 well
// under 100 us for 8 GPUs; run with --benchmark_repetitions to see spread.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::resources {
namespace {

std::shared_ptr<const plugin::ResourceBackend> Make(const nvml::Inventory& inv) {
  FakeFileSystem fs;
  for (const nvml::Gpu& g : inv.gpus) {
    fs.AddCharDevice("/dev/nvidia" + std::to_string(g.minor), 195, g.minor);
  }
  auto built = BuildResources(inv, config::Config{}, fs);
  if (!built.ok() || built->size() != 1) std::abort();
  return built->front();
}

void Run(benchmark::State& state, const nvml::Inventory& inv, bool with_must) {
  auto backend = Make(inv);
  std::vector<std::string> available;
  for (const plugin::Device& d : backend->Devices()) available.push_back(d.id);
  std::vector<std::string> must;
  if (with_must) must.push_back(available[available.size() / 2 + 1]);
  const int size = static_cast<int>(state.range(0));
  // Each call is timed on its own as well, for the tail: p50 and p99 counters.
  std::vector<int64_t> ns;
  ns.reserve(1 << 16);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto got = backend->PreferredAllocation(available, must, size);
    benchmark::DoNotOptimize(got);
    const auto stop = std::chrono::steady_clock::now();
    if (ns.size() < ns.capacity()) {
      ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count());
    }
  }
  std::sort(ns.begin(), ns.end());
  if (!ns.empty()) {
    state.counters["p50_us"] = static_cast<double>(ns[ns.size() / 2]) / 1000.0;
    state.counters["p99_us"] = static_cast<double>(ns[ns.size() * 99 / 100]) / 1000.0;
  }
}

void BM_Dgx8(benchmark::State& s) { Run(s, testing::DgxH100(), false); }
void BM_TwoIslands8(benchmark::State& s) { Run(s, testing::TwoIslands(), false); }
void BM_TwoIslands8Must(benchmark::State& s) { Run(s, testing::TwoIslands(), true); }
void BM_Islands64(benchmark::State& s) { Run(s, testing::Islands64(), false); }
void BM_Islands64Must(benchmark::State& s) { Run(s, testing::Islands64(), true); }

BENCHMARK(BM_Dgx8)->DenseRange(1, 8);
BENCHMARK(BM_TwoIslands8)->DenseRange(1, 8);
BENCHMARK(BM_TwoIslands8Must)->DenseRange(1, 8);
BENCHMARK(BM_Islands64)->DenseRange(1, 64);
BENCHMARK(BM_Islands64Must)->DenseRange(1, 64);

}  // namespace
}  // namespace gdp::resources

BENCHMARK_MAIN();
