#include "sim/mps_server.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "sim/mps_protocol.h"

namespace gdp::sim::mps {

void LogLine(FILE* log, const char* role, const std::string& message) {
  if (log == nullptr) return;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::fprintf(log, "[%s.%03d %s %d] %s\n", stamp, static_cast<int>(ms.count()), role,
               static_cast<int>(getpid()), message.c_str());
  std::fflush(log);
}

namespace {

struct Client {
  std::string pending;            // bytes of a request not yet ended by '\n'
  int pid = 0;                    // from its hello; 0 until then
  std::map<int, uint64_t> limit;  // device -> bytes (absent: none)
  std::map<int, uint64_t> held;   // device -> bytes allocated
};

class Server {
 public:
  Server(int listen_fd, ServerSettings settings)
      : listen_fd_(listen_fd), settings_(std::move(settings)) {}

  [[noreturn]] void Run() {
    Log("Server has started for user " + std::to_string(settings_.uid));
    for (;;) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (const auto& [fd, c] : clients_) fds.push_back({fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR
      for (const pollfd& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == listen_fd_) {
          const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (fd >= 0) clients_[fd] = Client{};
        } else {
          Read(p.fd);
        }
      }
    }
  }

 private:
  void Log(const std::string& message) { LogLine(settings_.log, "Server", message); }

  void Read(int fd) {
    char buf[1024];
    const ssize_t n = read(fd, buf, sizeof buf);
    Client& c = clients_[fd];
    if (n <= 0) {
      if (c.pid != 0) Log("Client " + std::to_string(c.pid) + " disconnected");
      close(fd);
      clients_.erase(fd);
      return;
    }
    c.pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = c.pending.find('\n')) != std::string::npos) {
      const std::string line = c.pending.substr(0, nl);
      c.pending.erase(0, nl + 1);
      const std::string answer = Handle(c, line) + '\0';
      [[maybe_unused]] ssize_t w = send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
    }
  }

  unsigned Connected() const {
    unsigned n = 0;
    for (const auto& [fd, c] : clients_) n += c.pid != 0 ? 1 : 0;
    return n;
  }

  std::string Handle(Client& c, const std::string& line) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "hello") {
      int pid = 0;
      if (!(in >> pid) || pid <= 0) return "error bad hello";
      if (Connected() >= kMaxClients) {
        Log("Client " + std::to_string(pid) + " refused: " + std::to_string(kMaxClients) +
            " clients already connected");
        return "error max_clients";
      }
      c.pid = pid;
      Log("New client " + std::to_string(pid) + " connected");
      std::string devices;
      for (const std::string& d : settings_.devices) devices += (devices.empty() ? "" : ",") + d;
      return "ok " + (devices.empty() ? std::string("*") : devices);
    }
    if (c.pid == 0) return "error hello first";
    int dev = -1;
    if (!(in >> dev) || dev < 0) return "error bad device";
    if (verb == "ctx") {
      std::string bytes, pct;
      in >> bytes >> pct;
      // The daemon's default, lowered (never raised) by the client's own value.
      std::optional<uint64_t> limit;
      if (auto it = settings_.pinned_limits.find(dev); it != settings_.pinned_limits.end()) {
        limit = it->second;
      }
      if (bytes != "-") {
        const uint64_t asked = std::strtoull(bytes.c_str(), nullptr, 10);
        if (asked > 0 && (!limit || asked < *limit)) limit = asked;
      }
      double share = settings_.active_thread_percentage;
      if (pct != "-") {
        if (auto p = ParsePercentage(pct.c_str()); p && *p < share) share = *p;
      }
      if (limit) {
        c.limit[dev] = *limit;
      } else {
        c.limit.erase(dev);
      }
      char answer[64];
      std::snprintf(answer, sizeof answer, "ok %llu %.1f",
                    static_cast<unsigned long long>(limit.value_or(0)), share);
      return answer;
    }
    uint64_t bytes = 0;
    if (!(in >> bytes)) return "error bad size";
    if (verb == "alloc") {
      uint64_t& held = c.held[dev];
      auto it = c.limit.find(dev);
      if (it != c.limit.end() && held + bytes > it->second) {
        Log("Client " + std::to_string(c.pid) + " out of memory on device " + std::to_string(dev) +
            ": asked " + std::to_string(bytes >> 20) + " MiB, holds " + std::to_string(held >> 20) +
            " MiB of its " + std::to_string(it->second >> 20) + " MiB limit");
        return "oom " + std::to_string(it->second) + " " + std::to_string(held);
      }
      held += bytes;
      return "ok";
    }
    if (verb == "free") {
      uint64_t& held = c.held[dev];
      held = bytes > held ? 0 : held - bytes;
      return "ok";
    }
    return "error unknown request " + verb;
  }

  const int listen_fd_;
  const ServerSettings settings_;
  std::map<int, Client> clients_;
};

}  // namespace

void Serve(int listen_fd, ServerSettings settings) {
  signal(SIGPIPE, SIG_IGN);
  Server(listen_fd, std::move(settings)).Run();
}

}  // namespace gdp::sim::mps
