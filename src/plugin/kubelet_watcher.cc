#include "src/plugin/kubelet_watcher.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "src/common/filesystem.h"
#include "src/common/log.h"

namespace gdp::plugin {
namespace {

constexpr uint32_t kMask =
    IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

KubeletWatcher::KubeletWatcher(std::string plugin_dir, std::string kubelet_socket,
                               Callback callback)
    : dir_(std::move(plugin_dir)),
      kubelet_socket_(std::move(kubelet_socket)),
      callback_(std::move(callback)) {}

KubeletWatcher::~KubeletWatcher() { Stop(); }

absl::Status KubeletWatcher::Start() {
  if (thread_.joinable()) return absl::FailedPreconditionError("kubelet watcher already started");
  inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ < 0) {
    const int err = errno;
    return absl::InternalError(std::string("inotify_init1 failed: ") + ErrnoString(err) +
                               "; raise fs.inotify.max_user_instances?");
  }
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) {
    const int err = errno;
    ::close(inotify_fd_);
    inotify_fd_ = -1;
    return absl::InternalError(std::string("eventfd failed: ") + ErrnoString(err));
  }
  if (!AddWatch()) {
    log::Warn("plugin directory not found; watching for it", {{"dir", dir_}});
  }
  thread_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
  return absl::OkStatus();
}

void KubeletWatcher::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    const uint64_t one = 1;
    // A full eventfd counter still wakes poll; the result needs no check.
    [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
  inotify_fd_ = event_fd_ = watch_ = -1;
}

bool KubeletWatcher::AddWatch() {
  watch_ = ::inotify_add_watch(inotify_fd_, dir_.c_str(), kMask | IN_ONLYDIR);
  if (watch_ < 0) return false;
  return true;
}

void KubeletWatcher::Run(const std::stop_token& stop) {
  ::pthread_setname_np(::pthread_self(), "gdp-kubelet-wat");
  while (!stop.stop_requested()) {
    std::array<pollfd, 2> fds{{{inotify_fd_, POLLIN, 0}, {event_fd_, POLLIN, 0}}};
    // Without a watch, poll once a second for the directory to come back.
    const int timeout_ms = watch_ < 0 ? 1000 : -1;
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (stop.stop_requested()) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      log::Error("poll on the plugin directory watch failed",
                 {{"dir", dir_}, {"error", ErrnoString(err)}});
      break;
    }
    if (fds[0].revents & POLLIN) HandleEvents();
    if (watch_ < 0 && AddWatch()) {
      log::Info("plugin directory is back; watching it", {{"dir", dir_}});
      struct stat st {};
      if (::stat((dir_ + "/" + kubelet_socket_).c_str(), &st) == 0) {
        callback_(Event::kKubeletSocketCreated, kubelet_socket_);
      }
    }
  }
}

void KubeletWatcher::HandleEvents() {
  alignas(inotify_event) std::array<char, 4096> buf;
  for (;;) {
    const ssize_t len = ::read(inotify_fd_, buf.data(), buf.size());
    if (len <= 0) return;  // EAGAIN: drained
    for (ssize_t off = 0; off < len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      const std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
        if (watch_ >= 0 && ev->wd == watch_) {
          log::Warn("plugin directory removed; waiting for it to come back", {{"dir", dir_}});
          ::inotify_rm_watch(inotify_fd_, watch_);  // fails harmlessly after IN_IGNORED
          watch_ = -1;
        }
        continue;
      }
      if (ev->mask & IN_Q_OVERFLOW) {
        // Events were lost: assume the worst, the manager's checks are idempotent.
        callback_(Event::kKubeletSocketCreated, kubelet_socket_);
        continue;
      }
      if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
        if (name == kubelet_socket_) callback_(Event::kKubeletSocketCreated, name);
      } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
        if (EndsWith(name, ".sock")) callback_(Event::kSocketRemoved, name);
      }
    }
  }
}

}  // namespace gdp::plugin
