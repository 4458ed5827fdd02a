// Metrics end to end over the simulator:
//  - a golden exposition of the GPU collector for the t4x4 profile (NVML
//    through DlNvml and the simulator library, byte for byte; energy, which
//    integrates power over wall time, is compared after masking), linted by
//    `promtool check metrics`;
//  - a real Prometheus server on 127.0.0.1 scraping the real daemon: a value
//    set with `gpusim set` comes back through PromQL, with the namespace, pod
//    and container of the pod the GPU was allocated to (the pod-resources API
//    is served by tests/kubelet_stub's PodResourcesStub).
// Set GDP_UPDATE_GOLDEN=1 to rewrite the golden files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "src/common/filesystem.h"
#include "src/metrics/gpu_collector.h"
#include "src/nvml/dl_nvml.h"
#include "src/nvml/inventory.h"
#include "tests/integration/process.h"
#include "tests/kubelet_stub/kubelet_stub.h"
#include "tests/kubelet_stub/pod_resources_stub.h"

namespace gdp::testing {
namespace {

using kubelet_stub::In;
using kubelet_stub::KubeletStub;
using kubelet_stub::PluginClient;
using kubelet_stub::PodResourcesStub;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Energy grows with wall time; everything else in the golden is fixed.
std::string MaskEnergy(const std::string& text) {
  static const std::regex kEnergy(
      R"(((?:gdp_gpu_energy_joules_total|DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION)\{[^}]*\}) [0-9.e+]+)");
  return std::regex_replace(text, kEnergy, "$1 <energy>");
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-mt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    plugin_dir_ = dir_ + "/dp";
    ASSERT_EQ(mkdir(plugin_dir_.c_str(), 0755), 0);
  }
  void TearDown() override {
    prometheus_.reset();
    daemon_.reset();
    stub_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Run(const std::vector<std::string>& argv) {
    std::string out;
    ASSERT_EQ(RunCommand(argv, &out), 0) << out;
  }
  // Starts a real Prometheus scraping every second with these scrape_configs
  // entries; its port.
  int StartPrometheus(const std::string& scrape_configs) {
    const int port = FreeLocalPort();
    const std::string config = dir_ + "/prometheus.yml";
    std::ofstream(config) << "global:\n  scrape_interval: 1s\nscrape_configs:\n" << scrape_configs;
    prometheus_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + config,
                                 "--storage.tsdb.path=" + dir_ + "/tsdb",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port)},
        std::map<std::string, std::string>{}, dir_ + "/prometheus.log");
    return port;
  }

  void LayRoot(const std::string& profile) {
    Run({GDP_GPUSIM_BIN, "root", root_, "--profile", profile, "--no-mknod"});
  }
  void Gpusim(std::vector<std::string> args) {
    args.insert(args.begin(), {GDP_GPUSIM_BIN, "--root", root_});
    Run(args);
  }

  std::string dir_, root_, plugin_dir_;
  std::unique_ptr<KubeletStub> stub_;
  std::unique_ptr<Process> daemon_;
  std::unique_ptr<Process> prometheus_;
};

// Renders the GPU families for the simulator root, as the daemon's sampler does.
std::string RenderSimulatedGpus(const std::string& root, bool dcgm) {
  auto path = nvml::FindNvmlLibrary(PosixFileSystem::Get(), root, "");
  EXPECT_TRUE(path.ok()) << path.status();
  auto api = nvml::DlNvml::Open(*path);
  EXPECT_TRUE(api.ok()) << api.status();
  EXPECT_EQ((*api)->Init(), NVML_SUCCESS);
  auto inv = nvml::DiscoverInventory(**api, nvml::DiscoveryOptions{});
  EXPECT_TRUE(inv.ok()) << inv.status();
  metrics::GpuMetricsInput in;
  in.inventory = inv->get();
  in.readings = metrics::ReadGpus(**api, **inv);
  in.node = "sim-node";
  in.dcgm_compatibility = dcgm;
  const std::string gpu1 = (*inv)->gpus.at(1).uuid;
  const std::string gpu2 = (*inv)->gpus.at(2).uuid;
  in.attribution[gpu1] = {{"ml", "trainer-0", "main"}, {"ml", "trainer-1", "main"}};
  for (const auto& g : (*inv)->gpus) in.health[g.uuid] = metrics::GpuHealthInfo{};
  in.health[gpu2] = metrics::GpuHealthInfo{false, "XID 48: Double Bit ECC Error", {{48, 1}}, 48};
  std::vector<metrics::MetricFamily> families;
  metrics::AppendGpuFamilies(in, &families);
  (*api)->Shutdown();
  return metrics::Render(std::move(families));
}

void CompareGolden(const std::string& name, const std::string& text) {
  const std::string golden = std::string(GDP_TESTDATA_DIR) + "/metrics/" + name;
  const char* update = std::getenv("GDP_UPDATE_GOLDEN");  // NOLINT(concurrency-mt-unsafe)
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(golden) << MaskEnergy(text);
  }
  EXPECT_EQ(MaskEnergy(text), ReadFile(golden))
      << "golden " << golden << " differs; rerun with GDP_UPDATE_GOLDEN=1 after checking the diff";
}

int Promtool(const std::vector<std::string>& args, const std::string& input_file,
             std::string* out) {
  std::string cmd = "promtool";
  for (const std::string& a : args) cmd += " '" + a + "'";
  if (!input_file.empty()) cmd += " < '" + input_file + "'";
  return RunCommand({"/bin/sh", "-c", cmd + " 2>&1"}, out);
}

TEST_F(MetricsTest, GoldenExpositionForT4x4PassesPromtool) {
  LayRoot("t4x4");
  Gpusim({"set", "--gpu", "0", "util=75", "mem-util=30", "temp=81", "mem-temp=70", "power=55",
          "mem-used=4GiB", "sm-clock=1590", "pcie-tx=1024", "pcie-rx=2048", "clock-reasons=0x24",
          "ecc-corrected=3"});
  Gpusim({"set", "--gpu", "1", "util=100", "mem-used=15GiB"});
  const std::string text = RenderSimulatedGpus(root_, false);
  CompareGolden("t4x4.prom", text);
  const std::string file = dir_ + "/t4x4.prom";
  std::ofstream(file) << text;
  std::string out;
  EXPECT_EQ(Promtool({"check", "metrics"}, file, &out), 0)
      << "promtool check metrics (Debian package prometheus, installed by hack/deps.sh):\n"
      << out;
  EXPECT_EQ(out, "");  // no lint findings either
}

TEST_F(MetricsTest, GoldenDcgmCompatibleExposition) {
  LayRoot("t4x4");
  Gpusim({"set", "--gpu", "0", "util=75", "temp=81", "power=55", "mem-used=4GiB"});
  CompareGolden("t4x4-dcgm.prom", RenderSimulatedGpus(root_, true));
}

TEST_F(MetricsTest, AlertRulesPassPromtool) {
  std::string out;
  EXPECT_EQ(
      Promtool({"check", "rules", std::string(GDP_DEPLOYMENTS_DIR) + "/prometheus/alerts.yaml"}, "",
               &out),
      0)
      << out;
  EXPECT_THAT(out, HasSubstr("SUCCESS"));
  // Each alert fires on the series it is about (and not before its `for`).
  EXPECT_EQ(
      Promtool({"test", "rules", std::string(GDP_DEPLOYMENTS_DIR) + "/prometheus/alerts_test.yaml"},
               "", &out),
      0)
      << out;
}

// Waits until `query` (PromQL) returns a sample whose labels include `want`
// and whose value is `value`; returns the last response for messages.
bool WaitForQuery(int port, const std::string& query,
                  const std::map<std::string, std::string>& want, const std::string& value,
                  std::string* last) {
  httplib::Client http("127.0.0.1", port);
  http.set_connection_timeout(1);
  return Eventually(
      [&] {
        auto res = http.Get("/api/v1/query", httplib::Params{{"query", query}}, httplib::Headers{});
        if (!res || res->status != 200) return false;
        *last = res->body;
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        if (j.is_discarded() || j.value("status", "") != "success") return false;
        for (const auto& r : j["data"]["result"]) {
          bool match = r["value"][1] == value;
          for (const auto& [k, v] : want) match = match && r["metric"].value(k, "") == v;
          if (match) return true;
        }
        return false;
      },
      milliseconds(60000));
}

TEST_F(MetricsTest, PrometheusScrapesSimulatedValueWithPodLabels) {
  LayRoot("dgx-h100");
  stub_ = std::make_unique<KubeletStub>(plugin_dir_);
  ASSERT_TRUE(stub_->Start().ok());
  PodResourcesStub pods(dir_ + "/pod-resources.sock");
  ASSERT_TRUE(pods.Start().ok());
  const int port = FreeLocalPort();
  daemon_ = std::make_unique<Process>(
      std::vector<std::string>{GDP_DAEMON_BIN, "--driver-root", root_, "--plugin-directory",
                               plugin_dir_, "--metrics-port", std::to_string(port),
                               "--metrics-bind-address", "127.0.0.1", "--metrics-sample-interval",
                               "250ms", "--pod-resources-socket", pods.socket_path()},
      std::map<std::string, std::string>{{"NODE_NAME", "sim-node"}}, dir_ + "/daemon.log");
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/gpu", In(seconds(30)))) << daemon_->Output();

  // The kubelet allocates GPU 3 to ml/trainer-0/main.
  httplib::Client http("127.0.0.1", port);
  auto inv = http.Get("/inventory");
  ASSERT_TRUE(inv && inv->status == 200);
  const std::string uuid = nlohmann::json::parse(inv->body)["gpus"][3]["uuid"];
  PluginClient client(plugin_dir_ + "/nvidia-gpu.sock");
  ASSERT_TRUE(client.WaitConnected(In(seconds(10))));
  v1beta1::AllocateResponse alloc;
  ASSERT_TRUE(client.Allocate(PluginClient::AllocateRequestFor({{uuid}}), &alloc).ok());
  pods.SetAssignments({{"ml", "trainer-0", "main", "nvidia.com/gpu", {uuid}}});
  Gpusim({"set", "--gpu", "3", "temp=87", "util=42"});

  // The brief's scrape job, as written, against the daemon.
  const int prom_port = StartPrometheus(
      "  - job_name: \"k8s-nvidia-device-plugin\"\n"
      "    static_configs:\n"
      "      - targets: [\"127.0.0.1:" +
      std::to_string(port) + "\"]\n");

  std::string last;
  EXPECT_TRUE(WaitForQuery(prom_port, "gdp_gpu_temperature_celsius{gpu=\"3\"}",
                           {{"uuid", uuid},
                            {"namespace", "ml"},
                            {"pod", "trainer-0"},
                            {"container", "main"},
                            {"node", "sim-node"},
                            {"job", "k8s-nvidia-device-plugin"}},
                           "87", &last))
      << "last answer: " << last << "\nprometheus:\n"
      << prometheus_->Output() << "\ndaemon:\n"
      << daemon_->Output();
  EXPECT_TRUE(WaitForQuery(prom_port, "gdp_gpu_utilization_ratio{pod=\"trainer-0\"}",
                           {{"uuid", uuid}}, "0.42", &last))
      << last;
  EXPECT_TRUE(WaitForQuery(prom_port, "gdp_plugin_allocate_requests_total",
                           {{"resource", "nvidia.com/gpu"}}, "1", &last))
      << last;
  EXPECT_TRUE(WaitForQuery(prom_port, "up", {{"job", "k8s-nvidia-device-plugin"}}, "1", &last))
      << last;

  // The daemon's whole exposition lints clean.
  auto body = http.Get("/metrics");
  ASSERT_TRUE(body && body->status == 200);
  EXPECT_EQ(body->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string file = dir_ + "/daemon.prom";
  std::ofstream(file) << body->body;
  std::string out;
  EXPECT_EQ(Promtool({"check", "metrics"}, file, &out), 0) << out;
  EXPECT_EQ(out, "");
  // The heap gauge the soak bench reads (values depend on the allocator; under
  // AddressSanitizer malloc is not glibc's).
  EXPECT_NE(body->body.find("\ngdp_process_heap_bytes{state=\"in_use\"} "), std::string::npos);
  EXPECT_NE(body->body.find("\ngdp_process_heap_bytes{state=\"free\"} "), std::string::npos);
}

// The metrics port with TLS (metrics.tls.certFile/keyFile): a real Prometheus
// scrapes it over HTTPS, verifying the certificate against its CA, and a
// plain-HTTP client gets no answer.
TEST_F(MetricsTest, PrometheusScrapesOverTls) {
  LayRoot("dgx-h100");
  stub_ = std::make_unique<KubeletStub>(plugin_dir_);
  ASSERT_TRUE(stub_->Start().ok());
  const std::string crt = dir_ + "/tls.crt", key = dir_ + "/tls.key";
  const std::string make_cert =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + crt + " 2>/dev/null";
  ASSERT_EQ(std::system(make_cert.c_str()), 0);  // NOLINT(concurrency-mt-unsafe)
  const int port = FreeLocalPort();
  daemon_ = std::make_unique<Process>(
      std::vector<std::string>{GDP_DAEMON_BIN, "--driver-root", root_, "--plugin-directory",
                               plugin_dir_, "--metrics-port", std::to_string(port),
                               "--metrics-bind-address", "127.0.0.1", "--metrics-sample-interval",
                               "250ms", "--metrics-tls-cert-file", crt, "--metrics-tls-key-file",
                               key},
      std::map<std::string, std::string>{}, dir_ + "/daemon.log");
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/gpu", In(seconds(30)))) << daemon_->Output();
  EXPECT_THAT(daemon_->Output(), HasSubstr("tls=true"));
  httplib::Client plain("127.0.0.1", port);
  plain.set_read_timeout(2);
  auto res = plain.Get("/healthz");
  EXPECT_TRUE(!res || res->status != 200) << "plain HTTP answered on the TLS port";

  const int prom_port = StartPrometheus(
      "  - job_name: gpu\n"
      "    scheme: https\n"
      "    tls_config: {ca_file: " +
      crt +
      "}\n"
      "    static_configs:\n"
      "      - targets: [\"127.0.0.1:" +
      std::to_string(port) + "\"]\n");
  std::string last;
  EXPECT_TRUE(WaitForQuery(prom_port, "up", {{"job", "gpu"}}, "1", &last))
      << "last answer: " << last << "\nprometheus:\n"
      << prometheus_->Output() << "\ndaemon:\n"
      << daemon_->Output();
  EXPECT_TRUE(WaitForQuery(prom_port, "count(gdp_gpu_temperature_celsius)", {}, "8", &last))
      << last;
}

}  // namespace
}  // namespace gdp::testing
