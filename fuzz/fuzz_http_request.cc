// libFuzzer target for the HTTP endpoint's request parsing (src/metrics): the
// input is a request head as a client could send it. Besides crashes and
// sanitizer reports it checks that a refusal is 400 or 505 and says why, that
// an accepted path is a path without its query, and that the response always
// starts with a status line and carries the body's length.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/metrics/http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  gdp::metrics::detail::RequestHead r = gdp::metrics::detail::ParseRequestHead(head);
  if (r.error != 0 && r.error != 400 && r.error != 505) std::abort();
  if (r.error != 0 && r.reason.empty()) std::abort();
  if (r.error == 0) {
    if (r.method.empty() || r.path.empty() || r.path[0] != '/') std::abort();
    if (r.path.find_first_of("?# \r\n") != std::string::npos) std::abort();
  }
  gdp::metrics::HttpResponse response{r.error == 0 ? 200 : r.error, "text/plain",
                                      std::string(head)};
  std::string out = gdp::metrics::detail::RenderResponse(r, response);
  if (out.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  if (out.find("\r\nContent-Length: " + std::to_string(size) + "\r\n") == std::string::npos) {
    std::abort();
  }
  return 0;
}
