// Watches the kubelet's plugin directory with inotify and reports the events
// that mean "the kubelet restarted": kubelet.sock created (or moved in), and a
// socket removed (or moved out). The kubelet deletes every socket in the
// directory when it starts, then creates kubelet.sock.
//
// The watcher owns one thread (std::jthread) that polls the inotify fd and an
// eventfd; Stop writes the eventfd, so the thread ends at once. All fds are
// opened O_CLOEXEC and closed by Stop. When the directory itself goes away the
// watcher re-adds its watch once a second until it is back, and reports
// kKubeletSocketCreated if kubelet.sock exists then.
//
// The callback runs on the watcher's thread and must not block for long (the
// PluginManager posts the event to its own thread). Start/Stop from one
// thread; the callback must not call Stop.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace gdp::plugin {

class KubeletWatcher {
 public:
  enum class Event {
    kKubeletSocketCreated,  // `name` is the kubelet socket's file name
    kSocketRemoved,         // `name` is the removed socket file's name
  };
  using Callback = std::function<void(Event event, const std::string& name)>;

  KubeletWatcher(std::string plugin_dir, std::string kubelet_socket, Callback callback);
  ~KubeletWatcher();  // Stops.
  KubeletWatcher(const KubeletWatcher&) = delete;
  KubeletWatcher& operator=(const KubeletWatcher&) = delete;

  // Opens the fds and starts the thread. A missing directory is not an error
  // (the watch is retried); failing to create inotify/eventfd fds is.
  absl::Status Start();
  void Stop();

 private:
  bool AddWatch();  // true when the directory is watched now
  void Run(const std::stop_token& stop);
  void HandleEvents();

  const std::string dir_;
  const std::string kubelet_socket_;
  const Callback callback_;
  int inotify_fd_ = -1;
  int event_fd_ = -1;
  int watch_ = -1;
  std::jthread thread_;
};

}  // namespace gdp::plugin
