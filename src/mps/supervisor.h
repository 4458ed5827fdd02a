// The MPS supervisor: runs one NVIDIA MPS control daemon
// (`nvidia-cuda-mps-control -d`) per GPU shared through MPS, gives it the
// per-client limits through the control client, checks that it answers
// before calling it ready, watches it, restarts it with backoff when it dies,
// and quits it on shutdown or when the set of GPUs changes.
//
// Each daemon sees exactly one GPU (CUDA_VISIBLE_DEVICES=<UUID>), so inside
// MPS that GPU is device 0: the pinned-memory limit is sent as
// `set_default_device_pinned_mem_limit 0 <MiB>M`, and a client container that
// sees only that GPU uses CUDA_MPS_PINNED_DEVICE_MEM_LIMIT="0=<MiB>M".
// A daemon's pipe directory, PipeDirectory(options, uuid), is what clients
// need as CUDA_MPS_PIPE_DIRECTORY (mounted into their containers).
//
// Ownership: the Supervisor owns its watcher thread and the daemons it
// started; it borrows the Os, FileSystem and NvmlApi, which must outlive it.
// Thread-safety: every public method is thread-safe. The health callback runs
// on the thread of Apply or on the watcher thread, with the supervisor's lock
// held: it must be quick and must not call the Supervisor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/common/backoff.h"
#include "src/common/filesystem.h"
#include "src/common/mutex.h"
#include "src/mps/controller.h"
#include "src/mps/gpu_spec.h"
#include "src/mps/os.h"
#include "src/nvml/nvml_api.h"

namespace gdp::mps {

inline constexpr char kControlBinaryName[] = "nvidia-cuda-mps-control";
// Files the control daemon creates in its pipe directory.
inline constexpr char kControlSocketName[] = "control";
inline constexpr char kPidFileName[] = "nvidia-cuda-mps-control.pid";
// Its log, in its log directory.
inline constexpr char kControlLogName[] = "control.log";

struct SupervisorOptions {
  // Absolute path of nvidia-cuda-mps-control (see FindControlBinary).
  std::string control_binary;
  // Host directories: GPU u's daemon uses <pipe_root>/<u>/pipe and
  // <log_root>/<u>/log, created when missing.
  std::string pipe_root = "/run/nvidia/mps";
  std::string log_root = "/run/nvidia/mps";
  // Added to the environment of every control daemon and client run (for
  // instance LD_LIBRARY_PATH into a containerised driver root).
  std::map<std::string, std::string> extra_env;
  // Limit on each run of the control program (the client, or `-d`).
  std::chrono::milliseconds command_timeout{10'000};
  // How long a started daemon may take to create its socket and pid file.
  std::chrono::milliseconds ready_timeout{10'000};
  // How long `quit` may take before the daemon is signalled.
  std::chrono::milliseconds stop_timeout{5'000};
  // How often each running daemon is checked (alive, and answers a query).
  std::chrono::milliseconds health_interval{5'000};
  // Delay before restarting a daemon that died or failed to start; doubles
  // (with jitter) up to the max, and resets once it runs again.
  std::chrono::milliseconds restart_backoff_initial{1'000};
  std::chrono::milliseconds restart_backoff_max{60'000};
  // Lines of control.log quoted in errors.
  size_t log_tail_lines = 8;
};

std::string PipeDirectory(const SupervisorOptions& options, const std::string& uuid);
std::string LogDirectory(const SupervisorOptions& options, const std::string& uuid);

// Finds nvidia-cuda-mps-control: `configured` when not empty (it must
// exist), else the first of <driver_root>/usr/bin, <driver_root>/bin,
// /usr/bin, /usr/local/bin that has it. NotFound names every place looked.
absl::StatusOr<std::string> FindControlBinary(const FileSystem& fs, const std::string& driver_root,
                                              const std::string& configured = "");

// Whether the GPU's compute mode lets an MPS server run: DEFAULT and
// EXCLUSIVE_PROCESS do (EXCLUSIVE_PROCESS is recommended: then only the MPS
// server holds a context); PROHIBITED and EXCLUSIVE_THREAD do not
// (FailedPrecondition saying how to change it). OK when the driver cannot
// tell (the call is missing).
absl::Status CheckComputeMode(nvml::NvmlApi& nvml, const GpuSpec& gpu);

class Supervisor : public Controller {
 public:
  // `nvml` may be null: the compute mode is then not checked.
  Supervisor(SupervisorOptions options, HealthCallback on_health, Os& os = PosixOs::Get(),
             const FileSystem& fs = PosixFileSystem::Get(), nvml::NvmlApi* nvml = nullptr);
  ~Supervisor() override;  // Stop()
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Makes the running daemons match `gpus`: quits those of GPUs no longer
  // listed (they get no further reports) or whose limits changed, starts the
  // new and changed ones, and leaves the rest alone. Blocks until each started daemon is ready or
  // has failed; reports each through the callback. OK when every listed GPU is healthy; otherwise
  // an error naming each failure (failed daemons are retried by the watcher with backoff).
  // InvalidArgument for a bad list (empty or duplicate UUID, percentage over 100);
  // FailedPrecondition after Stop().
  absl::Status Apply(const std::vector<GpuSpec>& gpus) override;

  // Quits every daemon and stops the watcher. Idempotent; a second caller
  // waits for the first to finish.
  void Stop() override;
  // The daemons are this process's children and go with it: the same as Stop().
  void Detach() override { Stop(); }

  // A snapshot, ordered by UUID. Waits while Apply or a health round runs.
  std::vector<GpuHealth> Health() const override;

 private:
  struct Daemon {
    Daemon(GpuSpec s, Backoff b) : spec(std::move(s)), backoff(b) {}
    GpuSpec spec;
    bool healthy = false;
    bool reported = false;  // the callback has been told the current state
    absl::Status status;
    int pid = 0;
    Backoff backoff;
    std::chrono::steady_clock::time_point next_attempt;
  };

  void Watch(const std::stop_token& stop);
  // One round of health checks and due restarts; returns how long to sleep.
  std::chrono::milliseconds TickLocked(const std::stop_token& stop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Report(Daemon& d, bool healthy, absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(Daemon& d, absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The steps, each with an error that says what to do.
  absl::StatusOr<int> StartDaemon(const GpuSpec& gpu, const std::stop_token& stop);
  absl::Status CheckHealth(const GpuSpec& gpu, int pid);
  // OK when the daemon still holds `gpu`'s limits (`percentage`: its answer
  // to get_default_active_thread_percentage).
  absl::Status HoldsLimits(const GpuSpec& gpu, const std::string& percentage);
  void StopDaemon(const GpuSpec& gpu, int pid);
  absl::StatusOr<std::string> Control(const GpuSpec& gpu, const std::string& command);
  absl::Status SetLimits(const GpuSpec& gpu);
  int ReadPid(const GpuSpec& gpu) const;
  std::string LogTail(const GpuSpec& gpu) const;
  std::map<std::string, std::string> Environment(const GpuSpec& gpu, bool daemon) const;
  std::string Describe(const GpuSpec& gpu) const;

  const SupervisorOptions options_;
  const HealthCallback on_health_;
  Os& os_;
  const FileSystem& fs_;
  nvml::NvmlApi* const nvml_;

  mutable Mutex mu_;
  std::map<std::string, Daemon> daemons_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point next_health_check_ ABSL_GUARDED_BY(mu_);

  std::mutex wake_mu_;
  std::condition_variable_any wake_;
  bool wake_requested_ = false;  // guarded by wake_mu_
  std::once_flag stop_once_;
  std::jthread watcher_;  // last: starts after everything above exists
};

}  // namespace gdp::mps
