#include "src/daemon/discovery_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/common/filesystem.h"
#include "src/common/unique_fd.h"
#include "src/nvml/inventory_codec.h"

extern char** environ;

namespace gdp::daemon {

namespace {

using SteadyClock = std::chrono::steady_clock;

using Fd = UniqueFd;

std::string Errno(const char* what, int err) { return absl::StrCat(what, ": ", ErrnoString(err)); }

// Reaps the child; kills it first when `kill_first`.
int Reap(pid_t pid, bool kill_first) {
  if (kill_first) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const nvml::Inventory>> DiscoverInChild(
    const DiscoveryChildOptions& options) {
  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    return absl::InternalError(Errno("pipe2 for the discovery child", errno));
  }
  Fd read_end(pipe_fds[0]);
  Fd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);  // dup2 clears O_CLOEXEC
  // Nothing else of the daemon's (sockets, device files) goes to the child.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // the daemon blocks its signals
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = {options.exe, "inventory", "--nvml-library",
                                   options.nvml_library};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawn(&pid, options.exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    return absl::InternalError(Errno(absl::StrCat("starting ", options.exe).c_str(), spawned));
  }
  write_end.Reset();  // EOF on the read end once the child exits

  std::string out;
  const auto deadline = SteadyClock::now() + options.timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) {
      Reap(pid, /*kill_first=*/true);
      return absl::DeadlineExceededError(absl::StrCat("the discovery child did not answer within ",
                                                      options.timeout.count(), " ms"));
    }
    pollfd p{read_end.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      const int err = errno;
      Reap(pid, /*kill_first=*/true);
      return absl::InternalError(Errno("poll on the discovery child", err));
    }
    if (ready == 0) continue;
    std::array<char, 16384> buf{};
    const ssize_t n = ::read(read_end.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      Reap(pid, /*kill_first=*/true);
      return absl::InternalError(Errno("reading the discovery child's answer", err));
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
    if (out.size() > (64u << 20)) {
      Reap(pid, /*kill_first=*/true);
      return absl::InternalError("the discovery child wrote over 64 MiB");
    }
  }
  const int status = Reap(pid, /*kill_first=*/false);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "the discovery child (", options.exe, " inventory) failed: ",
        WIFEXITED(status) ? absl::StrCat("exit status ", WEXITSTATUS(status))
                          : absl::StrCat("signal ", WIFSIGNALED(status) ? WTERMSIG(status) : 0)));
  }
  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> inv = nvml::DecodeInventory(out);
  if (!inv.ok()) {
    return absl::InternalError(
        absl::StrCat("the discovery child's answer: ", inv.status().message()));
  }
  return inv;
}

}  // namespace gdp::daemon
