// Topology scores and the set selection behind GetPreferredAllocation.
//
// A resource's devices sit on physical GPUs. The pair score of two GPUs says
// how well they talk to each other (NVLink > one PCIe switch > several
// switches > host bridge > same NUMA node > across NUMA nodes); the score of
// a set of devices is the sum of the pair scores of its members' GPUs.
// SelectDevices() picks the best-scoring set of a given size from the
// available devices, always keeping the ones that must be included, and
// breaks ties towards the lowest device positions so the answer is a pure
// function of its inputs. docs/allocation.md explains the algorithm.
//
// Everything here is a value type or a pure function over positions; no
// locks, safe to call from any number of threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "src/nvml/inventory.h"

namespace gdp::resources {

// The preference score of one GPU pair, higher is better. Every PCIe level
// scores below any NVLink connection; among NVLink pairs more links score
// higher. kSelf (the same GPU) scores 0: two devices on one GPU (time-slicing
// replicas) get their order from an allocation policy, not from topology.
int32_t PairScore(const nvml::Link& link);

// Pair scores of every device pair of a resource, stored once per physical
// GPU: device d sits on GPU device_gpu[d], and
//   Score(a, b) = gpu_scores[device_gpu[a] * gpu_count + device_gpu[b]].
// Keeping the device -> GPU mapping explicit lets several devices (replicas,
// MIG devices) share a GPU without a matrix per device pair.
struct ScoreTable {
  size_t gpu_count = 0;
  std::vector<int32_t> gpu_scores;   // gpu_count * gpu_count, symmetric
  std::vector<uint32_t> device_gpu;  // one entry per device position

  int32_t Score(uint32_t a, uint32_t b) const {
    return gpu_scores[static_cast<size_t>(device_gpu[a]) * gpu_count + device_gpu[b]];
  }
  // Sum of Score over every unordered pair in `set`.
  int64_t SetScore(std::span<const uint32_t> set) const;
};

// Builds the GPU score matrix from an inventory's links matrix (gpus in
// inventory order). An empty links matrix (topology unknown) scores GPUs on
// the same NUMA node as kNumaNode and all others as kSystem.
std::vector<int32_t> GpuScoresFromInventory(const nvml::Inventory& inventory);

struct SelectOptions {
  // Search every combination when there are at most this many; above it,
  // run the seeded greedy search with a swap pass. C(16, 8) = 12870 fits.
  uint64_t exact_combination_limit = 16384;
};

// Chooses `size` device positions from `available` that include all of
// `must_include` and maximise table.SetScore(). Both inputs must be sorted
// ascending without duplicates, must_include a subset of available, and
// must_include.size() <= size <= available.size() (the caller validates and
// reports). The result is sorted ascending. Among equally scored sets the
// exact search returns the lexicographically smallest; the greedy search
// breaks its ties the same way at every step.
std::vector<uint32_t> SelectDevices(const ScoreTable& table, std::span<const uint32_t> available,
                                    std::span<const uint32_t> must_include, size_t size,
                                    const SelectOptions& options = {});

}  // namespace gdp::resources
