#include "src/config/config_watcher.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/common/log.h"

namespace gdp::config {
namespace {

constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE |
                                IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF;

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

void DrainEventFd(int fd) {
  uint64_t value;
  while (read(fd, &value, sizeof value) > 0) {
  }
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The first component of the config file's symlink target when it is
// relative (a ConfigMap's "config.yaml -> ..data/config.yaml" gives "..data").
std::string LinkHead(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  if (n <= 0 || buf[0] == '/') return "";
  std::string target(buf, static_cast<size_t>(n));
  return target.substr(0, target.find('/'));
}

}  // namespace

ConfigWatcher::ConfigWatcher(const FileSystem& fs, Options options,
                             std::shared_ptr<const Config> initial, Callback on_change)
    : fs_(fs),
      options_(std::move(options)),
      on_change_(std::move(on_change)),
      dir_(DirName(options_.config_file)),
      current_(std::move(initial)) {}

ConfigWatcher::~ConfigWatcher() {
  Stop();
  CloseFd(&inotify_fd_);
  CloseFd(&trigger_fd_);
  CloseFd(&wake_fd_);
  CloseFd(&signal_fd_);
}

absl::Status ConfigWatcher::BlockSighup() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    return ErrnoStatus(err, "pthread_sigmask blocking", "SIGHUP");
  }
  return absl::OkStatus();
}

absl::Status ConfigWatcher::Start() {
  absl::MutexLock lock(&stop_mu_);
  if (thread_.joinable() || inotify_fd_ >= 0) {
    return absl::FailedPreconditionError("config watcher already started");
  }
  if (options_.config_file.empty()) {
    return absl::InvalidArgumentError("config watcher needs a config file to watch");
  }
  if (options_.handle_sighup) {
    sigset_t current;
    pthread_sigmask(SIG_SETMASK, nullptr, &current);
    if (sigismember(&current, SIGHUP) != 1) {
      return absl::FailedPreconditionError(
          "SIGHUP is not blocked: call ConfigWatcher::BlockSighup() in main() before starting "
          "any thread, or set handle_sighup = false and call Trigger()");
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) return ErrnoStatus(errno, "signalfd for SIGHUP", options_.config_file);
  }
  trigger_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (trigger_fd_ < 0 || wake_fd_ < 0 || inotify_fd_ < 0) {
    absl::Status status = ErrnoStatus(errno, "creating watcher fds for", options_.config_file);
    CloseFd(&inotify_fd_);
    CloseFd(&trigger_fd_);
    CloseFd(&wake_fd_);
    CloseFd(&signal_fd_);
    return status;
  }
  if (inotify_add_watch(inotify_fd_, dir_.c_str(), kWatchMask | IN_ONLYDIR) < 0) {
    absl::Status status = ErrnoStatus(errno, "watching the config directory", dir_);
    CloseFd(&inotify_fd_);
    CloseFd(&trigger_fd_);
    CloseFd(&wake_fd_);
    CloseFd(&signal_fd_);
    return status;
  }
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
  log::Info("watching config file", {{"file", options_.config_file}, {"dir", dir_}});
  return absl::OkStatus();
}

void ConfigWatcher::Stop() {
  absl::MutexLock lock(&stop_mu_);
  if (!thread_.joinable()) return;
  thread_.request_stop();
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  thread_.join();
}

void ConfigWatcher::Trigger() {
  if (trigger_fd_ < 0) return;
  uint64_t one = 1;
  (void)!write(trigger_fd_, &one, sizeof one);
}

std::shared_ptr<const Config> ConfigWatcher::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void ConfigWatcher::Run(const std::stop_token& stop) {
  using Clock = std::chrono::steady_clock;
  std::array<pollfd, 4> fds = {{{wake_fd_, POLLIN, 0},
                                {inotify_fd_, POLLIN, 0},
                                {trigger_fd_, POLLIN, 0},
                                {signal_fd_, POLLIN, 0}}};
  const nfds_t nfds = signal_fd_ >= 0 ? 4 : 3;
  const std::string base = BaseName(options_.config_file);
  bool watching = true;
  bool pending = false;
  Clock::time_point deadline;
  alignas(inotify_event) char buf[16 * 1024];

  while (!stop.stop_requested()) {
    int timeout = -1;
    if (pending) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int n = poll(fds.data(), nfds, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::Error(
          "config watcher: poll failed; reloads stop",
          {{"error", ErrnoStatus(errno, "poll", dir_).ToString()}, {"file", options_.config_file}});
      return;
    }
    if (stop.stop_requested()) return;

    if (fds[1].revents & POLLIN) {
      const std::string head = LinkHead(options_.config_file);
      ssize_t len;
      while ((len = read(inotify_fd_, buf, sizeof buf)) > 0) {
        for (char* p = buf; p < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          p += sizeof(inotify_event) + ev->len;
          if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
            if (watching) {
              log::Warn("config directory is gone; reloading on SIGHUP only until it is back",
                        {{"dir", dir_}});
            }
            watching = false;
            continue;
          }
          const std::string name = ev->len > 0 ? std::string(ev->name) : "";
          if ((ev->mask & IN_Q_OVERFLOW) || name == base || absl::StartsWith(name, "..") ||
              (!head.empty() && name == head)) {
            pending = true;
            deadline = Clock::now() + options_.debounce;
          }
        }
      }
    }
    if (fds[2].revents & POLLIN) {
      DrainEventFd(trigger_fd_);
      pending = true;
      deadline = Clock::now();
    }
    if (nfds > 3 && (fds[3].revents & POLLIN)) {
      signalfd_siginfo info;
      while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        log::Info("SIGHUP: reloading config", {{"file", options_.config_file}});
        pending = true;
        deadline = Clock::now();
      }
    }
    if (pending && Clock::now() >= deadline) {
      pending = false;
      if (!watching && inotify_add_watch(inotify_fd_, dir_.c_str(), kWatchMask | IN_ONLYDIR) >= 0) {
        log::Info("config directory is back; watching it again", {{"dir", dir_}});
        watching = true;
      }
      Reload();
    }
  }
}

void ConfigWatcher::Reload() {
  absl::StatusOr<Config> loaded = LoadConfig(fs_, options_.config_file, options_.overrides);
  if (!loaded.ok()) {
    failed_.fetch_add(1);
    log::Error("config reload rejected; keeping the running config",
               {{"file", options_.config_file},
                {"code", absl::StatusCodeToString(loaded.status().code())}});
    for (absl::string_view line : absl::StrSplit(loaded.status().message(), '\n')) {
      log::Error("config error", {{"file", options_.config_file}, {"error", std::string(line)}});
    }
    return;
  }
  succeeded_.fetch_add(1);
  auto next = std::make_shared<const Config>(*std::move(loaded));
  {
    absl::MutexLock lock(&mu_);
    if (current_ && *current_ == *next) {
      log::Debug("config file changed but the config did not", {{"file", options_.config_file}});
      return;
    }
    current_ = next;
  }
  applied_.fetch_add(1);
  log::Info("config reloaded", {{"file", options_.config_file}});
  if (on_change_) on_change_(next);
}

}  // namespace gdp::config
