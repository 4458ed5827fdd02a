// What the simulated MPS parts say to each other: the control daemon and its
// server (sim/mps_control_standin.cc, sim/mps_server.cc) and the simulated
// libcuda (sim/cuda_sim.cc), which is their client. Where the sockets are and
// who asks whom follow the real MPS: a CUDA client finds the control daemon's
// socket `control` in $CUDA_MPS_PIPE_DIRECTORY (default /tmp/nvidia-mps),
// asks it for a server, and then talks to that server, which holds the limits
// (the control daemon's defaults when the server started, lowered, never
// raised, by the client's own CUDA_MPS_* environment). The wire format is the
// simulator's own (NVIDIA's is private): a request is one line ending in '\n',
// an answer is text ending in '\0'.
//
//   control: "client <uid>"                 -> "ok" once a server serves | "error <why>"
//   server:  "hello <pid>"                  -> "ok <uuid>,<uuid>..." (the server's devices
//                                              in its order) or "ok *" (all) | "error <why>"
//            "ctx <dev> <bytes|-> <pct|->"  -> "ok <limit bytes, 0: none> <percentage>"
//            "alloc <dev> <bytes>"          -> "ok" | "oom <limit bytes> <held bytes>"
//            "free <dev> <bytes>"           -> "ok"
//
// Header-only helpers used by separate binaries; every function is
// thread-safe.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace gdp::sim::mps {

inline constexpr char kDefaultPipeDirectory[] = "/tmp/nvidia-mps";
inline constexpr char kControlSocket[] = "control";
// The server's socket, beside the control daemon's.
inline constexpr char kServerSocket[] = "gpusim-server";
// Clients one server takes at most (NVIDIA's MPS: 48 per device since Volta).
inline constexpr unsigned kMaxClients = 48;

// "2048M", "2G", "512MB", "1GB" -> bytes; nullopt when malformed or zero.
inline std::optional<uint64_t> ParseSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  uint64_t scale = 0;
  if (unit == "M" || unit == "MB") scale = 1ULL << 20;
  if (unit == "G" || unit == "GB") scale = 1ULL << 30;
  if (scale == 0) return std::nullopt;
  const uint64_t n = std::stoull(std::string(text.substr(0, digits)));
  if (n == 0) return std::nullopt;
  return n * scale;
}

// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT, "0=1G,1=512M": device -> bytes. Malformed
// entries are left out (the server's default then holds for that device).
inline std::map<int, uint64_t> ParsePinnedLimits(std::string_view text) {
  std::map<int, uint64_t> limits;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view entry = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t eq = entry.find('=');
    if (eq == 0 || eq == std::string_view::npos || eq > 3) continue;
    const std::string_view dev = entry.substr(0, eq);
    if (dev.find_first_not_of("0123456789") != std::string_view::npos) continue;
    if (auto bytes = ParseSize(entry.substr(eq + 1))) {
      limits[std::stoi(std::string(dev))] = *bytes;
    }
  }
  return limits;
}

// CUDA_MPS_ACTIVE_THREAD_PERCENTAGE: a number in (0, 100]; nullopt otherwise.
inline std::optional<double> ParsePercentage(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const double p = std::strtod(text, &end);
  if (*end != '\0' || !(p > 0) || p > 100) return std::nullopt;
  return p;
}

// A connected stream socket to `path`, or -1.
inline int ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -1;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` and a '\n', then reads the answer up to its '\0'; nullopt
// when the peer has gone.
inline std::optional<std::string> Ask(int fd, const std::string& request) {
  const std::string line = request + '\n';
  for (size_t off = 0; off < line.size();) {
    const ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    off += static_cast<size_t>(n);
  }
  std::string answer;
  for (;;) {
    char c = 0;
    const ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) return std::nullopt;
    if (c == '\0') return answer;
    answer.push_back(c);
  }
}

}  // namespace gdp::sim::mps
