// The text for an errno value, for the simulator's error messages. The
// simulator does not link gdp::common, so this is its own copy of
// gdp::ErrnoString. Stateless; thread-safe (unlike std::strerror).
#pragma once

#include <cstring>
#include <string>

namespace gdp::sim {

inline std::string ErrnoString(int err) {
  char buf[256];
  // GNU strerror_r: returns either a static string or one written into buf.
  return ::strerror_r(err, buf, sizeof(buf));
}

}  // namespace gdp::sim
