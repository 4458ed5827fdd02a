// SharedState: the mutable part of a simulation (which GPUs are lost or
// removed, their pending recovery actions, the telemetry set with `gpusim
// set`, whether the driver is loaded, the layout generation and the queue of
// events), kept in one file under the driver root (<root>/run/gpusim/state)
// and mmap'ed by every process that uses that root: the daemon (through the
// library), the metrics scrape and the `gpusim` injector all see one state.
//
// Per-GPU state lives in slots: a GPU keeps its slot (GpuSpec::slot) while
// others are added and removed, so its telemetry stays with it. Slots are
// handed out once: a root has at most kMaxGpus GPUs over its life.
//
// Layout generation: `gpusim` bumps it after every change of the GPU layout
// (add, remove, mig, driver stop/start), so the library notices a change with
// one atomic load and re-reads the layout only then.
//
// Locking: writers take flock(LOCK_EX) on the file, readers flock(LOCK_SH);
// a process-local mutex orders the threads of one process (flock is per open
// file, and ThreadSanitizer understands the mutex). flock is released by the
// kernel when a process dies, so a crashed injector never wedges the daemon.
//
// Events: Post() (and InjectXid()) append to a ring of kEventRing records and
// bump a 32-bit sequence word that waiters block on with futex(FUTEX_WAIT) on
// the shared mapping (not FUTEX_PRIVATE, so it works across processes); the
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

inline constexpr unsigned kMaxGpus = kMaxProfileGpus;
inline constexpr unsigned kEventRing = 1024;

// What `gpusim` can change, per physical GPU (per slot).
struct Telemetry {
  bool lost = false;
  bool removed = false;          // hot-removed: sessions that saw it get GPU_IS_LOST
  unsigned recovery_action = 0;  // nvmlDeviceGpuRecoveryAction_t, field 230
  uint64_t reset_count = 0;      // `gpusim reset`s
  unsigned util_gpu = 0;         // %
  unsigned util_mem = 0;         // %
  unsigned temp_c = 0;           // degrees C
  unsigned power_mw = 0;         // milliwatts
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

enum class EventKind : uint32_t {
  kXid = 0,              // data: the XID
  kMigConfigChange = 1,  // the GPU's MIG layout changed
  kRecoveryAction = 2,   // data: the new nvmlDeviceGpuRecoveryAction_t
  kDriverBind = 3,       // system event; data: the GPU's PCI id (PciGpuId)
  kDriverUnbind = 4,     // system event; data: the GPU's PCI id
};

struct Event {
  uint64_t seq = 0;  // 1, 2, ...: position in the stream of all events
  unsigned slot = 0;
  EventKind kind = EventKind::kXid;
  uint64_t data = 0;
};

class SharedState {
 public:
  ~SharedState();
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  // Opens the state at `path`, creating it (with the profile's idle
  // telemetry) when absent. Fails when an existing file is not a state file or
  // lacks a slot of one of the profile's GPUs.
  static absl::StatusOr<std::unique_ptr<SharedState>> OpenOrCreate(const std::string& path,
                                                                   const Profile& profile);
  // Opens an existing state (the injector: no state means no simulation).
  static absl::StatusOr<std::unique_ptr<SharedState>> Open(const std::string& path);
  // Writes a fresh state for `profile` at `path`, replacing any old one.
  static absl::Status Reset(const std::string& path, const Profile& profile);

  // The number of slots handed out so far.
  unsigned num_slots() const;
  // Hands out the next slot, with `gpu`'s idle telemetry; fails when all
  // kMaxGpus have been handed out.
  absl::StatusOr<unsigned> AllocateSlot(const GpuSpec& gpu);

  // A snapshot of one slot (energy integrated up to now). slot < num_slots().
  Telemetry Read(unsigned slot) const;
  // Applies `fn` to one slot's telemetry under the exclusive lock.
  void Update(unsigned slot, const std::function<void(Telemetry&)>& fn);

  // Queues an XID for `slot` (counting it) and wakes every waiter in every process.
  void InjectXid(unsigned slot, unsigned xid);
  // Queues any event and wakes every waiter.
  void Post(unsigned slot, EventKind kind, uint64_t data);
  // The number of events ever injected (the seq of the newest).
  uint64_t EventCount() const;
  // The first event with seq > after still in the ring; false if none.
  bool NextEvent(uint64_t after, Event* out) const;
  // Blocks until EventCount() moves past `seen` or `timeout` passes.
  void WaitForEvent(uint64_t seen, std::chrono::nanoseconds timeout) const;

  // Bumped after every change of the GPU layout; one atomic load.
  uint64_t LayoutGeneration() const;
  void BumpLayoutGeneration();

  // Whether the simulated kernel module is loaded (`gpusim driver stop/start`).
  bool DriverLoaded() const;
  void SetDriverLoaded(bool loaded);

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
