#include "src/common/poll.h"

#include <poll.h>

#include <cerrno>

namespace gdp {

PollResult PollUntil(int fd, short events, std::chrono::steady_clock::time_point deadline,
                     int wake_fd) {
  for (;;) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return PollResult::kTimeout;
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PollResult::kError;
    if (wake_fd >= 0 && (fds[1].revents & POLLIN) != 0) return PollResult::kWoken;
    // POLLERR/POLLHUP count as ready: the next read or write says what happened.
    if (n > 0) return PollResult::kReady;
  }
}

}  // namespace gdp
