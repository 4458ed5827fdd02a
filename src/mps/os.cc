#include "src/mps/os.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "src/common/filesystem.h"
#include "src/common/unique_fd.h"

extern char** environ;  // NOLINT: POSIX

namespace gdp::mps {
namespace {

using Fd = UniqueFd;

std::vector<std::string> BuildEnvironment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    std::string key = entry.substr(0, entry.find('='));
    if (extra.count(key) == 0) env.push_back(std::move(entry));
  }
  for (const auto& [k, v] : extra) env.push_back(absl::StrCat(k, "=", v));
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int ExitCode(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return -1;
}

// Reads what is available without blocking; false at EOF or error.
bool DrainInto(int fd, std::string* out) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

}  // namespace

absl::StatusOr<CommandResult> PosixOs::Run(const Command& command) {
  if (command.argv.empty()) return absl::InvalidArgumentError("Run: empty argv");
  const std::string& program = command.argv[0];
  // stdin is a socket so that writing to a child that exited early gives
  // EPIPE (MSG_NOSIGNAL) rather than a process-wide SIGPIPE.
  int in_pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
    return ErrnoStatus(errno, "socketpair for the stdin of", program);
  }
  Fd in_child(in_pair[0]), in_parent(in_pair[1]);
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe for the output of", program);
  Fd out_parent(out_pipe[0]), out_child(out_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_child.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_child.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_child.get(), STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with default signal dispositions and an empty mask,
  // whatever the daemon's threads have blocked or ignored.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> args = command.argv;
  std::vector<std::string> env = BuildEnvironment(command.env);
  std::vector<char*> argv_p = Pointers(args), env_p = Pointers(env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &actions, &attr, argv_p.data(), env_p.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return ErrnoStatus(rc, "execute", program);
  in_child.Reset();
  out_child.Reset();

  fcntl(out_parent.get(), F_SETFL, O_NONBLOCK);
  fcntl(in_parent.get(), F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (command.stdin_text.empty()) in_parent.Reset();

  CommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + command.timeout;
  bool out_open = true;
  for (;;) {
    int wstatus = 0;
    pid_t w = waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) {
      // Exited: take what it wrote, without waiting for descendants that
      // may hold the pipe open.
      if (out_open) DrainInto(out_parent.get(), &result.output);
      result.exit_code = ExitCode(wstatus);
      return result;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      if (out_open) DrainInto(out_parent.get(), &result.output);
      return absl::DeadlineExceededError(
          absl::StrCat(program, " did not finish within ", command.timeout.count(),
                       " ms and was killed; its output: ", result.output));
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_open) fds[n++] = {out_parent.get(), POLLIN, 0};
    if (in_parent.get() >= 0) fds[n++] = {in_parent.get(), POLLOUT, 0};
    poll(fds, n, 10);
    if (out_open && !DrainInto(out_parent.get(), &result.output)) {
      out_open = false;  // EOF; keep waiting for the exit status
    }
    if (in_parent.get() >= 0) {
      ssize_t k = send(in_parent.get(), command.stdin_text.data() + written,
                       command.stdin_text.size() - written, MSG_NOSIGNAL);
      if (k > 0) written += static_cast<size_t>(k);
      if (written == command.stdin_text.size() || (k < 0 && errno != EAGAIN && errno != EINTR)) {
        in_parent.Reset();  // done, or the child closed its stdin
      }
    }
  }
}

bool PosixOs::ProcessAlive(int pid) {
  if (pid <= 0) return false;
  int wstatus;
  if (waitpid(pid, &wstatus, WNOHANG) == pid) return false;  // our child, now reaped
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return false;
  // pid (comm) state ...; comm may hold spaces and parentheses.
  size_t close_paren = content.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= content.size()) return false;
  char state = content[close_paren + 2];
  return state != 'Z' && state != 'X' && state != 'x';
}

void PosixOs::Signal(int pid, int signal) {
  if (pid > 0) kill(pid, signal);
}

absl::Status PosixOs::MakeDirectories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus(ec.value(), "create directory", path);
  return absl::OkStatus();
}

absl::Status PosixOs::CheckWritable(const std::string& path) {
  if (access(path.c_str(), W_OK | X_OK) != 0) return ErrnoStatus(errno, "write into", path);
  return absl::OkStatus();
}

Os& PosixOs::Get() {
  static auto* os = new PosixOs();
  return *os;
}

}  // namespace gdp::mps
