#include "src/metrics/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>

namespace gdp::metrics {
namespace {

TEST(HttpServerTest, ServesRegisteredHandlersOnAFreePort) {
  HttpServer server("127.0.0.1", 0);
  std::atomic<int> calls{0};
  server.Handle("/readyz", [&] {
    ++calls;
    return HttpResponse{503, "text/plain", "not ready: NVML not initialised\n"};
  });
  ASSERT_TRUE(server.Start().ok());
  ASSERT_GT(server.port(), 0);

  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not ready: NVML not initialised\n");
  EXPECT_EQ(calls.load(), 1);

  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  server.Stop();
}

TEST(HttpServerTest, PortInUseIsAClearError) {
  HttpServer first("127.0.0.1", 0);
  ASSERT_TRUE(first.Start().ok());
  HttpServer second("127.0.0.1", first.port());
  absl::Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--metrics-port"), std::string::npos) << s;
}

}  // namespace
}  // namespace gdp::metrics
