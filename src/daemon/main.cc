// gpu-device-plugin: parses the command line and runs the Daemon. Nothing else
// lives here.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <thread>

#include "src/common/log.h"
#include "src/config/overrides.h"
#include "src/daemon/daemon.h"

namespace {

// Blocks the signals the daemon handles in this thread and, since it runs
// before any thread starts, in every thread: they are taken only by sigwait.
sigset_t BlockHandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// The name of a signal the daemon handles (strsignal is not thread-safe).
const char* SignalName(int sig) {
  switch (sig) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "unknown";
  }
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t handled = BlockHandledSignals();

  CLI::App app{
      "gpu-device-plugin: advertises the node's NVIDIA GPUs to the kubelet.\n"
      "Every flag has an environment variable and a config-file field; precedence is\n"
      "flag > environment > file > default (docs/configuration.md)."};
  gdp::config::FlagValues flags;
  gdp::config::RegisterFlags(app, &flags);
  CLI11_PARSE(app, argc, argv);

  const auto env = gdp::config::ProcessEnv();
  gdp::daemon::DaemonOptions options;
  options.config_file = gdp::config::ConfigFilePath(flags, env);
  options.overrides = gdp::config::CollectOverrides(flags, env);
  gdp::daemon::Daemon daemon(std::move(options));

  // The signal thread: TERM and INT stop, HUP reloads. It ends on the stop
  // signal, or on a SIGTERM this process sends itself when Run() returns on
  // its own.
  std::thread signals([&daemon, handled] {
    for (;;) {
      int sig = 0;
      if (sigwait(&handled, &sig) != 0) continue;
      if (sig == SIGHUP) {
        daemon.RequestReload();
        continue;
      }
      gdp::log::Info("signal received; shutting down", {{"signal", SignalName(sig)}});
      daemon.RequestStop();
      return;
    }
  });
  const int code = daemon.Run();
  // Run() may return without a signal (fatal start error): wake the thread.
  // The SIGTERM is process-directed; every thread blocks it, so only the
  // signal thread's sigwait takes it. If that thread has already returned,
  // the signal stays pending, blocked, until the process exits.
  kill(getpid(), SIGTERM);
  signals.join();
  return code;
}
