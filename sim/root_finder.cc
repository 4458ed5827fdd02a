#include "sim/root_finder.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "sim/fd_passing.h"
#include "sim/root.h"

namespace gdp::sim {
namespace {

constexpr char kLibDir[] = "/usr/lib/x86_64-linux-gnu";

// The handed-over root, kept for the process's life; -1 until handed.
int g_handed_fd = -1;

// Read-only lookups; the simulator never modifies the environment.
std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe)
  return v != nullptr && *v != '\0' ? v : fallback;
}

// <root> of a library at <root>/usr/lib/x86_64-linux-gnu/<file>; "" otherwise.
std::string RootAround(const std::filesystem::path& library) {
  const std::string dir = library.parent_path().string();
  const std::string suffix = kLibDir;
  if (dir.size() < suffix.size() ||
      dir.compare(dir.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return "";
  }
  const std::string root = dir.substr(0, dir.size() - suffix.size());
  return root.empty() ? "/" : root;
}

std::string HandedRoot() {
  if (g_handed_fd >= 0) return "/proc/self/fd/" + std::to_string(g_handed_fd);
  const std::string path = Env("GPUSIM_PERSISTENCED_SOCKET", "/run/nvidia-persistenced/socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return "";
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return "";
  const int fd = connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? RecvFd(s) : -1;
  close(s);
  if (fd < 0) return "";
  g_handed_fd = fd;
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace

FoundRoot FindDriverRoot(const void* self) {
  if (std::string env = Env(kRootEnv, ""); !env.empty()) return {env, false};
  std::string root;
  Dl_info info{};
  if (dladdr(self, &info) != 0 && info.dli_fname != nullptr) {
    // The path as loaded (a symlink farm is a root too), without "..": a
    // program's RPATH of $ORIGIN/../lib/... loads it as <root>/usr/bin/../lib/...
    const std::filesystem::path loaded = std::filesystem::path(info.dli_fname).lexically_normal();
    root = RootAround(loaded);
    char resolved[PATH_MAX];
    if (root.empty() && realpath(loaded.parent_path().c_str(), resolved) != nullptr) {
      root = RootAround(std::filesystem::path(resolved) / loaded.filename());
    }
  }
  // A library without its root around it (in a container): the handed-over one.
  std::error_code ec;
  if (root.empty() || !std::filesystem::exists(ConfigPath(root), ec)) {
    if (std::string handed = HandedRoot(); !handed.empty()) return {handed, true};
  }
  return {root, false};
}

bool UsableInThisProcess(unsigned minor) {
  const std::string node = Env("GPUSIM_DEV_DIR", "/dev") + "/nvidia" + std::to_string(minor);
  const int fd = open(node.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return true;
  }
  return errno == ENXIO;
}

}  // namespace gdp::sim
