// ConfigWatcher: reloads the config file when it changes or on SIGHUP.
//
// It owns one thread (std::jthread) that polls an inotify watch on the config
// file's DIRECTORY (Kubernetes ConfigMap volumes update by atomically swapping
// a `..data` symlink, which a watch on the file itself never sees), an eventfd
// for Trigger(), an eventfd that Stop() uses to wake it, and optionally a
// signalfd for SIGHUP.
//
// SIGHUP: the daemon calls ConfigWatcher::BlockSighup() in main() before it
// starts any thread, so every thread inherits the blocked mask and the signal
// stays pending for the process until the watcher's signalfd consumes it.
// (A daemon with its own signal loop can instead set Options::handle_sighup =
// false and call Trigger().)
//
// On a change (events are debounced: the reload runs once the directory has
// been quiet for Options::debounce) the file is loaded with LoadConfig. A valid
// config that differs from the current one is published and passed to the
// callback; an invalid one is logged, error by error, and the running config
// is kept. The callback runs on the watcher thread and must not call Stop().
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"

namespace gdp::config {

class ConfigWatcher {
 public:
  using Callback = std::function<void(std::shared_ptr<const Config>)>;

  struct Options {
    std::string config_file;          // must be non-empty
    std::vector<Override> overrides;  // re-applied on every reload (flags and env do not change)
    std::chrono::milliseconds debounce{100};
    bool handle_sighup = true;  // consume SIGHUP with a signalfd (see BlockSighup)
  };

  // `fs` must outlive the watcher; `initial` is the running config.
  ConfigWatcher(const FileSystem& fs, Options options, std::shared_ptr<const Config> initial,
                Callback on_change);
  ~ConfigWatcher();  // Stop()s
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // Sets up the watches and starts the thread. Fails (naming the directory)
  // when the config file's directory cannot be watched.
  absl::Status Start();
  // Stops and joins the thread; prompt (it wakes the poll). Idempotent.
  void Stop();
  // Asks for a reload now, as SIGHUP does.
  void Trigger();

  std::shared_ptr<const Config> current() const;
  // Reloads that produced a valid config (changed or not), and those rejected.
  uint64_t reloads_succeeded() const { return succeeded_.load(); }
  uint64_t reloads_failed() const { return failed_.load(); }
  // Valid reloads that changed the config and called the callback.
  uint64_t reloads_applied() const { return applied_.load(); }

  // Blocks SIGHUP in the calling thread (and so in every thread it starts
  // afterwards). Call in main() before any thread exists.
  static absl::Status BlockSighup();

 private:
  void Run(const std::stop_token& stop);
  void Reload();

  const FileSystem& fs_;
  const Options options_;
  const Callback on_change_;
  std::string dir_;  // directory of the config file
  int inotify_fd_ = -1;
  int trigger_fd_ = -1;
  int wake_fd_ = -1;
  int signal_fd_ = -1;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Config> current_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> applied_{0};

  absl::Mutex stop_mu_;  // serialises Start() and Stop()
  std::jthread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace gdp::config
