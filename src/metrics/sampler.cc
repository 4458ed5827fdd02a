#include "src/metrics/sampler.h"

#include <pthread.h>

#include "src/common/log.h"

namespace gdp::metrics {

std::shared_ptr<const std::string> SnapshotStore::Get() const {
  MutexLock lock(&mu_);
  return text_;
}

void SnapshotStore::Set(std::string text) {
  auto next = std::make_shared<const std::string>(std::move(text));
  MutexLock lock(&mu_);
  text_ = std::move(next);
}

Sampler::Sampler(Options options, std::vector<Collector*> collectors, SnapshotStore& store)
    : options_(options),
      collectors_(std::move(collectors)),
      store_(store),
      failing_(collectors_.size(), false) {}

Sampler::~Sampler() { Stop(); }

void Sampler::Start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

void Sampler::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  {
    std::lock_guard<std::mutex> lock(mu_);  // the waiter sees the stop or gets the notify
  }
  cv_.notify_all();
  thread_.join();
}

void Sampler::Run(const std::stop_token& stop) {
  ::pthread_setname_np(::pthread_self(), "gdp-metrics");  // as top -H and perf show it
  while (!stop.stop_requested()) {
    SampleOnce();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, stop, options_.interval, [] { return false; });
  }
}

void Sampler::SampleOnce() {
  std::vector<MetricFamily> families;
  MetricFamily duration{"gdp_collector_duration_seconds",
                        "How long the collector's last sampling round took, in seconds.",
                        MetricType::kGauge,
                        {}};
  MetricFamily success{"gdp_collector_success",
                       "1 when the collector's last sampling round succeeded, else 0.",
                       MetricType::kGauge,
                       {}};
  for (Collector* const& c : collectors_) {
    std::vector<MetricFamily> mine;
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = c->Collect(&mine);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    const std::string name = c->Name();
    duration.Add({{"collector", name}}, took.count());
    success.Add({{"collector", name}}, s.ok() ? 1 : 0);
    const size_t i = &c - collectors_.data();
    if (!s.ok()) {
      if (!failing_[i]) {
        log::Warn("metrics collector failed; its metrics are left out until it recovers",
                  {{"collector", name}, {"error", s.message()}});
      }
      failing_[i] = true;
      continue;
    }
    if (failing_[i]) log::Info("metrics collector recovered", {{"collector", name}});
    failing_[i] = false;
    for (MetricFamily& f : mine) families.push_back(std::move(f));
  }
  families.push_back(std::move(duration));
  families.push_back(std::move(success));
  store_.Set(Render(std::move(families)));
  ++rounds_;
}

}  // namespace gdp::metrics
