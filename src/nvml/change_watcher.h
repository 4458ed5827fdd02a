// ChangeWatcher: notices that the node's GPUs changed under a running daemon
// (a GPU added or removed, a MIG re-layout, the driver leaving or replaced)
// and says what it saw; the daemon decides what to do about it.
//
// Two sources, both cheap:
//   - NVML's system events (driver bind and unbind of a GPU, nvml.h 12.9+),
//     waited on with a short timeout so Stop() is prompt. Drivers without them
//     answer FUNCTION_NOT_FOUND or NOT_SUPPORTED and the watcher does without.
//   - A periodic check (ChangeProbe) every `interval`, the safety net and the
//     only signal on older drivers: the driver's library file still the one
//     loaded, the set of /dev/nvidia<N> nodes, NVML's GPU count, and for each
//     MIG-capable GPU its MIG mode and MIG device UUIDs. It compares against
//     the inventory it was given and the file system as it was at Start().
// MIG configuration events come through the health monitor, which owns the
// device event set.
//
// After reporting a change that needs a new NVML session the watcher stops
// waiting on NVML for a while (it sleeps where Stop() wakes it at once), so
// the owner can stop it without waiting out an NVML wait.
//
// Reports: kDriverGone when the driver is leaving (its library gone from the
// driver root or replaced by another file, or NVML answering that the driver
// is not loaded): the daemon must release NVML and every device file so the
// driver can unload. kDevices for anything else: re-discover and apply the
// difference. A change keeps being reported at every check until the daemon
// acts on it (typically by stopping this watcher and starting a new one with
// the new inventory).
//
// Threading: one thread (std::jthread), started by Start() and joined by
// Stop() or the destructor. The callback runs on that thread; it must be quick
// and must not call Stop(). NVML must stay initialised until Stop() returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "src/common/filesystem.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"

namespace gdp::nvml {

struct NodeChange {
  enum class Kind {
    kDevices,     // GPUs, MIG layout or device nodes differ: re-discover
    kDriverGone,  // the driver is leaving or was replaced: release NVML
  };
  Kind kind = Kind::kDevices;
  std::string reason;  // for the log, e.g. "device node nvidia8 appeared"
  // kDevices: the GPUs themselves changed (one added or removed), which only
  // a new NVML session shows; false for a MIG change, which the running
  // session sees.
  bool new_session = true;
  // GPUs (by UUID) the driver unbound: gone already, before any re-discovery.
  std::vector<std::string> unbound;
  bool operator==(const NodeChange&) const = default;
};

struct ChangeWatcherOptions {
  // The periodic check; zero: events only.
  std::chrono::milliseconds interval{5000};
  // One NVML system-event wait at most this long, so Stop() returns within
  // about this (NVML's wait cannot be interrupted).
  std::chrono::milliseconds wait_timeout{1000};
  // The libnvidia-ml.so.1 the daemon loaded; empty: not checked.
  std::string library_path;
  // Its identity when it was loaded. Without it the baseline is taken at
  // Start(), which misses a library that left in between.
  std::optional<FileInfo> library_identity;
  // Where the /dev/nvidia<N> nodes are (<driver root>/dev); empty: not checked.
  std::string dev_dir;
};

// The periodic check alone, with no thread: tests and the watcher use it.
// Not thread-safe; one owner.
class ChangeProbe {
 public:
  // `api` (initialised) and `fs` must outlive the probe.
  ChangeProbe(NvmlApi& api, const FileSystem& fs, std::shared_ptr<const Inventory> inventory,
              ChangeWatcherOptions options);

  // Records the baseline the checks compare against: the library file's
  // identity and the device nodes present now.
  void TakeBaseline();
  // What differs from the inventory and the baseline, the first thing found;
  // nullopt when nothing does.
  std::optional<NodeChange> Check();
  // Compares against `inventory` from now on (same NVML session).
  void SetInventory(std::shared_ptr<const Inventory> inventory);
  const std::shared_ptr<const Inventory>& inventory() const { return inventory_; }

 private:
  std::optional<NodeChange> CheckLibrary();
  std::optional<NodeChange> CheckDeviceNodes();
  std::optional<NodeChange> CheckNvml();
  std::optional<std::set<unsigned>> GpuNodes() const;

  NvmlApi& api_;
  const FileSystem& fs_;
  std::shared_ptr<const Inventory> inventory_;
  const ChangeWatcherOptions options_;
  std::optional<FileInfo> library_;
  std::optional<std::set<unsigned>> nodes_;
};

class ChangeWatcher {
 public:
  using Callback = std::function<void(const NodeChange&)>;

  ChangeWatcher(NvmlApi& api, const FileSystem& fs, std::shared_ptr<const Inventory> inventory,
                ChangeWatcherOptions options, Callback on_change);
  ~ChangeWatcher();
  ChangeWatcher(const ChangeWatcher&) = delete;
  ChangeWatcher& operator=(const ChangeWatcher&) = delete;

  // Takes the baseline on the caller's thread, then starts the thread.
  // FailedPrecondition when already started.
  absl::Status Start();
  // Stops and joins the thread, freeing the event set. Idempotent.
  void Stop();
  // Asks the thread to stop without waiting (Stop() then joins): the owner
  // can stop several NVML waiters at once.
  void RequestStop();
  // Compares against `inventory` from now on: the owner applied a change the
  // running NVML session shows (a MIG re-layout). Thread-safe.
  void SetInventory(std::shared_ptr<const Inventory> inventory);

  uint64_t checks() const;  // periodic checks run so far

 private:
  void Run(const std::stop_token& stop);
  // Creates the system event set; false when NVML has none.
  bool SetUpEvents();
  void TearDownEvents();
  // Waits for system events up to `timeout`; reports them (in `reported`,
  // whether one needs a new session). False when the set failed and the
  // watcher should fall back to sleeping.
  bool WaitEvents(std::chrono::milliseconds timeout, bool* reported);
  // The UUID of the inventory's GPU with this driver GPU id (PCI domain, bus
  // and device, as system events carry it); "" when none.
  std::string GpuByDriverId(unsigned gpu_id);
  void SleepFor(const std::stop_token& stop, std::chrono::milliseconds d);

  NvmlApi& api_;
  ChangeProbe probe_;
  const ChangeWatcherOptions options_;
  const Callback on_change_;

  nvmlSystemEventSet_t set_ = nullptr;  // the watcher's thread only
  std::mutex probe_mu_;                 // the probe: the thread checks, SetInventory swaps
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::atomic<uint64_t> checks_{0};
  std::jthread thread_;
};

}  // namespace gdp::nvml
