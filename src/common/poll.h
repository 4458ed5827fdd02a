// PollUntil: waits until a non-blocking descriptor is ready, a deadline passes,
// or another descriptor (an eventfd a component signals to stop) turns
// readable. Used by the HTTP endpoint and the API client's sockets; stateless
// and thread-safe.
#pragma once

#include <chrono>

namespace gdp {

enum class PollResult { kReady, kTimeout, kWoken, kError };

// `events`: POLLIN or POLLOUT. kError leaves errno set. EINTR is retried.
PollResult PollUntil(int fd, short events, std::chrono::steady_clock::time_point deadline,
                     int wake_fd = -1);

}  // namespace gdp
