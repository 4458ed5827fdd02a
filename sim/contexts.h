// Contexts: what workloads hold on the simulated GPUs (the simulated libcuda's
// contexts: device memory allocated, and the load of the "kernel" running), so
// every NVML client (nvidia-smi, the plugin's metrics) sees it as on a real
// GPU: memory used and utilisation are the GPU's telemetry plus the live
// contexts' use.
//
// One file, <root>/run/gpusim/contexts, a fixed table mmap'ed by every
// process that uses the root, on the host or in a container (through the
// handed-over root). Entry i belongs to the process holding an open file
// description lock (F_OFD_SETLK) on byte i of the file: the kernel drops the
// lock when that process dies, so a crashed workload's memory is free again
// at once, whatever pid namespace it ran in. Entries are written only by their
// owner; readers may see a value being written (each field is one aligned
// word, read atomically).
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

namespace gdp::sim {

inline constexpr unsigned kMaxContexts = 256;

// What the live contexts on one GPU use.
struct ContextUse {
  uint64_t mem_bytes = 0;
  unsigned util = 0;  // % of the GPU busy now, summed over contexts (may pass 100)
  unsigned contexts = 0;
};

class Contexts {
 public:
  ~Contexts();
  Contexts(const Contexts&) = delete;
  Contexts& operator=(const Contexts&) = delete;

  // Opens (creating when absent) the table at `path`.
  static absl::StatusOr<std::unique_ptr<Contexts>> Open(const std::string& path);

  // Takes a free entry for the GPU in state slot `slot`; its index.
  // ResourceExhausted when all kMaxContexts are live.
  absl::StatusOr<unsigned> Claim(unsigned slot);
  // Frees an entry this process claimed.
  void Release(unsigned index);
  // The device memory an entry holds, in bytes.
  void SetMemory(unsigned index, uint64_t bytes);
  // The entry keeps `util`% of its GPU busy until `until_ns` (CLOCK_REALTIME).
  void SetBusy(unsigned index, unsigned util, int64_t until_ns);

  // What the live entries on `slot` use now.
  ContextUse Use(unsigned slot) const;

  struct File;  // the mapped layout; defined in contexts.cc

 private:
  Contexts(int fd, File* file) : fd_(fd), file_(file) {}
  bool Live(unsigned index) const;  // needs mu_

  mutable std::mutex mu_;
  int fd_;
  File* file_;
  uint64_t mine_[kMaxContexts / 64] = {};  // entries this process claimed; guarded by mu_
};

}  // namespace gdp::sim
