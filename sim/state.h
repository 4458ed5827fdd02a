// SharedState: the mutable part of a simulation (which GPUs are lost, the
// telemetry set with `gpusim set`, and the queue of injected XID events),
// kept in one file under the driver root (<root>/run/gpusim/state) and
// mmap'ed by every process that uses that root: the daemon (through the
// library), the metrics scrape and the `gpusim` injector all see one state.
//
// Locking: writers take flock(LOCK_EX) on the file, readers flock(LOCK_SH);
// a process-local mutex orders the threads of one process (flock is per open
// file, and ThreadSanitizer understands the mutex). flock is released by the
// kernel when a process dies, so a crashed injector never wedges the daemon.
//
// Events: InjectXid() appends to a ring of kEventRing records and bumps a
// 32-bit sequence word that waiters block on with futex(FUTEX_WAIT) on the
// shared mapping (not FUTEX_PRIVATE, so it works across processes); the
// injector wakes them with FUTEX_WAKE, so delivery takes microseconds.
//
// Thread-safety: every method is thread-safe. The object owns its fd and
// mapping and releases them on destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "sim/profile.h"

namespace gdp::sim {

inline constexpr unsigned kMaxGpus = 64;
inline constexpr unsigned kEventRing = 1024;

// What `gpusim set` can change, per physical GPU.
struct Telemetry {
  bool lost = false;
  unsigned util_gpu = 0;  // %
  unsigned util_mem = 0;  // %
  unsigned temp_c = 0;    // degrees C
  unsigned power_mw = 0;  // milliwatts
  uint64_t mem_used_bytes = 0;
  uint64_t energy_mj = 0;     // total energy since the state was created
  uint64_t sm_clock_mhz = 0;  // current clocks
  uint64_t mem_clock_mhz = 0;
  uint64_t ecc_corrected = 0;  // volatile = aggregate in the simulator
  uint64_t ecc_uncorrected = 0;
  uint64_t xid_count = 0;  // XIDs injected so far
  unsigned last_xid = 0;
  unsigned mem_temp_c = 0;    // memory (HBM) temperature, NVML_FI_DEV_MEMORY_TEMP
  unsigned pcie_tx_kbps = 0;  // nvmlDeviceGetPcieThroughput, KB/s
  unsigned pcie_rx_kbps = 0;
  uint64_t clocks_event_reasons = 0;  // nvmlClocksEventReason* bits
  unsigned latency_ms = 0;            // added to every NVML call on this GPU (benchmarks)
};

struct XidEvent {
  uint64_t seq = 0;  // 1, 2, ...: position in the stream of all events
  unsigned gpu = 0;
  unsigned xid = 0;
};

class SharedState {
 public:
  ~SharedState();
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  // Opens the state at `path`, creating it (with the profile's idle
  // telemetry) when absent. Fails when an existing file is not a state file or
  // was made for another number of GPUs.
  static absl::StatusOr<std::unique_ptr<SharedState>> OpenOrCreate(const std::string& path,
                                                                   const Profile& profile);
  // Opens an existing state (the injector: no state means no simulation).
  static absl::StatusOr<std::unique_ptr<SharedState>> Open(const std::string& path);
  // Writes a fresh state for `profile` at `path`, replacing any old one.
  static absl::Status Reset(const std::string& path, const Profile& profile);

  unsigned num_gpus() const;

  // A snapshot of one GPU (energy integrated up to now). gpu < num_gpus().
  Telemetry Read(unsigned gpu) const;
  // Applies `fn` to one GPU's telemetry under the exclusive lock.
  void Update(unsigned gpu, const std::function<void(Telemetry&)>& fn);

  // Queues an XID for `gpu` and wakes every waiter in every process.
  void InjectXid(unsigned gpu, unsigned xid);
  // The number of events ever injected (the seq of the newest).
  uint64_t EventCount() const;
  // The first event with seq > after still in the ring; false if none.
  bool NextEvent(uint64_t after, XidEvent* out) const;
  // Blocks until EventCount() moves past `seen` or `timeout` passes.
  void WaitForEvent(uint64_t seen, std::chrono::nanoseconds timeout) const;

  const std::string& path() const { return path_; }

  // The layout of the mapped file; defined in state.cc.
  struct File;

 private:
  SharedState(std::string path, int fd, File* file)
      : path_(std::move(path)), fd_(fd), file_(file) {}
  static absl::StatusOr<std::unique_ptr<SharedState>> Map(const std::string& path, int fd);

  std::string path_;
  int fd_;
  File* file_;
  mutable std::mutex mu_;  // orders this process's threads; flock orders processes
};

}  // namespace gdp::sim
