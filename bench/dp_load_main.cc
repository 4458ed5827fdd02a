// dp-load: a load and latency tool for kubelet device plugins. It speaks only
// the kubelet's device-plugin API v1beta1 over unix sockets (as a client of a
// plugin's socket, and as the Registration server on kubelet.sock), so it can
// drive any device plugin, not just ours. Everything plugin-specific (how to
// inject a fault, which command starts the plugin) comes in on the command line.
//
//   dp-load allocate --socket S [--sizes 1,8] [--runs 5] [--calls 2000] [--label envvar]
//       Allocate latency for each size, interleaved call by call with the floor:
//       GetDevicePluginOptions, a trivial unary call over the same transport.
//   dp-load load --socket S [--size 1] [--count N] [--concurrency C]
//       N Allocates from C threads as fast as they go (footprint under load, soak).
//   dp-load health --socket S --inject 'gpusim --root R xid --gpu {index} --xid 79'
//                  [--rounds N] [--devices K]
//       Runs the inject command for one device at a time and times until the
//       ListAndWatch update that marks it Unhealthy arrives; then waits for
//       every device to be Healthy again (one flap per device per round).
//   dp-load register --dir D --resource R [--starts K] [--restarts N] -- CMD ARGS...
//       Serves Registration on D/kubelet.sock, starts CMD K times and times each
//       start until the RegisterRequest arrives; then, with the last one running,
//       recreates kubelet.sock N times (deleting every socket, as a restarting
//       kubelet does) and times each re-registration.
//   dp-load scrape --url http://127.0.0.1:9101/metrics [--concurrency C] [--count N]
//       HTTP GET latency of a metrics endpoint ("not measured" when it is 404).
//   dp-load abuse --url http(s)://127.0.0.1:9101/healthz [--idle N] [--slow M] [--seconds S]
//                 [--scrape-url https://127.0.0.1:9101/metrics --token-file F]
//       Probe latency (a fresh connection every 100 ms) while N idle or
//       half-sent connections and M slow-loris clients are held open, and
//       optionally scrapers with a bearer token run alongside.
//   dp-load change --socket S --step 'CMD A' --step 'CMD B' [--rounds N] [--label L]
//                  [--pause-ms P]
//       Runs each step command in turn (each must change the number of devices
//       listed: a GPU added, removed, a MIG re-layout), P ms after the last
//       change was listed, and times until the ListAndWatch list with the new
//       count arrives.
//
// Each command prints rows of one Markdown table (| what | result | target |
// verdict |) on stdout; details go to stderr. Exit status 1 when a measurement
// could not be made (the plugin did not answer); a missed target is a row, not
// an error.
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "tests/kubelet_stub/kubelet_stub.h"

extern char** environ;

namespace gdp::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Latency samples in microseconds.
class Samples {
 public:
  void Add(double us) { v_.push_back(us); }
  void Add(Clock::duration d) { v_.push_back(Us(d)); }
  size_t size() const { return v_.size(); }
  double Quantile(double q) const {
    if (v_.empty()) return 0;
    std::vector<double> s = v_;
    std::sort(s.begin(), s.end());
    const size_t i = std::min(s.size() - 1, static_cast<size_t>(q * static_cast<double>(s.size())));
    return s[i];
  }
  double Median() const { return Quantile(0.5); }
  double P99() const { return Quantile(0.99); }
  double Max() const { return v_.empty() ? 0 : *std::max_element(v_.begin(), v_.end()); }

 private:
  std::vector<double> v_;
};

std::string Fmt(double us) {
  if (us >= 10000) return absl::StrFormat("%.1f ms", us / 1000);
  if (us >= 1000) return absl::StrFormat("%.2f ms", us / 1000);
  return absl::StrFormat("%.0f µs", us);
}

void Row(const std::string& what, const std::string& result, const std::string& target,
         const std::string& verdict) {
  std::printf("| %s | %s | %s | %s |\n", what.c_str(), result.c_str(), target.c_str(),
              verdict.c_str());
  std::fflush(stdout);
}

// "met (0.31 of the limit)" or "MISSED (1.4x the limit)".
std::string Verdict(double value, double limit) {
  if (value <= limit) return absl::StrFormat("met (%.2f of the limit)", value / limit);
  return absl::StrFormat("MISSED (%.1fx the limit)", value / limit);
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dp-load: %s\n", msg.c_str());
  return 1;
}

// --- child processes --------------------------------------------------------

// Starts argv with stdout/stderr appended to `log` (/dev/null when empty).
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const std::string out = log.empty() ? "/dev/null" : log;
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// Exit status, 128+signal, or -1.
int Reap(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

// Splits a command template on spaces and substitutes {index} and {id}.
std::vector<std::string> Expand(const std::string& tmpl, size_t index, const std::string& id) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(tmpl, ' ', absl::SkipEmpty())) {
    out.push_back(absl::StrReplaceAll(part, {{"{index}", std::to_string(index)}, {"{id}", id}}));
  }
  return out;
}

// A resident injector: writes "<index> <id>" lines to its stdin and reads one
// line back per injection, the CLOCK_MONOTONIC nanoseconds of the injection
// (steady_clock is CLOCK_MONOTONIC on Linux, so times compare across processes).
class Coprocess {
 public:
  explicit Coprocess(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
  }
  ~Coprocess() {
    if (to_ != nullptr) fclose(to_);
    if (from_ != nullptr) fclose(from_);
    if (pid_ > 0) Reap(pid_);
  }
  bool ok() const { return pid_ > 0 && to_ != nullptr && from_ != nullptr; }
  std::optional<Clock::time_point> Inject(size_t index, const std::string& id) {
    std::fprintf(to_, "%zu %s\n", index, id.c_str());
    std::fflush(to_);
    long long ns = 0;
    if (std::fscanf(from_, "%lld", &ns) != 1) return {};
    return Clock::time_point(std::chrono::nanoseconds(ns));
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// --- a ListAndWatch stream that timestamps every message --------------------

class TimedStream {
 public:
  explicit TimedStream(const std::string& socket)
      : channel_(grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials())),
        stub_(v1beta1::DevicePlugin::NewStub(channel_)) {
    reader_ = stub_->ListAndWatch(&ctx_, v1beta1::Empty());
    thread_ = std::thread([this] { Read(); });
  }
  ~TimedStream() {
    ctx_.TryCancel();
    thread_.join();
  }

  // Waits for the first list; the device IDs in its order.
  std::optional<std::vector<std::string>> WaitFirst(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_until(lock, deadline, [&] { return !ids_.empty() || finished_; })) return {};
    if (ids_.empty()) return {};
    return ids_;
  }

  // From now on, the first message that shows device i Unhealthy is timed.
  void Arm(size_t i) {
    std::lock_guard lock(mu_);
    armed_[i] = true;
    unhealthy_at_[i].reset();
  }
  std::optional<Clock::time_point> WaitUnhealthy(size_t i, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return unhealthy_at_[i].has_value() || finished_; });
    armed_[i] = false;
    return unhealthy_at_[i];
  }
  // Waits until the latest list shows every device Healthy.
  bool WaitAllHealthy(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return unhealthy_now_ == 0 || finished_; }) &&
           !finished_;
  }
  size_t messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // The device count of the latest list.
  size_t last_size() const {
    std::lock_guard lock(mu_);
    return sizes_.empty() ? 0 : sizes_.back().second;
  }
  // When the first list after message `after` arrived; nullopt at the deadline.
  std::optional<Clock::time_point> WaitAny(size_t after, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return sizes_.size() > after || finished_; });
    if (sizes_.size() > after) return sizes_[after].first;
    return std::nullopt;
  }
  // When the first list after message `after` whose device count is not
  // `old_size` arrived; nullopt at the deadline.
  std::optional<Clock::time_point> WaitSizeChange(size_t after, size_t old_size,
                                                  Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    std::optional<Clock::time_point> at;
    cv_.wait_until(lock, deadline, [&] {
      for (size_t i = after; i < sizes_.size(); ++i) {
        if (sizes_[i].second != old_size) {
          at = sizes_[i].first;
          return true;
        }
      }
      return finished_;
    });
    return at;
  }

 private:
  void Read() {
    v1beta1::ListAndWatchResponse r;
    while (reader_->Read(&r)) {
      const Clock::time_point now = Clock::now();
      std::lock_guard lock(mu_);
      ++messages_;
      sizes_.emplace_back(now, static_cast<size_t>(r.devices_size()));
      if (ids_.empty()) {
        for (const auto& d : r.devices()) {
          index_[d.id()] = ids_.size();
          ids_.push_back(d.id());
        }
        armed_.assign(ids_.size(), false);
        unhealthy_at_.assign(ids_.size(), std::nullopt);
      }
      unhealthy_now_ = 0;
      for (const auto& d : r.devices()) {
        if (d.health() == "Healthy") continue;
        ++unhealthy_now_;
        auto it = index_.find(d.id());
        if (it == index_.end()) continue;
        if (armed_[it->second] && !unhealthy_at_[it->second]) unhealthy_at_[it->second] = now;
      }
      cv_.notify_all();
    }
    grpc::Status st = reader_->Finish();
    std::lock_guard lock(mu_);
    finished_ = true;
    cv_.notify_all();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1beta1::DevicePlugin::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1beta1::ListAndWatchResponse>> reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ids_;
  std::map<std::string, size_t> index_;
  std::vector<bool> armed_;
  std::vector<std::optional<Clock::time_point>> unhealthy_at_;
  size_t unhealthy_now_ = 0;
  size_t messages_ = 0;
  std::vector<std::pair<Clock::time_point, size_t>> sizes_;  // per message: arrival, devices
  bool finished_ = false;
  std::thread thread_;
};

// The device IDs the plugin advertises (its first ListAndWatch list).
std::optional<std::vector<std::string>> DeviceIds(const std::string& socket) {
  TimedStream s(socket);
  return s.WaitFirst(Clock::now() + seconds(10));
}

// --- allocate ---------------------------------------------------------------

struct AllocateArgs {
  std::string socket;
  std::vector<int> sizes = {1, 8};
  int runs = 5;
  int calls = 2000;
  int warmup = 200;
  std::string label = "envvar";
  double max_ratio = 2.0;
};

std::string Describe(const v1beta1::AllocateResponse& r) {
  if (r.container_responses_size() == 0) return "empty";
  const auto& c = r.container_responses(0);
  return absl::StrFormat("envs=%d mounts=%d devices=%d annotations=%d cdi_devices=%d",
                         c.envs_size(), c.mounts_size(), c.devices_size(), c.annotations_size(),
                         c.cdi_devices_size());
}

int Allocate(const AllocateArgs& a) {
  auto ids = DeviceIds(a.socket);
  if (!ids) return Fail("no ListAndWatch list from " + a.socket);
  kubelet_stub::PluginClient client(a.socket);
  std::vector<v1beta1::AllocateRequest> reqs;
  for (int size : a.sizes) {
    if (size < 1 || static_cast<size_t>(size) > ids->size()) {
      return Fail(absl::StrFormat("size %d: the plugin has %d devices", size, ids->size()));
    }
    reqs.push_back(kubelet_stub::PluginClient::AllocateRequestFor(
        {std::vector<std::string>(ids->begin(), ids->begin() + size)}));
  }
  Samples floor;
  std::vector<Samples> alloc(reqs.size());
  std::vector<Samples> run_p99_ratio(reqs.size());
  v1beta1::DevicePluginOptions opts;
  std::vector<v1beta1::AllocateResponse> last(reqs.size());
  for (int run = 0; run < a.runs; ++run) {
    Samples run_floor;
    std::vector<Samples> run_alloc(reqs.size());
    for (int i = -a.warmup; i < a.calls; ++i) {
      // Interleaved call by call, so noise from other processes hits both alike.
      auto t0 = Clock::now();
      grpc::Status st = client.GetOptions(&opts);
      auto t1 = Clock::now();
      if (!st.ok()) return Fail("GetDevicePluginOptions: " + st.error_message());
      if (i >= 0) run_floor.Add(t1 - t0), floor.Add(t1 - t0);
      for (size_t k = 0; k < reqs.size(); ++k) {
        t0 = Clock::now();
        st = client.Allocate(reqs[k], &last[k]);
        t1 = Clock::now();
        if (!st.ok()) return Fail("Allocate: " + st.error_message());
        if (i >= 0) run_alloc[k].Add(t1 - t0), alloc[k].Add(t1 - t0);
      }
    }
    std::fprintf(stderr, "run %d: floor p50 %.0f p99 %.0f us", run, run_floor.Median(),
                 run_floor.P99());
    for (size_t k = 0; k < reqs.size(); ++k) {
      std::fprintf(stderr, "; allocate(%d) p50 %.0f p99 %.0f us", a.sizes[k], run_alloc[k].Median(),
                   run_alloc[k].P99());
      run_p99_ratio[k].Add(run_alloc[k].P99() / run_floor.P99());
    }
    std::fprintf(stderr, "\n");
  }
  Row(absl::StrFormat("floor: GetDevicePluginOptions (%s run)", a.label),
      absl::StrFormat("p50 %s, p99 %s (%d runs x %d calls)", Fmt(floor.Median()), Fmt(floor.P99()),
                      a.runs, a.calls),
      "-", "-");
  for (size_t k = 0; k < reqs.size(); ++k) {
    const double ratio = alloc[k].P99() / floor.P99();
    Row(absl::StrFormat("Allocate %d GPU%s, %s", a.sizes[k], a.sizes[k] > 1 ? "s" : "", a.label),
        absl::StrFormat("p50 %s (%.2fx floor), p99 %s (%.2fx floor; per-run p99 ratio %.2f-%.2f); "
                        "answer: %s",
                        Fmt(alloc[k].Median()), alloc[k].Median() / floor.Median(),
                        Fmt(alloc[k].P99()), ratio, run_p99_ratio[k].Quantile(0),
                        run_p99_ratio[k].Max(), Describe(last[k])),
        absl::StrFormat("p99 <= %.0fx floor", a.max_ratio), Verdict(ratio, a.max_ratio));
  }
  return 0;
}

// --- load -------------------------------------------------------------------

int Load(const std::string& socket, int size, long count, int concurrency) {
  auto ids = DeviceIds(socket);
  if (!ids) return Fail("no ListAndWatch list from " + socket);
  if (size < 1 || static_cast<size_t>(size) > ids->size()) return Fail("bad --size");
  std::atomic<long> next{0}, errors{0};
  const auto t0 = Clock::now();
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < concurrency; ++t) {
      threads.emplace_back([&, t] {
        kubelet_stub::PluginClient client(socket);
        // Each thread walks the device list so requests differ.
        size_t off = static_cast<size_t>(t) * static_cast<size_t>(size);
        v1beta1::AllocateResponse resp;
        while (next.fetch_add(1) < count) {
          std::vector<std::string> want;
          for (int k = 0; k < size; ++k) want.push_back((*ids)[(off + k) % ids->size()]);
          off += 1;
          if (!client.Allocate(kubelet_stub::PluginClient::AllocateRequestFor({want}), &resp)
                   .ok()) {
            errors.fetch_add(1);
          }
        }
      });
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  Row(absl::StrFormat("Allocate load: %ld x %d GPU, %d clients", count, size, concurrency),
      absl::StrFormat("%.0f calls/s over %.1f s, %ld errors", static_cast<double>(count) / secs,
                      secs, errors.load()),
      "no errors", errors.load() == 0 ? "met" : "MISSED");
  return errors.load() == 0 ? 0 : 1;
}

// --- health -----------------------------------------------------------------

int Health(const std::string& socket, const std::string& inject, const std::string& coprocess,
           int rounds, int max_devices, double limit_ms, milliseconds recover_timeout) {
  std::unique_ptr<Coprocess> injector;
  if (!coprocess.empty()) {
    injector = std::make_unique<Coprocess>(Expand(coprocess, 0, ""));
    if (!injector->ok()) return Fail("cannot start the inject coprocess: " + coprocess);
  }
  TimedStream stream(socket);
  auto ids = stream.WaitFirst(Clock::now() + seconds(10));
  if (!ids) return Fail("no ListAndWatch list from " + socket);
  const size_t n = max_devices > 0 ? std::min<size_t>(ids->size(), max_devices) : ids->size();
  if (!stream.WaitAllHealthy(Clock::now() + recover_timeout)) {
    return Fail("not every device is Healthy at the start");
  }
  Samples latency, inject_run, recovery;
  long missed = 0;
  const auto t_start = Clock::now();
  for (int round = 0; round < rounds; ++round) {
    const auto round_start = Clock::now();
    Clock::time_point last_unhealthy{};
    for (size_t i = 0; i < n; ++i) {
      stream.Arm(i);
      auto t0 = Clock::now();
      if (injector != nullptr) {
        auto at = injector->Inject(i, (*ids)[i]);
        if (!at) return Fail("the inject coprocess did not answer: " + coprocess);
        inject_run.Add(Clock::now() - t0);
        t0 = *at;
      } else {
        const pid_t pid = Spawn(Expand(inject, i, (*ids)[i]), "");
        if (pid < 0) return Fail("cannot start the inject command: " + inject);
        const int rc = Reap(pid);
        inject_run.Add(Clock::now() - t0);
        if (rc != 0) return Fail(absl::StrFormat("inject command for device %d exited %d", i, rc));
      }
      auto at = stream.WaitUnhealthy(i, Clock::now() + seconds(5));
      if (!at) {
        ++missed;
        continue;
      }
      latency.Add(*at - t0);
      last_unhealthy = *at;
    }
    if (!stream.WaitAllHealthy(Clock::now() + recover_timeout)) {
      return Fail(absl::StrFormat("round %d: devices still Unhealthy after %d ms", round,
                                  recover_timeout.count()));
    }
    recovery.Add(Clock::now() - last_unhealthy);
    if (round % 10 == 0) {
      std::fprintf(stderr, "round %d: %zu flaps in %.2f s, health p99 so far %.0f us\n", round, n,
                   std::chrono::duration<double>(Clock::now() - round_start).count(),
                   latency.P99());
    }
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  Row("Health: inject XID -> ListAndWatch update at the client",
      absl::StrFormat("p50 %s, p99 %s, max %s over %d flaps (%d rounds x %d devices, %.0f s); "
                      "timed from %s (its round trip p50 %s); %ld updates missing",
                      Fmt(latency.Median()), Fmt(latency.P99()), Fmt(latency.Max()), latency.size(),
                      rounds, n, total_s,
                      injector ? "the injection's own timestamp" : "the inject command's start",
                      Fmt(inject_run.Median()), missed),
      // Timed from a command's start, the number includes starting that
      // process: an upper bound, reported but not held to the target.
      injector ? absl::StrFormat("p99 < %.0f ms", limit_ms) : "- (upper bound)",
      missed > 0 ? "MISSED (updates lost)"
      : injector ? Verdict(latency.P99() / 1000, limit_ms)
                 : "-");
  Row("Health: last XID of a round -> all Healthy again (quiet period)",
      absl::StrFormat("p50 %s, p99 %s", Fmt(recovery.Median()), Fmt(recovery.P99())), "-", "-");
  return missed > 0 ? 1 : 0;
}

// --- change -----------------------------------------------------------------

// Runs each step command in turn, `rounds` times; each must change the
// number of devices the stream lists. Times from the command's start to the
// ListAndWatch list that shows the new count (an upper bound: it includes
// starting the command).
int Change(const std::string& socket, const std::vector<std::string>& steps,
           const std::vector<std::string>& step_labels, int rounds, const std::string& label,
           double limit_ms, int pause_ms) {
  TimedStream stream(socket);
  if (!stream.WaitFirst(Clock::now() + seconds(10))) {
    return Fail("no ListAndWatch list from " + socket);
  }
  struct Step {
    Samples list, first, run;
  };
  std::vector<Step> stats(steps.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < steps.size(); ++i) {
      const std::string& step = steps[i];
      // A pause first, so that each change finds the plugin settled after the
      // last one rather than still taking it in.
      if (pause_ms > 0) std::this_thread::sleep_for(milliseconds(pause_ms));
      const size_t before = stream.last_size();
      const size_t after = stream.messages();
      const auto t0 = Clock::now();
      const pid_t pid = Spawn(Expand(step, 0, ""), "");
      if (pid < 0) return Fail("cannot start: " + step);
      const int rc = Reap(pid);
      stats[i].run.Add(Clock::now() - t0);
      if (rc != 0) return Fail(absl::StrFormat("'%s' exited %d", step, rc));
      auto at = stream.WaitSizeChange(after, before, Clock::now() + seconds(30));
      if (!at) return Fail(absl::StrFormat("no new device list within 30 s after '%s'", step));
      stats[i].list.Add(*at - t0);
      // The first list that reflects the change at all (a GPU going away is
      // Unhealthy at once, before the list without it).
      if (auto any = stream.WaitAny(after, Clock::now())) stats[i].first.Add(*any - t0);
    }
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = stats[i];
    const std::string what = i < step_labels.size() ? step_labels[i] : steps[i];
    Row(absl::StrFormat("Node change -> ListAndWatch update: %s: %s", label, what),
        absl::StrFormat("first update p50 %s, p99 %s; the new device list p50 %s, p99 %s, max "
                        "%s; over %d changes, timed from the command's start (its own run p50 %s)",
                        Fmt(st.first.Median()), Fmt(st.first.P99()), Fmt(st.list.Median()),
                        Fmt(st.list.P99()), Fmt(st.list.Max()), st.list.size(),
                        Fmt(st.run.Median())),
        absl::StrFormat("p99 < %.0f ms", limit_ms), Verdict(st.first.P99() / 1000, limit_ms));
  }
  return 0;
}

// --- register ---------------------------------------------------------------

// CPU time and run-queue wait of every thread of a process we started, from
// /proc/<pid>/task/*/schedstat (nanoseconds): on a shared machine the wait
// says how much of a wall-clock latency was spent waiting for a CPU.
struct SchedTimes {
  double cpu_us = 0;
  double wait_us = 0;
};
SchedTimes Sched(pid_t pid) {
  SchedTimes t;
  const std::string dir = absl::StrFormat("/proc/%d/task", pid);
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(task.path() / "schedstat");
    unsigned long long cpu = 0, wait = 0;
    if (in >> cpu >> wait) {
      t.cpu_us += static_cast<double>(cpu) / 1000;
      t.wait_us += static_cast<double>(wait) / 1000;
    }
  }
  return t;
}

int Register(const std::string& dir, const std::string& resource, int starts, int restarts,
             const std::vector<std::string>& cmd, const std::string& log, double start_limit_ms,
             double restart_limit_ms) {
  if (cmd.empty()) return Fail("register needs the plugin command after --");
  kubelet_stub::KubeletStub stub(dir);
  if (absl::Status s = stub.Start(); !s.ok()) return Fail(std::string(s.message()));
  Samples start_lat, restart_lat, start_cpu, start_wait;
  pid_t pid = -1;
  size_t regs = 0;
  for (int k = 0; k < starts; ++k) {
    const auto t0 = Clock::now();
    pid = Spawn(cmd, log);
    if (pid < 0) return Fail("cannot start " + cmd[0]);
    if (!stub.WaitForRegistration(resource, t0 + seconds(20), regs + 1)) {
      kill(pid, SIGKILL);
      Reap(pid);
      return Fail(absl::StrFormat("start %d: %s did not register %s within 20 s; see %s", k, cmd[0],
                                  resource, log));
    }
    start_lat.Add(Clock::now() - t0);
    const SchedTimes st = Sched(pid);
    start_cpu.Add(st.cpu_us);
    start_wait.Add(st.wait_us);
    ++regs;
    if (k + 1 < starts) {
      kill(pid, SIGTERM);
      Reap(pid);
    }
  }
  for (int k = 0; k < restarts; ++k) {
    stub.Stop(kubelet_stub::KubeletStub::StopMode::kRemoveAllSockets);
    const auto t0 = Clock::now();
    if (absl::Status s = stub.Start(); !s.ok()) return Fail(std::string(s.message()));
    if (!stub.WaitForRegistration(resource, t0 + seconds(10), regs + 1)) {
      kill(pid, SIGKILL);
      Reap(pid);
      return Fail(absl::StrFormat("restart %d: no re-registration within 10 s; see %s", k, log));
    }
    restart_lat.Add(Clock::now() - t0);
    ++regs;
  }
  kill(pid, SIGTERM);
  const int rc = Reap(pid);
  if (starts > 0) {
    Row("Start to registered (kubelet stand-in)",
        absl::StrFormat("p50 %s, p99 %s, max %s over %d starts; the plugin's own CPU time p50 %s, "
                        "its threads' wait for a CPU p50 %s (p99 %s)",
                        Fmt(start_lat.Median()), Fmt(start_lat.P99()), Fmt(start_lat.Max()), starts,
                        Fmt(start_cpu.Median()), Fmt(start_wait.Median()), Fmt(start_wait.P99())),
        absl::StrFormat("< %.0f ms", start_limit_ms),
        Verdict(start_lat.P99() / 1000, start_limit_ms));
  }
  if (restarts > 0) {
    Row("Re-registration after kubelet.sock is recreated",
        absl::StrFormat("p50 %s, p99 %s, max %s over %d restarts", Fmt(restart_lat.Median()),
                        Fmt(restart_lat.P99()), Fmt(restart_lat.Max()), restarts),
        absl::StrFormat("p99 < %.0f ms", restart_limit_ms),
        Verdict(restart_lat.P99() / 1000, restart_limit_ms));
  }
  if (rc != 0) std::fprintf(stderr, "dp-load: the plugin exited %d on SIGTERM\n", rc);
  return 0;
}

// --- scrape -----------------------------------------------------------------

struct Url {
  std::string host;
  int port = 0;
  std::string path;
  bool tls = false;  // https
};

// http(s)://host:port/path (the path "/" when absent).
Url ParseUrl(const std::string& url) {
  const std::string_view rest = std::string_view(url).substr(url.find("://") + 3);
  const size_t slash = rest.find('/');
  const std::string hostport(rest.substr(0, slash));
  const size_t colon = hostport.rfind(':');
  return {hostport.substr(0, colon), std::stoi(hostport.substr(colon + 1)),
          slash == std::string_view::npos ? "/" : std::string(rest.substr(slash)),
          url.rfind("https://", 0) == 0};
}

// A client for the URL's scheme, host and port; a bench tool trusts any certificate.
std::unique_ptr<httplib::Client> ClientFor(const Url& u, const std::string& token = "") {
  auto c = std::make_unique<httplib::Client>(
      absl::StrFormat("%s://%s:%d", u.tls ? "https" : "http", u.host, u.port));
  if (u.tls) c->enable_server_certificate_verification(false);
  c->set_connection_timeout(5);
  c->set_read_timeout(5);
  if (!token.empty()) c->set_bearer_token_auth(token);
  return c;
}

int Scrape(const std::string& url, int concurrency, int count, const std::string& label,
           double limit_ms) {
  const auto [host, port, path, tls] = ParseUrl(url);
  {
    httplib::Client probe(host, port);
    auto res = probe.Get(path.c_str());
    if (!res) return Fail("cannot GET " + url);
    if (res->status == 404) {
      Row("Metrics scrape, " + label, "not measured: /metrics not in this build (404)",
          absl::StrFormat("p99 < %.0f ms at 8 GPUs", limit_ms), "not measured");
      return 0;
    }
  }
  std::mutex mu;
  Samples lat;
  size_t bytes = 0;
  std::atomic<int> next{0}, errors{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < concurrency; ++t) {
      threads.emplace_back([&] {
        httplib::Client http(host, port);
        http.set_keep_alive(true);
        while (next.fetch_add(1) < count) {
          const auto t0 = Clock::now();
          auto res = http.Get(path.c_str());
          const auto d = Clock::now() - t0;
          std::lock_guard lock(mu);
          if (!res || res->status != 200) {
            errors.fetch_add(1);
            continue;
          }
          lat.Add(d);
          bytes = res->body.size();
        }
      });
    }
  }
  Row("Metrics scrape, " + label,
      absl::StrFormat("p50 %s, p99 %s, max %s over %d scrapes, %zu bytes, %d errors",
                      Fmt(lat.Median()), Fmt(lat.P99()), Fmt(lat.Max()), lat.size(), bytes,
                      errors.load()),
      absl::StrFormat("p99 < %.0f ms", limit_ms), Verdict(lat.P99() / 1000, limit_ms));
  return errors.load() == 0 ? 0 : 1;
}

// --- abuse ------------------------------------------------------------------

// A non-blocking TCP connection to 127.0.0.1-style host:port, or -1.
int ConnectTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    close(fd);
    freeaddrinfo(found);
    return -1;
  }
  freeaddrinfo(found);
  return fd;
}

// GET `path` on a new connection; the time to the whole answer, or nullopt
// unless it is a 200 within 5 s. Over TLS, the handshake is part of the time.
std::optional<Clock::duration> Probe(const Url& u) {
  const auto& [host, port, path, tls] = u;
  const auto t0 = Clock::now();
  if (tls) {
    auto res = ClientFor(u)->Get(path.c_str());
    if (!res || res->status != 200) return std::nullopt;
    return Clock::now() - t0;
  }
  const int fd = ConnectTcp(host, port);
  if (fd < 0) return std::nullopt;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  std::string out;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[1024];
    for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;)
      out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (out.rfind("HTTP/1.1 200", 0) != 0) return std::nullopt;
  return Clock::now() - t0;
}

// Holds `idle` connections that send nothing or part of a request and
// `slow` ones that send a header byte a second, reopening any the server
// closes (at most `reopen_per_s` a second), while probing `path` every 100 ms
// on a fresh connection, for `seconds`.
// With `scrape.url`: `scrape.scrapers` threads also GET it every
// `scrape.every_ms`, each on a new connection with the token, and the row says
// how many reviews the daemon made for them (from its own counters).
struct AbuseScrapes {
  std::string url;
  std::string token_file;
  int scrapers = 4;
  int every_ms = 1000;
};

// The value of the sample `name` (with its labels, as written) in an exposition; -1 if absent.
double SampleValue(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + name.size() + 2, nullptr);
}

int Abuse(const std::string& url, int idle, int slow, int reopen_per_s, int duration_s,
          double limit_ms, const AbuseScrapes& scrape) {
  const Url target = ParseUrl(url);
  const auto& [host, port, path, tls] = target;
  rlimit fds{};
  getrlimit(RLIMIT_NOFILE, &fds);
  fds.rlim_cur = fds.rlim_max;
  setrlimit(RLIMIT_NOFILE, &fds);
  if (!Probe(target)) return Fail("cannot GET " + url);
  std::string token;
  if (!scrape.token_file.empty()) {
    std::ifstream in(scrape.token_file);
    std::getline(in, token);
    if (token.empty()) return Fail("no token in " + scrape.token_file);
  }

  std::atomic<bool> done{false};
  std::atomic<long> reopened{0};
  std::thread attacker([&] {
    // Slot i: idle for i < idle (a third send nothing, a third half a request
    // line, a third all but the blank line), slow-loris after.
    const int total = idle + slow;
    std::vector<int> fd(static_cast<size_t>(total), -1);
    auto open = [&](int i) {
      fd[i] = ConnectTcp(host, port);
      if (fd[i] < 0) return;
      fcntl(fd[i], F_SETFL, O_NONBLOCK);
      const char* part = i >= idle    ? "GET / HTTP/1.1\r\nX-Slow: "
                         : i % 3 == 0 ? ""
                         : i % 3 == 1 ? "GET /hea"
                                      : "GET /healthz HTTP/1.1\r\n";
      if (*part != '\0') send(fd[i], part, std::strlen(part), MSG_NOSIGNAL);
    };
    for (int i = 0; i < total; ++i) open(i);
    auto next_trickle = Clock::now();
    const auto start = Clock::now();
    while (!done) {
      std::vector<pollfd> p;
      for (int i = 0; i < total; ++i) p.push_back({fd[i], POLLIN, 0});
      poll(p.data(), p.size(), 100);
      // Reopen what the server closed, at most reopen_per_s a second so far.
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      long budget = static_cast<long>(elapsed * reopen_per_s) - reopened.load();
      if (budget <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      for (int i = 0; i < total; ++i) {
        char c;
        const bool closed = fd[i] < 0 || ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
                                          recv(fd[i], &c, 1, MSG_DONTWAIT) <= 0);
        if (!closed || budget <= 0) continue;
        if (fd[i] >= 0) close(fd[i]);
        open(i);
        --budget;
        ++reopened;
      }
      if (Clock::now() >= next_trickle) {
        for (int i = idle; i < total; ++i) {
          if (fd[i] >= 0) send(fd[i], "x", 1, MSG_NOSIGNAL);
        }
        next_trickle += std::chrono::seconds(1);
      }
    }
    for (int f : fd) {
      if (f >= 0) close(f);
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the connections are up
  const auto end = Clock::now() + std::chrono::seconds(duration_s);
  std::atomic<long> scrapes_ok{0}, scrapes_failed{0};
  std::vector<std::jthread> scrapers;
  if (!scrape.url.empty()) {
    const Url su = ParseUrl(scrape.url);
    for (int s = 0; s < scrape.scrapers; ++s) {
      scrapers.emplace_back([&, su] {
        for (auto t = Clock::now(); t < end; t += std::chrono::milliseconds(scrape.every_ms)) {
          auto res = ClientFor(su, token)->Get(su.path.c_str());
          (res && res->status == 200 ? scrapes_ok : scrapes_failed).fetch_add(1);
          std::this_thread::sleep_until(t + std::chrono::milliseconds(scrape.every_ms));
        }
      });
    }
  }
  Samples lat;
  int failed = 0;
  while (Clock::now() < end) {
    const auto t = Clock::now();
    if (auto d = Probe(target)) {
      lat.Add(*d);
    } else {
      ++failed;
    }
    std::this_thread::sleep_until(t + std::chrono::milliseconds(100));
  }
  done = true;
  attacker.join();
  scrapers.clear();  // joined
  std::string scraped;
  if (!scrape.url.empty()) {
    // The daemon's counters are sampled: give it a round (the bench samples every 500 ms).
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    const Url su = ParseUrl(scrape.url);
    auto res = ClientFor(su, token)->Get(su.path.c_str());
    const std::string text = res && res->status == 200 ? "\n" + res->body : "";
    scraped = absl::StrFormat(
        "; alongside, %ld scrapes of %s with a bearer token (%ld failed), which cost %.0f "
        "TokenReviews and %.0f SubjectAccessReviews (%.0f answered from the cache)",
        scrapes_ok.load(), su.path, scrapes_failed.load(),
        SampleValue(text, "gdp_http_auth_reviews_total{review=\"token\"}"),
        SampleValue(text, "gdp_http_auth_reviews_total{review=\"access\"}"),
        SampleValue(text, "gdp_http_auth_cache_hits_total"));
  }
  Row(absl::StrFormat("%s%s under abuse: %d idle or half-sent connections and %d slow-loris "
                      "clients (each reopened when closed, at most %d/s) for %d s",
                      path, tls ? " over TLS (a new connection and handshake per probe)" : "", idle,
                      slow, reopen_per_s, duration_s),
      absl::StrFormat("p50 %s, p99 %s, max %s over %zu probes, %d failed; %ld connections "
                      "reopened after the server closed them%s",
                      Fmt(lat.Median()), Fmt(lat.P99()), Fmt(lat.Max()), lat.size(), failed,
                      reopened.load(), scraped),
      absl::StrFormat("every probe answered, max < %.0f ms", limit_ms),
      failed == 0 ? Verdict(lat.Max() / 1000, limit_ms) : "**missed**");
  return 0;
}

}  // namespace
}  // namespace gdp::bench

int main(int argc, char** argv) {
  using namespace gdp::bench;
  CLI::App app{"dp-load: latency and load for kubelet device plugins (device-plugin API only)"};
  app.require_subcommand(1);

  AllocateArgs aa;
  auto* alloc = app.add_subcommand("allocate", "Allocate latency against the floor");
  alloc->add_option("--socket", aa.socket, "the plugin's socket")->required();
  alloc->add_option("--sizes", aa.sizes, "devices per request")->delimiter(',');
  alloc->add_option("--runs", aa.runs, "repeated runs");
  alloc->add_option("--calls", aa.calls, "calls of each kind per run");
  alloc->add_option("--warmup", aa.warmup, "unmeasured calls at the start of each run");
  alloc->add_option("--label", aa.label, "what the plugin is configured with (for the table)");
  alloc->add_option("--max-ratio", aa.max_ratio, "target: Allocate p99 / floor p99");

  std::string socket;
  int size = 1, concurrency = 1;
  long count = 10000;
  auto* load = app.add_subcommand("load", "Allocates as fast as they go");
  load->add_option("--socket", socket, "the plugin's socket")->required();
  load->add_option("--size", size, "devices per request");
  load->add_option("--count", count, "total Allocate calls");
  load->add_option("--concurrency", concurrency, "client threads");

  std::string inject;
  int rounds = 10, max_devices = 0;
  double health_limit_ms = 20;
  int recover_timeout_s = 30;
  auto* health = app.add_subcommand("health", "fault injected -> ListAndWatch update");
  health->add_option("--socket", socket, "the plugin's socket")->required();
  std::string coprocess;
  auto* inject_opt = health->add_option(
      "--inject", inject, "command marking one device unhealthy; {index} and {id} are substituted");
  auto* coprocess_opt = health->add_option(
      "--inject-coprocess", coprocess,
      "resident injector: reads '<index> <id>' lines, answers the CLOCK_MONOTONIC ns of each "
      "injection");
  inject_opt->excludes(coprocess_opt);
  health->add_option("--rounds", rounds, "rounds (each flaps every device once)");
  health->add_option("--devices", max_devices, "flap only the first N devices (0: all)");
  health->add_option("--limit-ms", health_limit_ms, "target p99 in ms");
  health->add_option("--recover-timeout", recover_timeout_s, "seconds to wait for recovery");

  std::vector<std::string> steps;
  std::string change_label;
  double change_limit_ms = 100;
  int change_pause_ms = 0;
  auto* change = app.add_subcommand("change", "node change -> ListAndWatch update");
  change->add_option("--socket", socket, "the plugin's socket")->required();
  change->add_option("--step", steps, "a command that changes the device count (repeatable)")
      ->required();
  std::vector<std::string> step_labels;
  change->add_option("--step-label", step_labels, "what each step does, for the table");
  change->add_option("--rounds", rounds, "times to run every step");
  change->add_option("--label", change_label, "what changes, for the table");
  change->add_option("--limit-ms", change_limit_ms, "target p99 in ms");
  change->add_option("--pause-ms", change_pause_ms, "pause before each step");

  std::string dir, resource = "nvidia.com/gpu", log;
  int starts = 10, restarts = 20;
  double start_limit_ms = 100, restart_limit_ms = 200;
  std::vector<std::string> cmd;
  auto* reg = app.add_subcommand("register", "start-to-registered and re-registration");
  reg->add_option("--dir", dir, "plugin directory (kubelet.sock is served there)")->required();
  reg->add_option("--resource", resource, "resource name to wait for");
  reg->add_option("--starts", starts, "plugin starts to time");
  reg->add_option("--restarts", restarts, "kubelet.sock recreations to time");
  reg->add_option("--log", log, "where the plugin's output goes");
  reg->add_option("--start-limit-ms", start_limit_ms, "target");
  reg->add_option("--restart-limit-ms", restart_limit_ms, "target");
  reg->add_option("cmd", cmd, "the plugin command")->required();

  std::string url, label;
  int scrapes = 500;
  double scrape_limit_ms = 10;
  auto* scrape = app.add_subcommand("scrape", "HTTP GET latency of a metrics endpoint");
  scrape->add_option("--url", url, "http://host:port/metrics")->required();
  scrape->add_option("--concurrency", concurrency, "concurrent scrapers");
  scrape->add_option("--count", scrapes, "total scrapes");
  scrape->add_option("--label", label, "what is being scraped (for the table)");
  scrape->add_option("--limit-ms", scrape_limit_ms, "target p99 in ms");

  int idle = 1000, slow = 50, reopen_per_s = 500, abuse_seconds = 60;
  double abuse_limit_ms = 50;
  auto* abuse = app.add_subcommand(
      "abuse", "/healthz latency while idle, half-sent and slow-loris connections are held");
  abuse->add_option("--url", url, "http://host:port/healthz")->required();
  abuse->add_option("--idle", idle, "idle or half-sent connections held");
  abuse->add_option("--slow", slow, "slow-loris connections (a header byte a second)");
  abuse->add_option("--reopen-per-s", reopen_per_s, "reopen rate of closed connections");
  abuse->add_option("--seconds", abuse_seconds, "how long");
  abuse->add_option("--limit-ms", abuse_limit_ms, "target max probe latency in ms");
  AbuseScrapes abuse_scrapes;
  abuse->add_option("--scrape-url", abuse_scrapes.url,
                    "also scrape this URL (https://host:port/metrics) all along");
  abuse->add_option("--token-file", abuse_scrapes.token_file,
                    "the scrapes' bearer token (the file's first line)");
  abuse->add_option("--scrapers", abuse_scrapes.scrapers, "concurrent scrapers");
  abuse->add_option("--scrape-every-ms", abuse_scrapes.every_ms, "each scraper's interval");

  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (*alloc) return Allocate(aa);
  if (*load) return Load(socket, size, count, concurrency);
  if (*health) {
    if (inject.empty() == coprocess.empty())
      return Fail("health needs --inject or --inject-coprocess");
    return Health(socket, inject, coprocess, rounds, max_devices, health_limit_ms,
                  std::chrono::seconds(recover_timeout_s));
  }
  if (*reg) {
    return Register(dir, resource, starts, restarts, cmd, log, start_limit_ms, restart_limit_ms);
  }
  if (*scrape) return Scrape(url, concurrency, scrapes, label, scrape_limit_ms);
  if (*abuse) {
    return Abuse(url, idle, slow, reopen_per_s, abuse_seconds, abuse_limit_ms, abuse_scrapes);
  }
  if (*change)
    return Change(socket, steps, step_labels, rounds, change_label, change_limit_ms,
                  change_pause_ms);
  return 2;
}
