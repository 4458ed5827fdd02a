// kubectl-gpu: the counting and joining logic against a StrictMock API client
// and daemon client, then the real binary against a fake API server and a fake
// gpu-device-plugin endpoint on 127.0.0.1, reached through a kubeconfig.
#include "tools/kubectl-gpu/cluster_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/process.h"
#include "tests/mocks/mock_api_client.h"

namespace gdp::kubectl_gpu {
namespace {

using nlohmann::json;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StartsWith;
using ::testing::StrictMock;

class MockDaemonClient : public DaemonClient {
 public:
  MOCK_METHOD(absl::StatusOr<json>, Get,
              (const std::string& host, int port, const std::string& path), (override));
};

json Node(const std::string& name, const std::string& ip, json labels, long capacity,
          long allocatable) {
  json addresses = json::array();
  if (!ip.empty()) addresses.push_back({{"type", "InternalIP"}, {"address", ip}});
  return {{"metadata", {{"name", name}, {"labels", labels}}},
          {"status",
           {{"addresses", addresses},
            {"capacity", {{"cpu", "16"}, {"nvidia.com/gpu", std::to_string(capacity)}}},
            {"allocatable", {{"cpu", "16"}, {"nvidia.com/gpu", std::to_string(allocatable)}}}}}};
}

json Container(const std::string& name, json resources) {
  return {{"name", name}, {"resources", resources}};
}

json Pod(const std::string& ns, const std::string& name, const std::string& node,
         const std::string& phase, json containers) {
  return {{"metadata", {{"namespace", ns}, {"name", name}}},
          {"spec", {{"nodeName", node}, {"containers", containers}}},
          {"status", {{"phase", phase}}}};
}

// A gpu-device-plugin pod whose "metrics" port is not the default.
json PluginPod(const std::string& node, const std::string& host_ip, int port) {
  json pod = Pod("kube-system", "gpu-device-plugin-x", node, "Running",
                 {{{"name", "gpu-device-plugin"},
                   {"ports", {{{"name", "metrics"}, {"containerPort", port}}}}}});
  pod["metadata"]["labels"] = {{"app.kubernetes.io/name", "gpu-device-plugin"}};
  pod["status"]["hostIP"] = host_ip;
  return pod;
}

// node-a: 8 H100 (labelled), one unhealthy; node-b: 4 T4 (no label), its
// plugin pod names port 9200 on host 10.0.0.3, unreachable.
json Nodes() {
  return {
      {"items",
       {Node("node-a", "127.0.0.1",
             {{"nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"}, {"nvidia.com/gpu.count", "8"}},
             8, 7),
        Node("node-b", "10.0.0.2", json::object(), 4, 4)}}};
}

json Pods() {
  return {{"items",
           {Pod("default", "train", "node-a", "Running",
                {Container("main", {{"requests", {{"nvidia.com/gpu", "2"}}},
                                    {"limits", {{"nvidia.com/gpu", "2"}}}}),
                 Container("sidecar", {{"requests", {{"cpu", "1"}}}})}),
            Pod("ml", "infer", "node-a", "Pending",
                {Container("server", {{"limits", {{"nvidia.com/gpu", "1"}}}})}),
            Pod("ml", "done", "node-a", "Succeeded",
                {Container("c", {{"limits", {{"nvidia.com/gpu", "4"}}}})}),
            Pod("ml", "t4", "node-b", "Running",
                {Container("c", {{"limits", {{"nvidia.com/gpu", "3"}}}})}),
            PluginPod("node-b", "10.0.0.3", 9200),
            Pod("ml", "unscheduled", "", "Pending",
                {Container("c", {{"limits", {{"nvidia.com/gpu", "1"}}}})})}}};
}

json Allocations() {
  return {
      {"resources",
       {{{"name", "nvidia.com/gpu"},
         {"devices",
          {{{"id", "GPU-0"},
            {"holders", {{{"namespace", "default"}, {"pod", "train"}, {"container", "main"}}}}},
           {{"id", "GPU-1"},
            {"holders", {{{"namespace", "default"}, {"pod", "train"}, {"container", "main"}}}}},
           {{"id", "GPU-2"}, {"holders", json::array()}},
           {{"id", "GPU-5"},
            {"holders", {{{"namespace", "ml"}, {"pod", "infer"}, {"container", "server"}}}}}}}}}}};
}

TEST(BuildClusterViewTest, CountsAndHoldersPerNode) {
  StrictMock<kube::MockApiClient> api;
  StrictMock<MockDaemonClient> daemon;
  EXPECT_CALL(api, Get("/api/v1/nodes")).WillOnce(Return(Nodes()));
  EXPECT_CALL(api, Get(StartsWith("/api/v1/pods"))).WillOnce(Return(Pods()));
  EXPECT_CALL(daemon, Get("127.0.0.1", 9101, "/allocations")).WillOnce(Return(Allocations()));
  EXPECT_CALL(daemon, Get("10.0.0.3", 9200, "/allocations"))
      .WillOnce(Return(absl::UnavailableError("connection refused")));

  absl::StatusOr<std::vector<NodeView>> view = BuildClusterView(api, daemon);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->size(), 2u);
  const NodeView& a = (*view)[0];
  EXPECT_EQ(a.name, "node-a");
  EXPECT_EQ(a.products, (std::map<std::string, long>{{"NVIDIA-H100-80GB-HBM3", 8}}));
  ASSERT_EQ(a.resources.size(), 1u);
  EXPECT_EQ(a.resources[0].capacity, 8);
  EXPECT_EQ(a.resources[0].allocatable, 7);
  EXPECT_EQ(a.resources[0].in_use, 3);  // train 2 + infer 1; the Succeeded pod holds nothing
  EXPECT_EQ(a.resources[0].unhealthy, 1);
  ASSERT_EQ(a.holdings.size(), 2u);
  EXPECT_EQ(a.holdings[0].pod, "train");
  EXPECT_EQ(a.holdings[0].count, 2);
  EXPECT_THAT(a.holdings[0].devices, ::testing::ElementsAre("GPU-0", "GPU-1"));
  EXPECT_EQ(a.holdings[1].pod, "infer");
  EXPECT_THAT(a.holdings[1].devices, ::testing::ElementsAre("GPU-5"));
  EXPECT_TRUE(a.daemon_reached);

  const NodeView& b = (*view)[1];
  EXPECT_EQ(b.resources[0].in_use, 3);
  EXPECT_EQ(b.resources[0].unhealthy, 0);
  EXPECT_EQ(b.address, "10.0.0.3:9200");  // from its plugin pod, not InternalIP:9101
  EXPECT_FALSE(b.daemon_reached);
  EXPECT_THAT(b.daemon_error, HasSubstr("connection refused"));
  EXPECT_TRUE(b.products.empty());
  EXPECT_TRUE(b.holdings[0].devices.empty());

  EXPECT_EQ(RenderTable(*view),
            "NODE    GPUS                      RESOURCE        CAPACITY  ALLOCATABLE  IN USE  "
            "UNHEALTHY\n"
            "node-a  8x NVIDIA-H100-80GB-HBM3  nvidia.com/gpu  8         7            3       1\n"
            "node-b  -                         nvidia.com/gpu  4         4            3       0\n"
            "\n"
            "NODE    NAMESPACE/POD/CONTAINER  RESOURCE        COUNT  DEVICES\n"
            "node-a  default/train/main       nvidia.com/gpu  2      GPU-0,GPU-1\n"
            "node-a  ml/infer/server          nvidia.com/gpu  1      GPU-5\n"
            "node-b  ml/t4/c                  nvidia.com/gpu  3      ?\n"
            "\n"
            "? node-b: devices unknown: connection refused\n");
}

TEST(BuildClusterViewTest, ProductFromTheDaemonsInventoryWithoutALabel) {
  StrictMock<kube::MockApiClient> api;
  StrictMock<MockDaemonClient> daemon;
  EXPECT_CALL(api, Get("/api/v1/nodes?fieldSelector=metadata.name%3Dnode-b"))
      .WillOnce(Return(json{{"items", {Nodes()["items"][1]}}}));
  EXPECT_CALL(api, Get(StartsWith("/api/v1/pods")))
      .WillOnce(Return(json{{"items", json::array()}}));
  EXPECT_CALL(daemon, Get("10.0.0.2", 9101, "/allocations"))
      .WillOnce(Return(json{{"resources", json::array()}}));
  EXPECT_CALL(daemon, Get("10.0.0.2", 9101, "/inventory"))
      .WillOnce(Return(json{{"gpus", {{{"name", "Tesla T4"}}, {{"name", "Tesla T4"}}}}}));
  auto view = BuildClusterView(api, daemon, Options{"node-b"});
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->size(), 1u);
  EXPECT_EQ((*view)[0].products, (std::map<std::string, long>{{"Tesla T4", 2}}));
  const json j = ToJson(*view);
  EXPECT_EQ(j["nodes"][0]["resources"][0]["unhealthy"], 0);
  EXPECT_EQ(j["nodes"][0]["daemonReached"], true);
}

TEST(BuildClusterViewTest, ApiServerErrorIsReturned) {
  StrictMock<kube::MockApiClient> api;
  StrictMock<MockDaemonClient> daemon;
  EXPECT_CALL(api, Get("/api/v1/nodes"))
      .WillOnce(Return(absl::PermissionDeniedError("GET /api/v1/nodes: HTTP 403")));
  auto view = BuildClusterView(api, daemon);
  ASSERT_FALSE(view.ok());
  EXPECT_THAT(view.status().message(), HasSubstr("403"));
}

// The daemon client against an HTTPS endpoint: verified with the daemon's CA,
// refused without it, and taken knowingly with verification off.
TEST(HttpDaemonClientTest, ReadsDaemonsThatServeTls) {
  char tmpl[] = "/tmp/gdp-kg-tls-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string crt = dir + "/tls.crt", key = dir + "/tls.key";
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + crt + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);  // NOLINT(concurrency-mt-unsafe)
  httplib::SSLServer server(crt.c_str(), key.c_str());
  server.Get("/allocations", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"resources": []})", "application/json");
  });
  // As a daemon with metrics.auth answers.
  server.Get("/guarded", [](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == "Bearer s3cret") {
      res.set_content(R"({"resources": []})", "application/json");
    } else {
      res.status = 401;
      res.set_content("this endpoint needs a Kubernetes bearer token\n", "text/plain");
    }
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });
  ASSERT_TRUE(
      testing::Eventually([&] { return server.is_running(); }, std::chrono::milliseconds(5000)));
  DaemonAccess tls;
  tls.tls = true;
  tls.ca_file = crt;
  auto got = HttpDaemonClient(2, tls).Get("127.0.0.1", port, "/allocations");
  EXPECT_TRUE(got.ok()) << got.status();
  tls.ca_file.clear();  // the system's CAs do not know it
  got = HttpDaemonClient(2, tls).Get("127.0.0.1", port, "/allocations");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("GET https://127.0.0.1:"));
  tls.skip_verify = true;
  EXPECT_TRUE(HttpDaemonClient(2, tls).Get("127.0.0.1", port, "/allocations").ok());
  // Plain HTTP to it gets no JSON.
  EXPECT_FALSE(HttpDaemonClient(2).Get("127.0.0.1", port, "/allocations").ok());
  // A daemon that checks callers: its reason, and what to pass.
  got = HttpDaemonClient(2, tls).Get("127.0.0.1", port, "/guarded");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(got.status().message(),
              HasSubstr("HTTP 401: this endpoint needs a Kubernetes bearer token; the daemons "
                        "check callers (metrics.auth): pass --daemon-token-file"));
  tls.token = "s3cret";
  EXPECT_TRUE(HttpDaemonClient(2, tls).Get("127.0.0.1", port, "/guarded").ok());
  server.stop();
  thread.join();
  std::filesystem::remove_all(dir);
}

// --- the binary against fake servers on 127.0.0.1 -----------------------------

class FakeServer {
 public:
  explicit FakeServer(std::function<void(httplib::Server&)> routes) {
    routes(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib 0.11 has no wait_until_ready; stop() is a no-op before the loop runs.
    EXPECT_TRUE(testing::Eventually([this] { return server_.is_running(); },
                                    std::chrono::milliseconds(5000)));
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

class KubectlGpuBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-kg-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Kubeconfig(int api_port) {
    const std::string path = dir_ + "/kubeconfig";
    std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                        << "clusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:"
                        << api_port << "\n"
                        << "users:\n- name: u\n  user:\n    token: secret\n"
                        << "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n";
    return path;
  }
  std::string dir_;
};

TEST_F(KubectlGpuBinaryTest, TableAndJsonThroughAKubeconfig) {
  std::atomic<int> authorized{0};
  FakeServer api([&](httplib::Server& s) {
    s.Get("/api/v1/nodes", [&](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") == "Bearer secret") ++authorized;
      json nodes = Nodes();
      nodes["items"].erase(1);  // only node-a: its daemon is the fake below
      res.set_content(nodes.dump(), "application/json");
    });
    s.Get("/api/v1/pods", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(Pods().dump(), "application/json");
    });
  });
  FakeServer daemon([](httplib::Server& s) {
    s.Get("/allocations", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(Allocations().dump(), "application/json");
    });
  });
  const std::string kubeconfig = Kubeconfig(api.port());
  const std::string port = std::to_string(daemon.port());

  std::string out;
  ASSERT_EQ(testing::RunCommand({GDP_KUBECTL_GPU_BIN, "--kubeconfig", kubeconfig, "--daemon-port",
                                 port, "-o", "json"},
                                &out),
            0)
      << out;
  const json j = json::parse(out);
  ASSERT_EQ(j["nodes"].size(), 1u);
  EXPECT_EQ(j["nodes"][0]["resources"][0]["inUse"], 3);
  EXPECT_EQ(j["nodes"][0]["holdings"][0]["devices"], json({"GPU-0", "GPU-1"}));
  EXPECT_GE(authorized.load(), 1);

  // $KUBECONFIG, as kubectl reads it; table output.
  ASSERT_EQ(testing::RunCommand({"/usr/bin/env", "KUBECONFIG=" + kubeconfig, GDP_KUBECTL_GPU_BIN,
                                 "--daemon-port", port},
                                &out),
            0)
      << out;
  EXPECT_THAT(out,
              HasSubstr("node-a  default/train/main       nvidia.com/gpu  2      GPU-0,GPU-1"));
}

TEST_F(KubectlGpuBinaryTest, UnreachableApiServerExitsOne) {
  const int port = testing::FreeLocalPort();
  std::string out;
  EXPECT_EQ(
      testing::RunCommand(
          {GDP_KUBECTL_GPU_BIN, "--kubeconfig", Kubeconfig(port), "--request-timeout", "2"}, &out),
      1);
  EXPECT_THAT(out, HasSubstr("127.0.0.1"));
  EXPECT_EQ(testing::RunCommand({GDP_KUBECTL_GPU_BIN, "--kubeconfig", dir_ + "/missing"}, &out), 2);
}

}  // namespace
}  // namespace gdp::kubectl_gpu
