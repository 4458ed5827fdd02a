// A stand-in for NVIDIA's `nvidia-cuda-mps-control`, for machines without a
// driver. It behaves like the real program for what the device plugin uses:
//
//   nvidia-cuda-mps-control -d    start the control daemon in the background
//   nvidia-cuda-mps-control -f    run it in the foreground
//   nvidia-cuda-mps-control       client: read commands from stdin, one a
//                                 line, send each to the daemon, print answers
//
// Environment, as for the real one: CUDA_MPS_PIPE_DIRECTORY (default
// /tmp/nvidia-mps) holds the control socket `control` and the pid file
// `nvidia-cuda-mps-control.pid`; CUDA_MPS_LOG_DIRECTORY (default
// /var/log/nvidia-mps) holds `control.log` in the real format
// ("[YYYY-MM-DD HH:MM:SS.mmm Control PID] message"); CUDA_VISIBLE_DEVICES
// bounds the device indices the daemon accepts (the real daemon remaps the
// visible devices to 0..n-1).
//
// For tests the daemon also appends every command it receives, verbatim, one
// a line, to `commands.log` in the log directory. Documented in
// docs/simulator.md.
//
// While it runs, the daemon holds the simulated driver open as the real one
// holds the GPU device files: a shared flock on <root>/run/gpusim/driver.lock,
// the root being $GPUSIM_ROOT or the directory this program is installed
// under (<root>/usr/bin/nvidia-cuda-mps-control), so `gpusim driver stop`
// fails with EBUSY until the daemon quits.
//
// Commands: quit, get_server_list, set_default_active_thread_percentage P,
// get_default_active_thread_percentage, set_default_device_pinned_mem_limit
// DEV VALUE (VALUE is an integer followed by M or G),
// get_default_device_pinned_mem_limit DEV.
//
// A CUDA client (the simulated libcuda) asks the daemon for a server
// (sim/mps_protocol.h); the daemon starts one with its defaults of that
// moment, as a forked child serving on <pipe directory>/gpusim-server and
// logging to server.log (sim/mps_server.h), and stops it when it quits.
//
// Wire protocol between client and daemon (private to the stand-in): the
// client sends a command line ending in '\n'; the daemon answers with text
// ending in '\0'. After `quit` the daemon closes every connection and exits,
// so a client sees EOF once the daemon is gone.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "sim/mps_protocol.h"
#include "sim/mps_server.h"

namespace {

namespace mps = gdp::sim::mps;

constexpr char kSocketName[] = "control";
constexpr char kPidFileName[] = "nvidia-cuda-mps-control.pid";

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): single-threaded
  return v != nullptr ? v : fallback;
}

std::string PipeDir() { return Env("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"); }
std::string LogDir() { return Env("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps"); }
std::string SocketPath() { return PipeDir() + "/" + kSocketName; }
std::string PidPath() { return PipeDir() + "/" + kPidFileName; }
std::string ServerSocketPath() { return PipeDir() + "/" + mps::kServerSocket; }

// Takes the simulated driver's lock shared for the life of the process (the
// descriptor stays open); nothing when there is no driver root.
void HoldDriver() {
  std::string root = Env("GPUSIM_ROOT", "");
  if (root.empty()) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const std::string suffix = "/usr/bin/nvidia-cuda-mps-control";
    if (n > 0) {
      std::string path(exe, static_cast<size_t>(n));
      if (path.size() > suffix.size() &&
          path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
        root = path.substr(0, path.size() - suffix.size());
      }
    }
  }
  if (root.empty()) return;
  int fd = open((root + "/run/gpusim/driver.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  while (flock(fd, LOCK_SH) != 0 && errno == EINTR) {
  }
}

std::string ErrnoText(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);  // GNU variant returns the text
}

bool FillAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// --- Daemon -----------------------------------------------------------------

class Daemon {
 public:
  Daemon(int listen_fd, FILE* control_log, FILE* commands_log)
      : listen_fd_(listen_fd), control_log_(control_log), commands_log_(commands_log) {
    std::string visible = Env("CUDA_VISIBLE_DEVICES", "\x01");
    if (visible != "\x01") {
      devices_ = 0;
      std::stringstream ss(visible);
      for (std::string item; std::getline(ss, item, ',');) {
        if (item.empty()) continue;
        ++*devices_;
        if (item.rfind("GPU-", 0) == 0 || item.rfind("MIG-", 0) == 0) uuids_.push_back(item);
      }
      if (uuids_.size() != static_cast<size_t>(*devices_)) uuids_.clear();  // indices: all
    }
  }

  void Log(const std::string& message) { mps::LogLine(control_log_, "Control", message); }

  // Serves until `quit` or SIGTERM/SIGINT. Returns the exit code.
  int Serve() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    int sig_fd = -1;
    // signalfd would do; a self-pipe keeps this portable and obvious.
    int sig_pipe[2];
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
      self_pipe_ = sig_pipe[1];
      sig_fd = sig_pipe[0];
      struct sigaction sa {};
      sa.sa_handler = [](int) {
        char c = 1;
        [[maybe_unused]] ssize_t n = write(self_pipe_, &c, 1);
      };
      sigaction(SIGTERM, &sa, nullptr);
      sigaction(SIGINT, &sa, nullptr);
    }
    pthread_sigmask(SIG_UNBLOCK, &block, nullptr);

    for (;;) {
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      if (sig_fd >= 0) fds.push_back({sig_fd, POLLIN, 0});
      for (const auto& [fd, buf] : clients_) fds.push_back({fd, POLLIN, 0});
      int n = poll(fds.data(), fds.size(), -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Log("poll failed: " + ErrnoText(errno));
        return Shutdown(1);
      }
      for (const auto& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == listen_fd_) {
          int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) {
            clients_[c] = "";
            Log("Accepting connection...");
            Log("NEW UI");
          }
        } else if (p.fd == sig_fd) {
          Log("Received termination signal, shutting down");
          return Shutdown(0);
        } else if (!ReadClient(p.fd)) {
          return Shutdown(0);  // quit
        }
      }
    }
  }

 private:
  // False when the daemon must exit (quit).
  bool ReadClient(int fd) {
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      Log("UI closed");
      close(fd);
      clients_.erase(fd);
      return true;
    }
    std::string& pending = clients_[fd];
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      bool quit = false;
      std::string answer = Handle(line, &quit);
      WriteAll(fd, answer + '\0');
      if (quit) return false;
    }
    return true;
  }

  std::string Handle(const std::string& line, bool* quit) {
    std::stringstream ss(line);
    std::vector<std::string> words;
    for (std::string w; ss >> w;) words.push_back(w);
    if (words.size() == 2 && words[0] == "client") return ClientWantsServer(words[1]);
    std::fprintf(commands_log_, "%s\n", line.c_str());
    std::fflush(commands_log_);
    Log("Cmd:" + line);
    if (words.empty()) return "";
    const std::string& cmd = words[0];
    std::string answer;
    if (cmd == "quit" && words.size() == 1) {
      *quit = true;
    } else if (cmd == "get_server_list" && words.size() == 1) {
      answer = ServerAlive() ? std::to_string(server_pid_) : "";
    } else if (cmd == "set_default_active_thread_percentage" && words.size() == 2) {
      char* end = nullptr;
      double p = std::strtod(words[1].c_str(), &end);
      if (end == words[1].c_str() || *end != '\0' || !(p > 0) || p > 100) {
        answer = "Invalid active thread percentage " + words[1] + ": expected a number in (0, 100]";
      } else {
        thread_percentage_ = p;
        answer = Percentage();
      }
    } else if (cmd == "get_default_active_thread_percentage" && words.size() == 1) {
      answer = Percentage();
    } else if (cmd == "set_default_device_pinned_mem_limit" && words.size() == 3) {
      static const std::regex kValue("^[0-9]+[MG]$");
      if (!ValidDevice(words[1])) {
        answer = "Invalid device " + words[1] + DeviceRange();
      } else if (!std::regex_match(words[2], kValue)) {
        answer = "Invalid memory limit " + words[2] +
                 ": expected an integer followed by M or G, e.g. 2048M or 2G";
      } else {
        limits_[std::stoi(words[1])] = words[2];
      }
    } else if (cmd == "get_default_device_pinned_mem_limit" && words.size() == 2) {
      if (!ValidDevice(words[1])) {
        answer = "Invalid device " + words[1] + DeviceRange();
      } else {
        auto it = limits_.find(std::stoi(words[1]));
        answer = it == limits_.end() ? "N/A" : it->second;
      }
    } else {
      answer = "Unrecognized command: " + line;
    }
    if (!answer.empty()) Log(answer);
    return answer.empty() ? answer : answer + "\n";
  }

  bool ValidDevice(const std::string& word) const {
    if (word.empty() || word.size() > 3 || word.find_first_not_of("0123456789") != word.npos) {
      return false;
    }
    return !devices_ || std::stoi(word) < *devices_;
  }
  std::string DeviceRange() const {
    if (!devices_) return "";
    return ": " + std::to_string(*devices_) + " device(s) visible to this daemon (0.." +
           std::to_string(*devices_ - 1) + ")";
  }
  std::string Percentage() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", thread_percentage_);
    return buf;
  }

  // Whether the server still runs (reaps it when it has exited).
  bool ServerAlive() {
    if (server_pid_ == 0) return false;
    int status = 0;
    if (waitpid(server_pid_, &status, WNOHANG) == server_pid_) {
      Log("Server " + std::to_string(server_pid_) + " exited");
      server_pid_ = 0;
    }
    return server_pid_ != 0;
  }

  // A CUDA client of user `uid` asks for a server: "ok" once one serves.
  std::string ClientWantsServer(const std::string& uid_text) {
    char* end = nullptr;
    const unsigned long uid = std::strtoul(uid_text.c_str(), &end, 10);
    if (end == uid_text.c_str() || *end != '\0') return "error bad user id " + uid_text;
    if (ServerAlive()) {
      if (server_uid_ == uid) {
        Log("NEW CLIENT from user " + uid_text + ": Server already exists");
        return "ok";
      }
      // The real daemon queues the client until the other user's server is
      // done; the stand-in refuses it.
      return "error the MPS server runs for user " + std::to_string(server_uid_);
    }
    const std::string path = ServerSocketPath();
    sockaddr_un addr;
    if (!FillAddress(path, &addr)) return "error server socket path too long: " + path;
    unlink(path.c_str());
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd, 64) != 0) {
      const std::string why = ErrnoText(errno);
      if (fd >= 0) close(fd);
      Log("Cannot start a server on " + path + ": " + why);
      return "error cannot listen on " + path + ": " + why;
    }
    mps::ServerSettings settings;
    settings.devices = uuids_;
    for (const auto& [dev, value] : limits_) {
      if (auto bytes = mps::ParseSize(value)) settings.pinned_limits[dev] = *bytes;
    }
    settings.active_thread_percentage = thread_percentage_;
    settings.uid = static_cast<uid_t>(uid);
    const pid_t pid = fork();
    if (pid < 0) {
      close(fd);
      return "error fork: " + ErrnoText(errno);
    }
    if (pid == 0) {  // the server: none of the daemon's descriptors or handlers
      for (const auto& [c, buf] : clients_) close(c);
      close(listen_fd_);
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      settings.log = std::fopen((LogDir() + "/server.log").c_str(), "ae");
      mps::Serve(fd, std::move(settings));
    }
    close(fd);
    server_pid_ = pid;
    server_uid_ = uid;
    Log("Starting new server " + std::to_string(pid) + " for user " + uid_text);
    return "ok";
  }

  int Shutdown(int code) {
    // The server first: a client of `quit` returns when its connection closes,
    // and by then the server must be gone.
    if (ServerAlive()) {
      kill(server_pid_, SIGTERM);
      int status = 0;
      while (waitpid(server_pid_, &status, 0) < 0 && errno == EINTR) {
      }
      Log("Server " + std::to_string(server_pid_) + " stopped");
      server_pid_ = 0;
    }
    unlink(ServerSocketPath().c_str());
    for (const auto& [fd, buf] : clients_) close(fd);
    clients_.clear();
    close(listen_fd_);
    unlink(SocketPath().c_str());
    unlink(PidPath().c_str());
    Log("Shutting down");
    return code;
  }

  static inline int self_pipe_ = -1;
  int listen_fd_;
  FILE* control_log_;
  FILE* commands_log_;
  std::optional<int> devices_;      // nullopt: CUDA_VISIBLE_DEVICES unset
  std::vector<std::string> uuids_;  // the visible devices' UUIDs when given as such
  pid_t server_pid_ = 0;
  unsigned long server_uid_ = 0;
  std::map<int, std::string> clients_;
  std::map<int, std::string> limits_;
  double thread_percentage_ = 100.0;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "nvidia-cuda-mps-control: %s\n", message.c_str());
  return 1;
}

int RunDaemon(bool background) {
  const std::string pipe_dir = PipeDir();
  const std::string log_dir = LogDir();
  if (mkdir(pipe_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Fail("cannot create pipe directory " + pipe_dir + ": " + ErrnoText(errno));
  }
  if (access(pipe_dir.c_str(), W_OK | X_OK) != 0) {
    return Fail("cannot use pipe directory " + pipe_dir + ": " + ErrnoText(errno));
  }
  if (mkdir(log_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Fail("cannot create log directory " + log_dir + ": " + ErrnoText(errno));
  }
  FILE* control_log = std::fopen((log_dir + "/control.log").c_str(), "ae");
  FILE* commands_log = std::fopen((log_dir + "/commands.log").c_str(), "ae");
  if (control_log == nullptr || commands_log == nullptr) {
    return Fail("cannot open the log in " + log_dir + ": " + ErrnoText(errno));
  }
  const std::string socket_path = SocketPath();
  if (int fd = mps::ConnectUnix(socket_path); fd >= 0) {
    close(fd);
    return Fail("An instance of this daemon is already running with pipe directory " + pipe_dir);
  }
  sockaddr_un addr;
  if (!FillAddress(socket_path, &addr)) {
    return Fail("pipe directory path too long for a unix socket: " + socket_path);
  }
  unlink(socket_path.c_str());  // stale, from a daemon that did not quit
  int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0 || bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd, 16) != 0) {
    return Fail("cannot listen on " + socket_path + ": " + ErrnoText(errno));
  }

  int ready[2] = {-1, -1};
  if (background) {
    if (pipe2(ready, O_CLOEXEC) != 0) return Fail("pipe: " + ErrnoText(errno));
    pid_t pid = fork();
    if (pid < 0) return Fail("fork: " + ErrnoText(errno));
    if (pid > 0) {  // the caller's process: returns once the daemon serves
      close(ready[1]);
      char c = 0;
      ssize_t n;
      do {
        n = read(ready[0], &c, 1);
      } while (n < 0 && errno == EINTR);
      return n == 1 ? 0 : Fail("the daemon exited during start; see " + log_dir + "/control.log");
    }
    close(ready[0]);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
      if (devnull > STDERR_FILENO) close(devnull);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  HoldDriver();  // before the caller of -d returns: from then on the driver is in use
  Daemon daemon(listen_fd, control_log, commands_log);
  {
    FILE* pid_file = std::fopen(PidPath().c_str(), "we");
    if (pid_file == nullptr) {
      daemon.Log("cannot write " + PidPath() + ": " + ErrnoText(errno));
      return 1;
    }
    std::fprintf(pid_file, "%d\n", static_cast<int>(getpid()));
    std::fclose(pid_file);
  }
  daemon.Log("Starting control daemon using socket " + socket_path);
  daemon.Log("To connect CUDA applications to this daemon, set env CUDA_MPS_PIPE_DIRECTORY=" +
             pipe_dir);
  if (background) {
    char c = 1;
    [[maybe_unused]] ssize_t n = write(ready[1], &c, 1);
    close(ready[1]);
  }
  return daemon.Serve();
}

// --- Client -----------------------------------------------------------------

int RunClient() {
  int fd = mps::ConnectUnix(SocketPath());
  if (fd < 0) {
    std::fprintf(stderr, "Cannot find MPS control daemon process\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  std::string line;
  int c;
  bool eof = false;
  while (!eof) {
    line.clear();
    while ((c = std::getchar()) != EOF && c != '\n') line.push_back(static_cast<char>(c));
    eof = c == EOF;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!WriteAll(fd, line + "\n")) {
      std::fprintf(stderr, "Lost connection to the MPS control daemon\n");
      return 1;
    }
    std::string answer;
    char ch;
    ssize_t n;
    while ((n = read(fd, &ch, 1)) == 1 && ch != '\0') answer.push_back(ch);
    if (n != 1) {
      std::fprintf(stderr, "Lost connection to the MPS control daemon\n");
      return 1;
    }
    std::fputs(answer.c_str(), stdout);
    std::fflush(stdout);
    std::string first_word;
    std::stringstream(line) >> first_word;
    if (first_word == "quit") {
      // Returns once the daemon is gone, as the real client does.
      while (read(fd, &ch, 1) > 0) {
      }
      break;
    }
  }
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return RunClient();
  std::string arg = argv[1];
  if (argc == 2 && arg == "-d") return RunDaemon(true);
  if (argc == 2 && arg == "-f") return RunDaemon(false);
  std::fprintf(stderr, "usage: nvidia-cuda-mps-control [-d | -f]\n");
  return 2;
}
