// Sampler: keeps /metrics cheap. It owns one thread (std::jthread) that, every
// interval, runs each Collector in order, renders the whole exposition once
// and publishes it as an immutable snapshot. A scrape only copies a
// shared_ptr to the latest snapshot: it never calls NVML or the kubelet, its
// cost does not depend on how slow they are, and any number of concurrent
// scrapers share one rendered text (bounded work per scrape).
//
// Each round also records, per collector, how long it took and whether it
// succeeded (gdp_collector_duration_seconds, gdp_collector_success); a failed
// collector's families are dropped for that round, the others still publish.
//
// Ownership: collectors are not owned and must outlive Stop(). They run only
// on the sampler's thread (or the caller's, in SampleOnce), one at a time, in
// the order given, so a later collector may read what an earlier one stored.
//
// Thread-safety: Snapshot() and rounds() from any thread; Start/Stop/
// SampleOnce from one owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "src/common/mutex.h"
#include "src/metrics/exposition.h"

namespace gdp::metrics {

class Collector {
 public:
  virtual ~Collector() = default;
  // The `collector` label value, e.g. "gpu".
  virtual std::string Name() const = 0;
  // Appends this collector's families; an error drops them for this round.
  virtual absl::Status Collect(std::vector<MetricFamily>* out) = 0;
};

// The published text. Starts empty (a valid exposition with no samples).
class SnapshotStore {
 public:
  std::shared_ptr<const std::string> Get() const;
  void Set(std::string text);

 private:
  mutable Mutex mu_;
  std::shared_ptr<const std::string> text_ ABSL_GUARDED_BY(mu_) =
      std::make_shared<const std::string>();
};

class Sampler {
 public:
  struct Options {
    std::chrono::milliseconds interval{5000};
  };

  // Publishes into `store` (not owned, outlives the sampler).
  Sampler(Options options, std::vector<Collector*> collectors, SnapshotStore& store);
  ~Sampler();  // Stops.
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Starts the thread; its first round runs at once.
  void Start();
  // Stops and joins the thread (within one collector round). Idempotent.
  void Stop();
  // Runs one round on the caller's thread (tests; never while started).
  void SampleOnce();

  // Rounds published so far.
  uint64_t rounds() const { return rounds_.load(); }

 private:
  void Run(const std::stop_token& stop);

  const Options options_;
  const std::vector<Collector*> collectors_;
  SnapshotStore& store_;
  std::atomic<uint64_t> rounds_{0};
  std::vector<bool> failing_;  // per collector; the sampling thread's only
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread thread_;
};

}  // namespace gdp::metrics
