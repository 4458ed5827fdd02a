// Integration tests of `gpu-device-plugin doctor` and of the daemon's
// /allocations endpoint: the real binary against a simulator driver root laid
// out by gpusim, a kubelet stand-in (Registration) and a pod-resources
// stand-in (List) on real unix sockets, and real files for containerd's
// config and the CDI directory.
#include <httplib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/process.h"
#include "tests/kubelet_stub/kubelet_stub.h"
#include "tests/kubelet_stub/pod_resources_stub.h"

namespace gdp::testing {
namespace {

using kubelet_stub::In;
using kubelet_stub::KubeletStub;
using kubelet_stub::PodResourcesStub;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

class DoctorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-dr-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    plugin_dir_ = dir_ + "/dp";
    pod_resources_ = dir_ + "/pr.sock";
    cdi_dir_ = dir_ + "/cdi";
    containerd_config_ = dir_ + "/containerd.toml";
    ASSERT_EQ(mkdir(plugin_dir_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(cdi_dir_.c_str(), 0755), 0);
    std::ofstream(containerd_config_) << "version = 3\n"
                                         "[plugins.'io.containerd.cri.v1.runtime']\n"
                                         "  cdi_spec_dirs = [\""
                                      << cdi_dir_ << "\", \"/etc/cdi\"]\n";
  }
  void TearDown() override {
    daemon_.reset();
    kubelet_.reset();
    pod_resources_stub_.reset();
    std::filesystem::remove_all(dir_);
  }

  void LayRoot(const std::string& profile, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {GDP_GPUSIM_BIN, "root", root_, "--profile", profile};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string out;
    ASSERT_EQ(RunCommand(argv, &out), 0) << out;
  }
  // An executable nvidia-cuda-mps-control under the driver root.
  void AddMpsControl() {
    std::filesystem::create_directories(root_ + "/usr/bin");
    const std::string bin = root_ + "/usr/bin/nvidia-cuda-mps-control";
    std::ofstream(bin) << "#!/bin/sh\nexit 0\n";
    ASSERT_EQ(chmod(bin.c_str(), 0755), 0);
  }
  void StartKubelet() {
    kubelet_ = std::make_unique<KubeletStub>(plugin_dir_);
    ASSERT_TRUE(kubelet_->Start().ok());
    pod_resources_stub_ = std::make_unique<PodResourcesStub>(pod_resources_);
    ASSERT_TRUE(pod_resources_stub_->Start().ok());
  }
  std::vector<std::string> PathFlags() const {
    return {"--driver-root",
            root_,
            "--plugin-directory",
            plugin_dir_,
            "--pod-resources-socket",
            pod_resources_,
            "--containerd-config",
            containerd_config_,
            "--cdi-root",
            cdi_dir_};
  }
  // Runs `gpu-device-plugin doctor` with the path flags and `extra`.
  int Doctor(std::vector<std::string> extra, std::string* out) {
    std::vector<std::string> argv = {GDP_DAEMON_BIN, "doctor"};
    for (const std::string& f : PathFlags()) argv.push_back(f);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, out);
  }
  // status by check name, from -o json.
  std::map<std::string, std::string> DoctorJson(std::vector<std::string> extra, int* rc) {
    extra.push_back("-o");
    extra.push_back("json");
    std::string out;
    *rc = Doctor(extra, &out);
    std::map<std::string, std::string> status;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out;
    if (j.is_discarded()) return status;
    for (const auto& c : j["checks"]) {
      status[c["name"]] = c["status"];
      details_[c["name"]] = c["detail"];
    }
    return status;
  }

  std::string dir_, root_, plugin_dir_, pod_resources_, cdi_dir_, containerd_config_;
  std::map<std::string, std::string> details_;
  std::unique_ptr<KubeletStub> kubelet_;
  std::unique_ptr<PodResourcesStub> pod_resources_stub_;
  std::unique_ptr<Process> daemon_;
};

TEST_F(DoctorTest, HealthySimulatedNodeIsAllOk) {
  LayRoot("dgx-h100");
  AddMpsControl();
  StartKubelet();
  int rc = -1;
  const auto status = DoctorJson({"--device-list-strategy", "cdi-cri"}, &rc);
  EXPECT_EQ(rc, 0);
  ASSERT_EQ(status.size(), 16u);
  for (const auto& [name, s] : status) EXPECT_EQ(s, "OK") << name << ": " << details_[name];
  EXPECT_THAT(details_["gpus"], HasSubstr("8 x NVIDIA H100 80GB HBM3"));
  // The simulated root's ld cache names the library and its dependencies; the
  // firmware stand-ins and nvidia-smi are there too.
  EXPECT_THAT(details_["driver user space"], HasSubstr("driver 550.54.15: "));
  EXPECT_THAT(details_["driver user space"], HasSubstr(" 2 firmware files"));
  EXPECT_THAT(details_["nvml library"], HasSubstr(root_ + "/usr/lib/x86_64-linux-gnu"));
  EXPECT_THAT(details_["device nodes"], HasSubstr("10 present"));
  EXPECT_THAT(details_["metrics access"], HasSubstr("plain HTTP"));
  EXPECT_GE(pod_resources_stub_->ListCount(), 1u);
}

// metrics.auth with no API server to ask (no service-account token, no
// kubeconfig): the row fails and says so, as every scrape would fail.
TEST_F(DoctorTest, MetricsAuthWithoutAnApiServerIsAFailure) {
  LayRoot("dgx-h100");
  AddMpsControl();
  StartKubelet();
  int rc = -1;
  auto status = DoctorJson({"--metrics-auth", "--metrics-tls-cert-file", "/tls/tls.crt",
                            "--metrics-tls-key-file", "/tls/tls.key"},
                           &rc);
  EXPECT_EQ(status["metrics access"], "FAIL");
  EXPECT_THAT(details_["metrics access"], HasSubstr("no API server to check callers with"));
  EXPECT_EQ(rc, 1);
}

TEST_F(DoctorTest, MigProfileWithMixedStrategy) {
  LayRoot("h100-mig");
  StartKubelet();
  int rc = -1;
  auto status = DoctorJson({"--mig-strategy", "mixed"}, &rc);
  EXPECT_EQ(status["mig"], "OK") << details_["mig"];
  EXPECT_THAT(details_["mig"], HasSubstr("MIG enabled on GPU"));
  EXPECT_EQ(rc, 0);  // WARNs (MPS, nvidia runtime) are not failures

  status = DoctorJson({"--mig-strategy", "none"}, &rc);
  EXPECT_EQ(status["mig"], "WARN") << details_["mig"];
}

TEST_F(DoctorTest, BrokenNodeFailsWithAFixPerProblem) {
  LayRoot("t4x4", {"--driver-version", "418.87.01", "--cuda-version", "10010"});
  // No kubelet, no pod-resources socket.
  std::string out;
  EXPECT_EQ(Doctor({}, &out), 1) << out;
  EXPECT_THAT(out, ::testing::ContainsRegex("FAIL +driver and cuda versions +[^\n]*418"));
  EXPECT_THAT(out, ::testing::ContainsRegex("FAIL +kubelet socket +[^\n]*does not exist"));
  EXPECT_THAT(out, ::testing::ContainsRegex("WARN +pod-resources socket"));
  EXPECT_THAT(out, HasSubstr("fix: upgrade the NVIDIA driver"));
  EXPECT_THAT(out, HasSubstr("fix: start the kubelet"));

  // The same driver allowed by requireMinimumVersions: false is only a WARN.
  int rc = -1;
  auto status = DoctorJson({"--require-minimum-versions=false"}, &rc);
  EXPECT_EQ(status["driver and cuda versions"], "WARN");
}

TEST_F(DoctorTest, NoDriverRootFailsOnNvml) {
  std::filesystem::create_directories(root_);
  StartKubelet();
  int rc = -1;
  auto status = DoctorJson({}, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(status["nvml library"], "FAIL");
  EXPECT_EQ(status["device nodes"], "FAIL");
  EXPECT_EQ(status["kubelet socket"], "OK");
}

TEST_F(DoctorTest, DaemonLogsTheChecksAtStart) {
  LayRoot("dgx-h100");
  StartKubelet();
  std::vector<std::string> argv = {GDP_DAEMON_BIN, "--metrics-port", "0", "--metrics-bind-address",
                                   "127.0.0.1"};
  for (const std::string& f : PathFlags()) argv.push_back(f);
  daemon_ =
      std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/daemon.log");
  ASSERT_TRUE(daemon_->WaitForOutput("doctor summary", milliseconds(20000))) << daemon_->Output();
  const std::string log = daemon_->Output();
  EXPECT_THAT(log, HasSubstr("check=\"kubelet socket\" status=OK"));
  // gpusim root installs the nvidia-cuda-mps-control stand-in under the driver root.
  EXPECT_THAT(log, HasSubstr("check=mps status=OK"));
  ASSERT_TRUE(kubelet_->WaitForRegistration("nvidia.com/gpu", In(seconds(20)))) << log;
}

// --- /allocations -----------------------------------------------------------

class AllocationsTest : public DoctorTest {
 protected:
  void StartDaemon() {
    port_ = FreeLocalPort();
    std::vector<std::string> argv = {GDP_DAEMON_BIN, "--metrics-port", std::to_string(port_),
                                     "--metrics-bind-address", "127.0.0.1"};
    for (const std::string& f : PathFlags()) argv.push_back(f);
    daemon_ =
        std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/daemon.log");
    ASSERT_TRUE(kubelet_->WaitForRegistration("nvidia.com/gpu", In(seconds(20))))
        << daemon_->Output();
  }
  nlohmann::json GetJson(const std::string& path) {
    httplib::Client http("127.0.0.1", port_);
    http.set_connection_timeout(2);
    http.set_read_timeout(5);
    auto res = http.Get(path.c_str());
    if (!res || res->status != 200) {
      ADD_FAILURE() << path << ": " << (res ? res->status : -1);
      return {};
    }
    return nlohmann::json::parse(res->body);
  }
  // device id -> device object of nvidia.com/gpu.
  std::map<std::string, nlohmann::json> GpuDevices() {
    std::map<std::string, nlohmann::json> out;
    const nlohmann::json doc = GetJson("/allocations");
    for (const auto& r : doc["resources"]) {
      if (r["name"] != "nvidia.com/gpu") continue;
      for (const auto& d : r["devices"]) out[d["id"]] = d;
    }
    return out;
  }
  int port_ = 0;
};

TEST_F(AllocationsTest, ShowsHoldersAndHealthPerDevice) {
  LayRoot("t4x4");
  StartKubelet();
  StartDaemon();
  const nlohmann::json inv = GetJson("/inventory");
  ASSERT_EQ(inv["gpus"].size(), 4u);
  const std::string gpu0 = inv["gpus"][0]["uuid"];
  const std::string gpu1 = inv["gpus"][1]["uuid"];
  const std::string gpu3 = inv["gpus"][3]["uuid"];
  pod_resources_stub_->SetAssignments({
      {"default", "train", "main", "nvidia.com/gpu", {gpu0, gpu1}},
      {"ml", "infer", "server", "nvidia.com/gpu", {gpu3}},
      {"ml", "infer", "server", "example.com/fpga", {"F-0"}},
  });

  auto devices = GpuDevices();
  ASSERT_EQ(devices.size(), 4u);
  const nlohmann::json train = {{"namespace", "default"}, {"pod", "train"}, {"container", "main"}};
  EXPECT_EQ(devices[gpu0]["holders"], nlohmann::json::array({train}));
  EXPECT_EQ(devices[gpu1]["holders"], nlohmann::json::array({train}));
  EXPECT_EQ(devices[gpu3]["holders"][0]["pod"], "infer");
  EXPECT_EQ(devices[inv["gpus"][2]["uuid"]]["holders"], nlohmann::json::array());
  EXPECT_EQ(devices[gpu0]["gpus"], nlohmann::json::array({gpu0}));
  for (const auto& [id, d] : devices) EXPECT_EQ(d["health"], "Healthy") << id;

  // A GPU falling off the bus shows as Unhealthy, still held.
  std::string out;
  ASSERT_EQ(RunCommand({GDP_GPUSIM_BIN, "--root", root_, "lose", "--gpu", "1"}, &out), 0) << out;
  ASSERT_TRUE(
      Eventually([&] { return GpuDevices()[gpu1]["health"] == "Unhealthy"; }, milliseconds(20000)))
      << daemon_->Output();
  EXPECT_EQ(GpuDevices()[gpu1]["holders"], nlohmann::json::array({train}));

  // The kubelet's pod-resources API away: devices still listed, the error said.
  pod_resources_stub_->Stop();
  const nlohmann::json away = GetJson("/allocations");
  EXPECT_THAT(std::string(away["podResources"]["error"]), HasSubstr(pod_resources_));
  EXPECT_EQ(away["resources"][0]["devices"].size(), 4u);
}

}  // namespace
}  // namespace gdp::testing
