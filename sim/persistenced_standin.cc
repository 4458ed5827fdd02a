// A stand-in for NVIDIA's nvidia-persistenced, for machines without a driver.
//
// The real daemon keeps the GPUs initialised and listens on
// /var/run/nvidia-persistenced/socket, a socket NVIDIA's container toolkit
// (and this plugin's CDI spec) mounts into GPU containers. The stand-in
// listens on <root>/run/nvidia-persistenced/socket and hands every client the
// simulated driver itself: an O_PATH descriptor of the driver root, passed
// with SCM_RIGHTS, as the kernel driver hands a process its device files. The
// simulator library in a container, which has only the files a CDI spec
// mounts, reaches the driver's shared state through it (docs/simulator.md).
// It speaks none of the real daemon's RPC.
//
//   nvidia-persistenced               start in the background, return once it serves
//   nvidia-persistenced --foreground  serve in the foreground
//
// The root is $GPUSIM_ROOT, else the directory this program is installed
// under (<root>/usr/bin/nvidia-persistenced). The pid file is
// nvidia-persistenced.pid beside the socket; SIGTERM or SIGINT removes both
// and exits.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "sim/fd_passing.h"

namespace {

constexpr char kSuffix[] = "/usr/bin/nvidia-persistenced";

volatile std::sig_atomic_t g_stop = 0;
void OnStop(int) { g_stop = 1; }

std::string Root() {
  // Read once at start, before any thread exists.
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  if (const char* env = std::getenv("GPUSIM_ROOT"); env != nullptr && *env != '\0') return env;
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return "";
  const std::string path(exe, static_cast<size_t>(n));
  const std::string suffix = kSuffix;
  if (path.size() <= suffix.size() ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return "";
  }
  return path.substr(0, path.size() - suffix.size());
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "nvidia-persistenced: %s\n", what.c_str());
  return 1;
}

std::string ErrnoText(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);  // GNU variant returns the text
}

// Sends one byte and an O_PATH descriptor of `root` to the client.
void HandOver(int client, const std::string& root) {
  const int dir = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  gdp::sim::SendFd(client, dir);
  close(dir);
}

}  // namespace

int main(int argc, char** argv) {
  bool foreground = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--foreground" || a == "-f") {
      foreground = true;
    } else {
      return Fail("usage: nvidia-persistenced [--foreground]");
    }
  }
  const std::string root = Root();
  if (root.empty()) {
    return Fail(std::string("cannot find the driver root: install this program as <root>") +
                kSuffix + " or set GPUSIM_ROOT");
  }
  const std::string dir = root + "/run/nvidia-persistenced";
  const std::string socket_path = dir + "/socket";
  const std::string pid_path = dir + "/nvidia-persistenced.pid";
  mkdir(dir.c_str(), 0755);

  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (listener < 0 || socket_path.size() >= sizeof addr.sun_path) {
    return Fail("cannot create the socket " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  unlink(socket_path.c_str());  // a stale socket of a killed daemon
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener, 64) != 0) {
    return Fail("cannot listen on " + socket_path + ": " + ErrnoText(errno));
  }
  chmod(socket_path.c_str(), 0666);  // clients in containers may run as any user

  if (!foreground) {
    const pid_t child = fork();
    if (child < 0) return Fail("fork: " + ErrnoText(errno));
    if (child > 0) return 0;  // it already listens: a client may connect now
    setsid();
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
  }
  std::ofstream(pid_path) << getpid() << "\n";
  struct sigaction sa {};
  sa.sa_handler = OnStop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  while (g_stop == 0) {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int client = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    HandOver(client, root);
    close(client);
  }
  unlink(socket_path.c_str());
  unlink(pid_path.c_str());
  return 0;
}
