#include "src/mps/supervisor.h"

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/common/log.h"

namespace gdp::mps {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string Trim(const std::string& s) { return std::string(absl::StripAsciiWhitespace(s)); }

// Stop-aware pause while polling another process's files.
void Pause(const std::stop_token& stop, milliseconds d) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, d, [] { return false; });
}

// "2048M", "2048 MB", "2G" -> MiB; "N/A", "0" -> 0; nullopt when unparseable.
std::optional<uint64_t> ParseMemLimitMiB(const std::string& text) {
  std::string t = absl::AsciiStrToUpper(Trim(text));
  if (t == "N/A" || t == "0" || t == "NONE") return 0;
  size_t digits = 0;
  while (digits < t.size() && absl::ascii_isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  uint64_t n = 0;
  if (digits == 0 || !absl::SimpleAtoi(t.substr(0, digits), &n)) return std::nullopt;
  std::string unit = Trim(t.substr(digits));
  if (unit == "M" || unit == "MB" || unit == "MIB") return n;
  if (unit == "G" || unit == "GB" || unit == "GIB") return n * 1024;
  return std::nullopt;
}

}  // namespace

std::string PipeDirectory(const SupervisorOptions& options, const std::string& uuid) {
  return absl::StrCat(options.pipe_root, "/", uuid, "/pipe");
}
std::string LogDirectory(const SupervisorOptions& options, const std::string& uuid) {
  return absl::StrCat(options.log_root, "/", uuid, "/log");
}

absl::StatusOr<std::string> FindControlBinary(const FileSystem& fs, const std::string& driver_root,
                                              const std::string& configured) {
  auto is_file = [&](const std::string& p) {
    auto info = fs.Stat(p);
    return info.ok() &&
           (info->type == FileInfo::Type::kRegular || info->type == FileInfo::Type::kSymlink);
  };
  if (!configured.empty()) {
    if (is_file(configured)) return configured;
    return absl::NotFoundError(absl::StrCat(
        kControlBinaryName, " not found at ", configured,
        " (the configured path); fix the path, or leave it empty to search the driver root"));
  }
  std::vector<std::string> tried;
  for (const char* dir : {"/usr/bin", "/bin"}) {
    tried.push_back(JoinRoot(driver_root, absl::StrCat(dir, "/", kControlBinaryName)));
  }
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    tried.push_back(absl::StrCat(dir, "/", kControlBinaryName));
  }
  std::vector<std::string> unique;
  for (const auto& p : tried) {
    if (std::find(unique.begin(), unique.end(), p) == unique.end()) unique.push_back(p);
  }
  for (const auto& p : unique) {
    if (is_file(p)) return p;
  }
  return absl::NotFoundError(absl::StrCat(
      kControlBinaryName, " not found; looked in ", absl::StrJoin(unique, ", "),
      ". MPS sharing needs the driver's MPS control program (package nvidia-compute-utils, or the "
      "containerised driver's root mounted at the driver root); install it or configure its path"));
}

absl::Status CheckComputeMode(nvml::NvmlApi& nvml, const GpuSpec& gpu) {
  const std::string subject = absl::StrCat("GPU ", gpu.index, " (", gpu.uuid, ")");
  nvmlDevice_t device = nullptr;
  nvmlReturn_t r = nvml.DeviceGetHandleByUUID(gpu.uuid.c_str(), &device);
  if (r != NVML_SUCCESS) return nvml::NvmlStatus(nvml, r, "nvmlDeviceGetHandleByUUID", subject);
  nvmlComputeMode_t mode = NVML_COMPUTEMODE_DEFAULT;
  r = nvml.DeviceGetComputeMode(device, &mode);
  if (r == NVML_ERROR_FUNCTION_NOT_FOUND || r == NVML_ERROR_NOT_SUPPORTED) {
    log::Debug("compute mode unknown; starting MPS anyway", {{"gpu", gpu.uuid}});
    return absl::OkStatus();
  }
  if (r != NVML_SUCCESS) return nvml::NvmlStatus(nvml, r, "nvmlDeviceGetComputeMode", subject);
  const std::string fix =
      absl::StrCat("; set EXCLUSIVE_PROCESS (recommended for MPS) with `nvidia-smi -i ", gpu.uuid,
                   " -c EXCLUSIVE_PROCESS`, or take the GPU out of sharing.mps");
  switch (mode) {
    case NVML_COMPUTEMODE_EXCLUSIVE_PROCESS:
      return absl::OkStatus();
    case NVML_COMPUTEMODE_DEFAULT:
      log::Info(
          "GPU compute mode is DEFAULT: processes outside MPS can also use it; "
          "EXCLUSIVE_PROCESS is recommended for MPS",
          {{"gpu", gpu.uuid}});
      return absl::OkStatus();
    case NVML_COMPUTEMODE_PROHIBITED:
      return absl::FailedPreconditionError(
          absl::StrCat(subject,
                       " is in compute mode PROHIBITED, which allows no CUDA context, so no MPS "
                       "server can run on it",
                       fix));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(subject, " is in compute mode ", static_cast<int>(mode),
                       " (EXCLUSIVE_THREAD or unknown), in which MPS cannot run", fix));
  }
}

Supervisor::Supervisor(SupervisorOptions options, HealthCallback on_health, Os& os,
                       const FileSystem& fs, nvml::NvmlApi* nvml)
    : options_(std::move(options)),
      on_health_(std::move(on_health)),
      os_(os),
      fs_(fs),
      nvml_(nvml) {
  {
    MutexLock lock(&mu_);
    next_health_check_ = Clock::now() + options_.health_interval;
  }
  watcher_ = std::jthread([this](const std::stop_token& stop) { Watch(stop); });
}

Supervisor::~Supervisor() { Stop(); }

std::string Supervisor::Describe(const GpuSpec& gpu) const {
  return absl::StrCat("GPU ", gpu.index, " (", gpu.uuid, ")");
}

std::map<std::string, std::string> Supervisor::Environment(const GpuSpec& gpu, bool daemon) const {
  std::map<std::string, std::string> env = options_.extra_env;
  env["CUDA_MPS_PIPE_DIRECTORY"] = PipeDirectory(options_, gpu.uuid);
  env["CUDA_MPS_LOG_DIRECTORY"] = LogDirectory(options_, gpu.uuid);
  if (daemon) env["CUDA_VISIBLE_DEVICES"] = gpu.uuid;
  return env;
}

int Supervisor::ReadPid(const GpuSpec& gpu) const {
  auto text = fs_.ReadFile(absl::StrCat(PipeDirectory(options_, gpu.uuid), "/", kPidFileName));
  int pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(Trim(*text), &pid) || pid <= 0) return 0;
  return pid;
}

std::string Supervisor::LogTail(const GpuSpec& gpu) const {
  const std::string path = absl::StrCat(LogDirectory(options_, gpu.uuid), "/", kControlLogName);
  auto text = fs_.ReadFile(path);
  if (!text.ok() || Trim(*text).empty()) return absl::StrCat("; ", path, " is empty or missing");
  std::vector<std::string> lines = absl::StrSplit(Trim(*text), '\n');
  size_t first =
      lines.size() > options_.log_tail_lines ? lines.size() - options_.log_tail_lines : 0;
  std::vector<std::string> tail(lines.begin() + static_cast<std::ptrdiff_t>(first), lines.end());
  return absl::StrCat("; last lines of ", path, ": ", absl::StrJoin(tail, " | "));
}

absl::StatusOr<std::string> Supervisor::Control(const GpuSpec& gpu, const std::string& command) {
  Command c{
      {options_.control_binary}, Environment(gpu, false), command + "\n", options_.command_timeout};
  auto r = os_.Run(c);
  if (!r.ok()) {
    return absl::Status(r.status().code(),
                        absl::StrCat("MPS control client for ", Describe(gpu), ", command `",
                                     command, "`: ", r.status().message()));
  }
  if (r->exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("MPS control client for ", Describe(gpu),
                                               ", command `", command, "`, exited with ",
                                               r->exit_code, ": ", Trim(r->output)));
  }
  return Trim(r->output);
}

absl::Status Supervisor::SetLimits(const GpuSpec& gpu) {
  std::string mem_answer, pct_answer;
  if (gpu.pinned_memory_limit_mib > 0) {
    // Device 0: the daemon sees only this GPU (CUDA_VISIBLE_DEVICES=<uuid>).
    auto out = Control(gpu, absl::StrCat("set_default_device_pinned_mem_limit 0 ",
                                         gpu.pinned_memory_limit_mib, "M"));
    if (!out.ok()) return out.status();
    mem_answer = *out;
  }
  if (gpu.active_thread_percentage > 0) {
    auto out = Control(
        gpu, absl::StrCat("set_default_active_thread_percentage ", gpu.active_thread_percentage));
    if (!out.ok()) return out.status();
    pct_answer = *out;
  }
  // Read back: proves the daemon answers, and holds what was sent.
  auto pct = Control(gpu, "get_default_active_thread_percentage");
  if (!pct.ok()) return pct.status();
  double value = 0;
  if (!absl::SimpleAtod(*pct, &value)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the MPS control daemon for ", Describe(gpu),
                     " answered get_default_active_thread_percentage with '", *pct,
                     "', not a number", LogTail(gpu)));
  }
  if (gpu.active_thread_percentage > 0 && std::fabs(value - gpu.active_thread_percentage) > 0.05) {
    return absl::FailedPreconditionError(
        absl::StrCat("the MPS control daemon for ", Describe(gpu),
                     " did not take active thread percentage ", gpu.active_thread_percentage,
                     ": it reads back ", *pct, "; it answered the set with '", pct_answer, "'"));
  }
  if (gpu.pinned_memory_limit_mib > 0) {
    auto mem = Control(gpu, "get_default_device_pinned_mem_limit 0");
    if (!mem.ok()) return mem.status();
    auto mib = ParseMemLimitMiB(*mem);
    if (!mib) {
      log::Warn("cannot parse the pinned memory limit the MPS daemon reads back; not verified",
                {{"gpu", gpu.uuid}, {"answer", *mem}});
    } else if (*mib != gpu.pinned_memory_limit_mib) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the MPS control daemon for ", Describe(gpu), " did not take pinned memory limit ",
          gpu.pinned_memory_limit_mib, "M: it reads back '", *mem, "'; it answered the set with '",
          mem_answer, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Supervisor::StartDaemon(const GpuSpec& gpu, const std::stop_token& stop) {
  if (nvml_ != nullptr) {
    if (absl::Status st = CheckComputeMode(*nvml_, gpu); !st.ok()) return st;
  }
  const std::string& binary = options_.control_binary;
  if (auto info = fs_.Stat(binary); !info.ok()) {
    return absl::NotFoundError(
        absl::StrCat("MPS control program ", binary.empty() ? "(none configured)" : binary,
                     " not found (", info.status().message(), "); MPS sharing needs the driver's ",
                     kControlBinaryName, ": install it on the host or configure its path"));
  }
  const std::string pipe_dir = PipeDirectory(options_, gpu.uuid);
  const std::string log_dir = LogDirectory(options_, gpu.uuid);
  for (const std::string& dir : {pipe_dir, log_dir}) {
    absl::Status st = os_.MakeDirectories(dir);
    if (st.ok()) st = os_.CheckWritable(dir);
    if (!st.ok()) {
      return absl::Status(
          st.code(),
          absl::StrCat("cannot prepare the MPS directory for ", Describe(gpu), ": ", st.message(),
                       "; the plugin needs write access there (mount the host's ",
                       dir == pipe_dir ? options_.pipe_root : options_.log_root,
                       " read-write, and run as root)"));
    }
  }
  // A daemon left by an earlier run of the plugin holds the pipe directory:
  // quit it, so that the one started now has this run's limits.
  if (int old = ReadPid(gpu); old > 0 && os_.ProcessAlive(old)) {
    log::Info("quitting an MPS control daemon left by an earlier run",
              {{"gpu", gpu.uuid}, {"pid", old}});
    StopDaemon(gpu, old);
  }

  auto r = os_.Run(Command{{binary, "-d"}, Environment(gpu, true), "", options_.command_timeout});
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrCat("cannot start the MPS control daemon for ",
                                                        Describe(gpu), ": ", r.status().message()));
  }
  if (r->exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the MPS control daemon for ", Describe(gpu), " failed to start (", binary,
                     " -d exited with ", r->exit_code, "): ", Trim(r->output), LogTail(gpu)));
  }

  const std::string socket = absl::StrCat(pipe_dir, "/", kControlSocketName);
  const auto deadline = Clock::now() + options_.ready_timeout;
  int pid = 0;
  for (;;) {
    pid = ReadPid(gpu);
    if (pid > 0 && fs_.Exists(socket)) break;
    if (Clock::now() >= deadline || stop.stop_requested()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the MPS control daemon for ", Describe(gpu), " did not create its socket ", socket,
          " and pid file within ", options_.ready_timeout.count(), " ms", LogTail(gpu)));
    }
    Pause(stop, milliseconds(10));
  }
  if (!os_.ProcessAlive(pid)) {
    return absl::UnavailableError(absl::StrCat("the MPS control daemon for ", Describe(gpu),
                                               " (pid ", pid, ") exited right after starting",
                                               LogTail(gpu)));
  }
  if (absl::Status st = SetLimits(gpu); !st.ok()) {
    StopDaemon(gpu, pid);
    return st;
  }
  log::Info("MPS control daemon ready", {{"gpu", gpu.uuid},
                                         {"index", gpu.index},
                                         {"pid", pid},
                                         {"pinned_mem_limit_mib", gpu.pinned_memory_limit_mib},
                                         {"active_thread_percentage", gpu.active_thread_percentage},
                                         {"pipe_dir", pipe_dir}});
  return pid;
}

absl::Status Supervisor::CheckHealth(const GpuSpec& gpu, int pid) {
  auto exited = [&] {
    return absl::UnavailableError(absl::StrCat("the MPS control daemon for ", Describe(gpu),
                                               " (pid ", pid, ") exited", LogTail(gpu)));
  };
  if (!os_.ProcessAlive(pid)) return exited();
  auto answer = Control(gpu, "get_default_active_thread_percentage");
  if (answer.ok()) return HoldsLimits(gpu, *answer);
  if (!os_.ProcessAlive(pid)) return exited();  // died while being asked
  return absl::UnavailableError(absl::StrCat("the MPS control daemon for ", Describe(gpu), " (pid ",
                                             pid, ") does not answer: ", answer.status().message(),
                                             LogTail(gpu)));
}

absl::Status Supervisor::HoldsLimits(const GpuSpec& gpu, const std::string& percentage) {
  // Whoever else reaches the control pipe could have changed them: checked, not trusted.
  auto differs = [&](const std::string& what, const std::string& held, const std::string& want) {
    return absl::FailedPreconditionError(absl::StrCat("the MPS control daemon for ", Describe(gpu),
                                                      " holds ", what, " '", held, "', not ", want,
                                                      "; it is restarted with its limits"));
  };
  double value = 0;
  if (gpu.active_thread_percentage > 0 &&
      (!absl::SimpleAtod(percentage, &value) ||
       std::fabs(value - gpu.active_thread_percentage) > 0.05)) {
    return differs("active thread percentage", percentage,
                   std::to_string(gpu.active_thread_percentage));
  }
  if (gpu.pinned_memory_limit_mib > 0) {
    auto mem = Control(gpu, "get_default_device_pinned_mem_limit 0");
    if (!mem.ok()) return mem.status();
    auto mib = ParseMemLimitMiB(*mem);
    if (mib && *mib != gpu.pinned_memory_limit_mib) {
      return differs("pinned memory limit", *mem, absl::StrCat(gpu.pinned_memory_limit_mib, "M"));
    }
  }
  return absl::OkStatus();
}

void Supervisor::StopDaemon(const GpuSpec& gpu, int pid) {
  if (pid <= 0 || !os_.ProcessAlive(pid)) return;
  auto quit = Control(gpu, "quit");
  if (!quit.ok()) {
    log::Warn("MPS control daemon did not take quit",
              {{"gpu", gpu.uuid}, {"error", quit.status().message()}});
  }
  auto wait_gone = [&](milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (os_.ProcessAlive(pid)) {
      if (Clock::now() >= deadline) return false;
      Pause({}, milliseconds(10));
    }
    return true;
  };
  if (wait_gone(options_.stop_timeout)) {
    log::Info("MPS control daemon stopped", {{"gpu", gpu.uuid}, {"pid", pid}});
    return;
  }
  log::Warn("MPS control daemon ignored quit; terminating it", {{"gpu", gpu.uuid}, {"pid", pid}});
  os_.Signal(pid, SIGTERM);
  if (wait_gone(milliseconds(1000))) return;
  os_.Signal(pid, SIGKILL);
  wait_gone(milliseconds(1000));
}

void Supervisor::Report(Daemon& d, bool healthy, absl::Status status) {
  if (d.reported && d.healthy == healthy && d.status == status) return;
  d.healthy = healthy;
  d.status = std::move(status);
  d.reported = true;
  if (on_health_) on_health_(GpuHealth{d.spec, d.healthy, d.status});
}

void Supervisor::FailLocked(Daemon& d, absl::Status status) {
  d.pid = 0;
  auto delay = d.backoff.Next();
  d.next_attempt = Clock::now() + delay;
  log::Warn("MPS control daemon unavailable", {{"gpu", d.spec.uuid},
                                               {"error", status.message()},
                                               {"attempt", d.backoff.attempts()},
                                               {"retry_in_ms", delay.count()}});
  Report(d, false, std::move(status));
}

absl::Status Supervisor::Apply(const std::vector<GpuSpec>& gpus) {
  std::map<std::string, GpuSpec> wanted;
  for (const GpuSpec& g : gpus) {
    if (g.uuid.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("MPS GPU ", g.index, " has no UUID"));
    }
    if (g.active_thread_percentage > 100) {
      return absl::InvalidArgumentError(absl::StrCat("MPS active thread percentage for ", g.uuid,
                                                     " is ", g.active_thread_percentage,
                                                     "; it must be 1..100 (0: not set)"));
    }
    if (!wanted.emplace(g.uuid, g).second) {
      return absl::InvalidArgumentError(absl::StrCat("GPU ", g.uuid, " is listed twice for MPS"));
    }
  }
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kOk;
  {
    MutexLock lock(&mu_);
    if (stopped_) return absl::FailedPreconditionError("the MPS supervisor has been stopped");
    for (auto it = daemons_.begin(); it != daemons_.end();) {
      auto w = wanted.find(it->first);
      if (w != wanted.end() && w->second == it->second.spec) {
        ++it;
        continue;
      }
      log::Info(w == wanted.end() ? "GPU no longer shared through MPS; quitting its daemon"
                                  : "MPS limits changed; restarting the daemon",
                {{"gpu", it->first}});
      StopDaemon(it->second.spec, it->second.pid);
      it = daemons_.erase(it);
    }
    for (const auto& [uuid, spec] : wanted) {
      auto [it, inserted] = daemons_.try_emplace(
          uuid, spec, Backoff(options_.restart_backoff_initial, options_.restart_backoff_max));
      Daemon& d = it->second;
      if (inserted) {
        auto pid = StartDaemon(spec, {});
        if (pid.ok()) {
          d.pid = *pid;
          Report(d, true, absl::OkStatus());
        } else {
          FailLocked(d, pid.status());
        }
      }
      if (!d.healthy) {
        if (code == absl::StatusCode::kOk) code = d.status.code();
        failures.push_back(std::string(d.status.message()));
      }
    }
  }
  {
    std::lock_guard lock(wake_mu_);
    wake_requested_ = true;
  }
  wake_.notify_all();
  if (failures.empty()) return absl::OkStatus();
  return absl::Status(
      code, absl::StrCat("MPS is not ready on ", failures.size(), " of ", wanted.size(),
                         " GPU(s) (retrying with backoff): ", absl::StrJoin(failures, "; ")));
}

milliseconds Supervisor::TickLocked(const std::stop_token& stop) {
  const bool check_health = Clock::now() >= next_health_check_;
  if (check_health) next_health_check_ = Clock::now() + options_.health_interval;
  auto until_health = std::chrono::duration_cast<milliseconds>(next_health_check_ - Clock::now());
  milliseconds sleep = std::max(until_health, milliseconds(0));
  for (auto& [uuid, d] : daemons_) {
    if (stop.stop_requested()) break;
    if (d.healthy && check_health) {
      absl::Status st = CheckHealth(d.spec, d.pid);
      if (!st.ok()) {
        StopDaemon(d.spec, d.pid);  // one that lives but does not answer
        FailLocked(d, std::move(st));
      }
    } else if (!d.healthy && Clock::now() >= d.next_attempt) {
      auto pid = StartDaemon(d.spec, stop);
      if (pid.ok()) {
        log::Info("MPS control daemon restarted", {{"gpu", uuid}, {"pid", *pid}});
        d.pid = *pid;
        d.backoff.Reset();
        Report(d, true, absl::OkStatus());
      } else if (!stop.stop_requested()) {
        FailLocked(d, pid.status());
      }
    }
    if (!d.healthy) {
      auto until = std::chrono::duration_cast<milliseconds>(d.next_attempt - Clock::now());
      sleep = std::min(sleep, std::max(until, milliseconds(0)));
    }
  }
  return sleep;
}

void Supervisor::Watch(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    milliseconds sleep;
    {
      MutexLock lock(&mu_);
      if (stopped_) return;
      sleep = TickLocked(stop);
    }
    std::unique_lock lock(wake_mu_);
    wake_.wait_for(lock, stop, sleep, [this] { return wake_requested_; });
    wake_requested_ = false;
  }
}

void Supervisor::Stop() {
  // A second caller waits until the first has finished.
  std::call_once(stop_once_, [this] {
    watcher_.request_stop();
    if (watcher_.joinable()) watcher_.join();
    MutexLock lock(&mu_);
    stopped_ = true;
    for (auto& [uuid, d] : daemons_) {
      if (d.pid > 0) {
        StopDaemon(d.spec, d.pid);
      } else if (fs_.Exists(absl::StrCat(PipeDirectory(options_, uuid), "/", kControlSocketName))) {
        // A start cut short by Stop may have left a daemon we hold no pid of:
        // ask it to quit, but signal no process on the strength of a pid file.
        (void)Control(d.spec, "quit");
      }
    }
    daemons_.clear();
  });
}

std::vector<GpuHealth> Supervisor::Health() const {
  MutexLock lock(&mu_);
  std::vector<GpuHealth> out;
  for (const auto& [uuid, d] : daemons_) out.push_back(GpuHealth{d.spec, d.healthy, d.status});
  return out;
}

}  // namespace gdp::mps
