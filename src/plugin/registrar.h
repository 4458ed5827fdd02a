// Registers one device-plugin endpoint with the kubelet: a
// v1beta1.Registration/Register call on unix://<plugin dir>/kubelet.sock with
// version "v1beta1", the endpoint (our socket's file name), the resource name
// and options {get_preferred_allocation_available: true}.
//
// A Registrar makes one attempt per TryRegister (with a per-attempt deadline)
// and owns the backoff between attempts; the retry loop belongs to its caller
// (the PluginManager's thread), which also reacts to kubelet restarts. A failed
// attempt is logged with why it failed and when the next one comes.
//
// Thread-safety: not thread-safe; one owner thread. An attempt in flight ends
// promptly (CANCELLED) when the stop_token passed to TryRegister is stopped.
#pragma once

#include <chrono>
#include <memory>
#include <stop_token>
#include <string>

#include "absl/status/status.h"
#include "src/common/backoff.h"

namespace gdp::plugin {

class Registrar {
 public:
  struct Options {
    std::string plugin_dir = "/var/lib/kubelet/device-plugins";
    std::string kubelet_socket = "kubelet.sock";  // file name inside plugin_dir
    std::chrono::milliseconds attempt_timeout{5000};
    std::chrono::milliseconds backoff_initial{20};  // PluginManager::Options says why
    std::chrono::milliseconds backoff_max{10000};
  };

  Registrar(std::string resource_name, std::string endpoint, Options options);
  ~Registrar();

  // One Register call. OK on success (and the backoff resets). Otherwise a
  // status saying what failed and the likely cause; the caller should wait
  // NextDelay() before the next attempt (the failure is already logged with it).
  absl::Status TryRegister(const std::stop_token& stop = {});

  // The delay before the next attempt after a failure (grows, jittered).
  std::chrono::milliseconds NextDelay() const { return next_delay_; }
  // Forget past failures: the next failure waits the initial delay again.
  void Reset();

  const std::string& resource_name() const { return resource_name_; }
  const std::string& endpoint() const { return endpoint_; }
  std::string kubelet_socket_path() const {
    return options_.plugin_dir + "/" + options_.kubelet_socket;
  }

 private:
  const std::string resource_name_;
  const std::string endpoint_;
  const Options options_;
  Backoff backoff_;
  std::chrono::milliseconds next_delay_{0};
};

}  // namespace gdp::plugin
