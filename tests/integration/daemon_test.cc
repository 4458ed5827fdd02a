// Integration tests: the real gpu-device-plugin binary, against the real GPU
// simulator (a drop-in libnvidia-ml.so.1 under a driver root laid out by
// gpusim, reached through the daemon's ordinary dlopen path) and a kubelet
// stand-in on real unix sockets in a temporary directory.
#include <httplib.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/profile.h"
#include "sim/root.h"
#include "tests/integration/process.h"
#include "tests/kubelet_stub/kubelet_stub.h"
#include "tests/kubelet_stub/pod_resources_stub.h"

namespace gdp::testing {
namespace {

using kubelet_stub::In;
using kubelet_stub::KubeletStub;
using kubelet_stub::PluginClient;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kResource[] = "nvidia.com/gpu";
constexpr char kSocket[] = "nvidia-gpu.sock";

// Health of every device in one ListAndWatch message, by ID.
std::map<std::string, std::string> HealthById(const v1beta1::ListAndWatchResponse& r) {
  std::map<std::string, std::string> out;
  for (const auto& d : r.devices()) out[d.id()] = d.health();
  return out;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-it-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    plugin_dir_ = dir_ + "/dp";
    ASSERT_EQ(mkdir(plugin_dir_.c_str(), 0755), 0);
    port_ = FreeLocalPort();
  }

  void TearDown() override {
    daemon_.reset();
    stub_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Lays out a driver root for `profile`; extra gpusim flags may follow.
  void LayRoot(const std::string& profile, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {GDP_GPUSIM_BIN, "root", root_, "--profile", profile};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string out;
    ASSERT_EQ(RunCommand(argv, &out), 0) << out;
  }

  void Gpusim(const std::vector<std::string>& args) {
    std::string out;
    ASSERT_EQ(GpusimStatus(args, &out), 0) << out;
  }
  int GpusimStatus(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {GDP_GPUSIM_BIN, "--root", root_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, out);
  }

  void StartStub() {
    stub_ = std::make_unique<KubeletStub>(plugin_dir_);
    ASSERT_TRUE(stub_->Start().ok());
  }

  void StartDaemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {GDP_DAEMON_BIN,
                                     "--driver-root",
                                     root_,
                                     "--plugin-directory",
                                     plugin_dir_,
                                     "--metrics-port",
                                     std::to_string(port_),
                                     "--metrics-bind-address",
                                     "127.0.0.1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ =
        std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/daemon.log");
  }

  // Starts stub + daemon and waits for the registration.
  void StartRegistered(std::vector<std::string> extra = {}) {
    StartStub();
    StartDaemon(std::move(extra));
    ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20))))
        << "daemon did not register; its output:\n"
        << daemon_->Output();
  }

  std::string WriteConfig(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path);
    return path;
  }

  std::unique_ptr<PluginClient> Client() {
    auto c = std::make_unique<PluginClient>(plugin_dir_ + "/" + kSocket);
    EXPECT_TRUE(c->WaitConnected(In(seconds(10))));
    return c;
  }

  httplib::Result Get(const std::string& path) {
    httplib::Client http("127.0.0.1", port_);
    http.set_connection_timeout(2);
    return http.Get(path.c_str());
  }

  std::string dir_, root_, plugin_dir_;
  int port_ = 0;
  std::unique_ptr<KubeletStub> stub_;
  std::unique_ptr<Process> daemon_;
};

// --- discovery, for every built-in profile ---------------------------------

class ProfileTest : public DaemonTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(ProfileTest, AdvertisesEveryGpuOfTheProfileAsNvmlReportsIt) {
  const std::string name = GetParam();
  absl::StatusOr<sim::Profile> profile = sim::BuiltinProfile(name);
  ASSERT_TRUE(profile.ok()) << profile.status();
  LayRoot(name);
  StartRegistered();

  const v1beta1::RegisterRequest reg = stub_->LastRegistration(kResource);
  EXPECT_EQ(reg.version(), "v1beta1");
  EXPECT_EQ(reg.endpoint(), kSocket);
  EXPECT_TRUE(reg.options().get_preferred_allocation_available());

  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const v1beta1::ListAndWatchResponse first = stream->Updates().front();
  ASSERT_EQ(first.devices_size(), static_cast<int>(profile->gpus.size()));
  for (size_t i = 0; i < profile->gpus.size(); ++i) {
    const auto& d = first.devices(static_cast<int>(i));
    const sim::GpuSpec& g = profile->gpus[i];
    EXPECT_EQ(d.id(), g.uuid) << name << " GPU " << i;
    EXPECT_EQ(d.health(), "Healthy");
    ASSERT_EQ(d.topology().nodes_size(), 1) << name << " GPU " << i;
    EXPECT_EQ(d.topology().nodes(0).id(), static_cast<int64_t>(g.numa_node));
  }

  // The inventory the daemon built matches the profile field by field.
  auto res = Get("/inventory");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const nlohmann::json inv = nlohmann::json::parse(res->body);
  EXPECT_EQ(inv["driverVersion"], profile->driver_version);
  ASSERT_EQ(inv["gpus"].size(), profile->gpus.size());
  for (size_t i = 0; i < profile->gpus.size(); ++i) {
    const nlohmann::json& got = inv["gpus"][i];
    const sim::GpuSpec& g = profile->gpus[i];
    SCOPED_TRACE(name + " GPU " + std::to_string(i));
    EXPECT_EQ(got["uuid"], g.uuid);
    EXPECT_EQ(got["name"], g.name);
    EXPECT_EQ(got["memoryBytes"].get<uint64_t>(), g.memory_mib << 20);
    EXPECT_EQ(got["computeCapability"],
              std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor));
    char bus[32];
    snprintf(bus, sizeof bus, "%04x:%02x:%02x.0", g.domain, g.bus, g.device);
    EXPECT_EQ(got["pciBusId"], bus);
    EXPECT_EQ(got["migEnabled"], g.mig_enabled);
    ASSERT_EQ(got["migDevices"].size(), g.mig_devices.size());
    for (size_t m = 0; m < g.mig_devices.size(); ++m) {
      EXPECT_EQ(got["migDevices"][m]["uuid"], g.mig_devices[m].uuid);
      EXPECT_EQ(got["migDevices"][m]["profile"], g.mig_devices[m].profile);
    }
    // Interconnect: GPUs with NVLinks see each other over NVLink.
    for (size_t j = 0; j < profile->gpus.size(); ++j) {
      if (i == j) continue;
      const std::string link = inv["links"][i][j];
      if (g.nvlinks > 0 && profile->gpus[j].nvlinks > 0) {
        EXPECT_EQ(link.rfind("NV", 0), 0u) << "GPU " << i << "-" << j << ": " << link;
      } else {
        EXPECT_NE(link.rfind("NV", 0), 0u) << "GPU " << i << "-" << j << ": " << link;
      }
    }
  }
  // Ready once the resources are applied, which ends just after the kubelet
  // sees the registration (registration runs on the plugin manager's thread).
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  auto ready = Get("/readyz");
  while (ready && ready->status != 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ready = Get("/readyz");
  }
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;
}

INSTANTIATE_TEST_SUITE_P(BuiltinProfiles, ProfileTest,
                         ::testing::ValuesIn(sim::BuiltinProfileNames()),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// --- driver branches ---------------------------------------------------------
// Each branch's simulated library exports exactly what that branch's nvml.h declares
// (sim/CMakeLists.txt), so the daemon meets the functions, event types and fields each
// branch's driver has. It serves on each, with what each branch lacks named in its log.

struct BranchCase {
  std::string branch;
  std::vector<std::string> missing;  // the NVML functions the daemon names as missing
};

void PrintTo(const BranchCase& c, std::ostream* os) { *os << c.branch; }

class DriverBranchTest : public DaemonTest, public ::testing::WithParamInterface<BranchCase> {};

TEST_P(DriverBranchTest, ServesWithWhatTheBranchHasAndNamesWhatItLacks) {
  const BranchCase& p = GetParam();
  const sim::DriverBranch* branch = sim::FindDriverBranch(p.branch);
  ASSERT_NE(branch, nullptr);
  auto profile = sim::BuiltinProfile("dgx-h100");
  ASSERT_TRUE(profile.ok());
  LayRoot("dgx-h100", {"--driver-branch", p.branch});
  StartRegistered({"--health-recovery-quiet-period", "1s", "--health-probe-interval", "100ms",
                   "--sysfs-root", root_ + "/sys"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));

  // Discovery: every GPU, on its NUMA node (through NVML, or sysfs where the branch's NVML
  // has no nvmlDeviceGetNumaNodeId), with the branch's driver and CUDA versions.
  const auto first = stream->Updates().front();
  ASSERT_EQ(first.devices_size(), 8);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(first.devices(i).id(), profile->gpus[i].uuid);
    ASSERT_EQ(first.devices(i).topology().nodes_size(), 1);
    EXPECT_EQ(first.devices(i).topology().nodes(0).id(),
              static_cast<int64_t>(profile->gpus[i].numa_node))
        << "GPU " << i;
  }
  auto inv = Get("/inventory");
  ASSERT_TRUE(inv);
  const nlohmann::json j = nlohmann::json::parse(inv->body);
  EXPECT_EQ(j["driverVersion"], branch->driver_version);

  // Metrics: the GPUs' series (from the sampler's first round, which may still be running
  // on a loaded machine) and the driver's version.
  auto metrics = Get("/metrics");
  const auto metrics_deadline = std::chrono::steady_clock::now() + seconds(15);
  while ((!metrics || metrics->body.find("gdp_gpu_temperature_celsius{") == std::string::npos) &&
         std::chrono::steady_clock::now() < metrics_deadline) {
    std::this_thread::sleep_for(milliseconds(100));
    metrics = Get("/metrics");
  }
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("gdp_gpu_temperature_celsius{"));
  EXPECT_THAT(metrics->body, HasSubstr(std::string("driver_version=\"") + branch->driver_version));

  // Health: XID 79 marks its GPU unhealthy; a reset brings it back, told by NVML's recovery
  // action where the branch has the field, else by the GPU leaving the bus and coming back.
  const std::string gpu5 = profile->gpus[5].uuid;
  Gpusim({"xid", "--gpu", "5", "--xid", "79"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu5] == "Unhealthy"; },
                              In(seconds(10))))
      << daemon_->Output();
  EXPECT_TRUE(daemon_->WaitForOutput(
      branch->recovery_action ? "(NVML recovery action)" : "(documented action of the XID)",
      seconds(5)))
      << daemon_->Output();
  const size_t seen = stream->UpdateCount();
  EXPECT_FALSE(stream->WaitForCount(seen + 1, In(seconds(2)))) << "recovered without a reset";
  if (!branch->recovery_action) {
    // Off the bus first, and seen so by the daemon: only then is the reset a reset to it.
    Gpusim({"lose", "--gpu", "5"});
    ASSERT_TRUE(daemon_->WaitForOutput("unhealthy device is now lost", seconds(10)))
        << daemon_->Output();
  }
  Gpusim({"reset", "--gpu", "5"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu5] == "Healthy"; },
                              In(seconds(10))))
      << daemon_->Output();

  // What the branch lacks is named, and nothing else.
  for (const std::string fn : {"nvmlDeviceGetNumaNodeId", "nvmlSystemEventSetCreate"}) {
    const bool lacks = std::find(p.missing.begin(), p.missing.end(), fn) != p.missing.end();
    EXPECT_EQ(daemon_->Output().find("NVML symbol " + fn + " not found") != std::string::npos,
              lacks)
        << p.branch << " " << fn << "\n"
        << daemon_->Output();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Branches, DriverBranchTest,
    ::testing::Values(BranchCase{"r535", {"nvmlDeviceGetNumaNodeId", "nvmlSystemEventSetCreate"}},
                      BranchCase{"r550", {"nvmlSystemEventSetCreate"}},
                      BranchCase{"r570", {"nvmlSystemEventSetCreate"}}, BranchCase{"r580", {}}),
    [](const auto& param_info) { return param_info.param.branch; });

// --- Allocate and GetPreferredAllocation ------------------------------------

TEST_F(DaemonTest, AllocateGivesExactlyTheRequestedGpusAndTheirDeviceNodes) {
  LayRoot("dgx-h100");
  StartRegistered();
  auto profile = sim::BuiltinProfile("dgx-h100");
  ASSERT_TRUE(profile.ok());
  const std::string gpu3 = profile->gpus[3].uuid, gpu5 = profile->gpus[5].uuid;

  auto client = Client();
  v1beta1::AllocateResponse resp;
  grpc::Status s =
      client->Allocate(PluginClient::AllocateRequestFor({{gpu3}, {gpu5, gpu3}}), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.container_responses_size(), 2);

  const auto& one = resp.container_responses(0);
  EXPECT_EQ(one.envs().at("NVIDIA_VISIBLE_DEVICES"), gpu3);
  std::set<std::string> host_paths;
  for (const auto& d : one.devices()) {
    host_paths.insert(d.host_path());
    EXPECT_EQ(d.permissions(), "rw");
    EXPECT_EQ(root_ + d.container_path(), d.host_path());
  }
  const std::set<std::string> want = {root_ + "/dev/nvidia3", root_ + "/dev/nvidiactl",
                                      root_ + "/dev/nvidia-uvm", root_ + "/dev/nvidia-uvm-tools",
                                      root_ + "/dev/nvidia-modeset"};
  EXPECT_EQ(host_paths, want);

  const auto& two = resp.container_responses(1);
  // Devices are listed in the node's device order, whatever the request order.
  EXPECT_EQ(two.envs().at("NVIDIA_VISIBLE_DEVICES"), gpu3 + "," + gpu5);
  int gpu_nodes = 0;
  for (const auto& d : two.devices()) {
    if (d.container_path() == "/dev/nvidia5" || d.container_path() == "/dev/nvidia3") ++gpu_nodes;
    EXPECT_NE(d.container_path(), "/dev/nvidia0");
  }
  EXPECT_EQ(gpu_nodes, 2);
}

// The device-plugin server runs on one thread of the daemon's own (gdp-grpc),
// not on gRPC's callback-queue pool, and that thread sleeps while the node is
// idle: registered, the kubelet's ListAndWatch stream open, sampling off.
TEST_F(DaemonTest, TheServerThreadSleepsWhileIdle) {
  LayRoot("dgx-h100");
  StartRegistered({"--metrics-sample-interval", "1h"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const std::string tasks = "/proc/" + std::to_string(daemon_->pid()) + "/task";
  std::vector<std::string> server_threads, nexting;
  for (const auto& e : std::filesystem::directory_iterator(tasks)) {
    std::string name;
    std::getline(std::ifstream(e.path() / "comm"), name);
    if (name == "gdp-grpc") server_threads.push_back(e.path());
    if (name == "nexting_thread") nexting.push_back(e.path());
  }
  ASSERT_EQ(server_threads.size(), 1U);
  EXPECT_TRUE(nexting.empty());
  auto timeslices = [&] {
    std::ifstream in(server_threads[0] + "/schedstat");
    long run = 0, wait = 0, slices = -1;
    in >> run >> wait >> slices;
    return slices;
  };
  std::this_thread::sleep_for(milliseconds(500));
  const long before = timeslices();
  std::this_thread::sleep_for(seconds(3));
  // One incidental wakeup is allowed; the callback API's threads woke twice a second each.
  EXPECT_LE(timeslices() - before, 1) << "the server's thread woke with nothing to do";
}

TEST_F(DaemonTest, BadAllocateRequestsAreInvalidArgumentAndTheDaemonKeepsServing) {
  LayRoot("dgx-h100");
  StartRegistered();
  auto client = Client();
  v1beta1::AllocateResponse resp;

  grpc::Status s = client->Allocate(PluginClient::AllocateRequestFor({{"GPU-not-there"}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("GPU-not-there"));

  s = client->Allocate(v1beta1::AllocateRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1beta1::PreferredAllocationRequest pref;
  auto* c = pref.add_container_requests();
  c->add_available_deviceids("GPU-x");
  c->set_allocation_size(3);
  v1beta1::PreferredAllocationResponse pref_resp;
  s = client->GetPreferredAllocation(pref, &pref_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Still serving, still registered once.
  auto profile = sim::BuiltinProfile("dgx-h100");
  s = client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(daemon_->Running());
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
}

TEST_F(DaemonTest, PreferredAllocationFollowsThePcieTopology) {
  // t4x4: GPUs 0,1 share a PCIe switch on NUMA 0; 2,3 on NUMA 1; no NVLink.
  LayRoot("t4x4");
  StartRegistered();
  auto profile = sim::BuiltinProfile("t4x4");
  ASSERT_TRUE(profile.ok());
  std::vector<std::string> ids;
  for (const auto& g : profile->gpus) ids.push_back(g.uuid);
  auto client = Client();

  for (int must : {0, 1, 2, 3}) {
    v1beta1::PreferredAllocationRequest req;
    auto* c = req.add_container_requests();
    for (const auto& id : ids) c->add_available_deviceids(id);
    c->add_must_include_deviceids(ids[must]);
    c->set_allocation_size(2);
    v1beta1::PreferredAllocationResponse resp;
    grpc::Status s = client->GetPreferredAllocation(req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.container_responses(0).deviceids_size(), 2);
    std::set<std::string> got(resp.container_responses(0).deviceids().begin(),
                              resp.container_responses(0).deviceids().end());
    const int partner = must ^ 1;
    EXPECT_EQ(got, (std::set<std::string>{ids[must], ids[partner]}))
        << "GPU " << must << " should be paired with its switch partner " << partner;
  }
}

// --- health -----------------------------------------------------------------

TEST_F(DaemonTest, CriticalXidMarksOnlyThatGpuUnhealthyAndItRecoversAfterTheQuietPeriod) {
  LayRoot("dgx-h100");
  StartRegistered({"--health-recovery-quiet-period", "1s", "--health-probe-interval", "100ms"});
  auto profile = sim::BuiltinProfile("dgx-h100");
  const std::string gpu3 = profile->gpus[3].uuid;
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));

  // An application fault (XID 13, ignored by default) changes nothing; a
  // critical one that needs no reset (XID 94, a contained ECC error) on GPU
  // 3 marks GPU 3 alone.
  Gpusim({"xid", "--gpu", "1", "--xid", "13"});
  Gpusim({"xid", "--gpu", "3", "--xid", "94"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu3] == "Unhealthy"; },
                              In(seconds(10))))
      << daemon_->Output();
  for (const auto& update : stream->Updates()) {
    for (const auto& [id, health] : HealthById(update)) {
      if (id != gpu3) {
        EXPECT_EQ(health, "Healthy") << id;
      }
    }
  }
  EXPECT_THAT(daemon_->Output(), HasSubstr("XID 94"));

  // Quiet for the (1 s) quiet period and answering NVML: Healthy again.
  const size_t seen = stream->UpdateCount();
  ASSERT_TRUE(stream->WaitForCount(seen + 1, In(seconds(15)))) << daemon_->Output();
  for (const auto& [id, health] : HealthById(stream->Updates()[seen])) {
    EXPECT_EQ(health, "Healthy") << id;
  }
  EXPECT_THAT(daemon_->Output(), HasSubstr("device healthy"));
}

TEST_F(DaemonTest, AGpuThatNeedsAResetStaysUnhealthyPastTheQuietPeriodUntilItIsReset) {
  LayRoot("dgx-h100");
  StartRegistered({"--health-recovery-quiet-period", "1s", "--health-probe-interval", "100ms"});
  auto profile = sim::BuiltinProfile("dgx-h100");
  const std::string gpu2 = profile->gpus[2].uuid;
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  Gpusim({"xid", "--gpu", "2", "--xid", "48", "--action", "reset"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu2] == "Unhealthy"; },
                              In(seconds(10))))
      << daemon_->Output();
  ASSERT_TRUE(daemon_->WaitForOutput("needs a GPU reset", seconds(5))) << daemon_->Output();
  // Three quiet periods later it is still Unhealthy.
  const size_t seen = stream->UpdateCount();
  EXPECT_FALSE(stream->WaitForCount(seen + 1, In(seconds(3)))) << daemon_->Output();
  Gpusim({"reset", "--gpu", "2"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu2] == "Healthy"; },
                              In(seconds(10))))
      << daemon_->Output();
  EXPECT_TRUE(
      daemon_->WaitForOutput("NVML reports no recovery action pending any more", seconds(5)))
      << daemon_->Output();
}

TEST_F(DaemonTest, LostGpuIsUnhealthyUntilNvmlFindsItAgain) {
  LayRoot("dgx-h100");
  StartRegistered({"--health-recovery-quiet-period", "1s", "--health-probe-interval", "100ms"});
  auto profile = sim::BuiltinProfile("dgx-h100");
  const std::string gpu5 = profile->gpus[5].uuid;
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));

  Gpusim({"lose", "--gpu", "5"});
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return HealthById(r)[gpu5] == "Unhealthy"; },
                              In(seconds(10))));
  // The probes notice the loss; while lost it stays Unhealthy, even after the
  // quiet period of the XID 79 that came with the loss has passed.
  ASSERT_TRUE(daemon_->WaitForOutput("lost", seconds(10))) << daemon_->Output();
  const size_t while_lost = stream->UpdateCount();
  EXPECT_FALSE(stream->WaitForCount(while_lost + 1, In(milliseconds(2500))))
      << "GPU 5 changed health while still lost:\n"
      << daemon_->Output();
  const size_t seen = stream->UpdateCount();
  // Falling off the bus calls for a reset (NVML's recovery action): back on
  // the bus alone is not enough.
  Gpusim({"recover", "--gpu", "5"});
  EXPECT_FALSE(stream->WaitForCount(seen + 1, In(milliseconds(2500))))
      << "GPU 5 recovered before its reset:\n"
      << daemon_->Output();
  Gpusim({"reset", "--gpu", "5"});
  ASSERT_TRUE(stream->WaitForCount(seen + 1, In(seconds(15)))) << daemon_->Output();
  EXPECT_EQ(HealthById(stream->Updates()[seen])[gpu5], "Healthy");
  EXPECT_THAT(daemon_->Output(), HasSubstr("lost"));
}

// --- the kubelet restarting ---------------------------------------------------

TEST_F(DaemonTest, ReregistersAfterKubeletRestartsWithoutLeakingFdsOrThreads) {
  LayRoot("dgx-h100");
  StartRegistered();
  {
    auto client = Client();
    auto stream = client->Watch();
    ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  }
  // The daemon's own threads are named gpu-device-plug (main, signals, HTTP,
  // health, config) and gdp-* (plugin manager, kubelet watch); gRPC's internal
  // pools grow and shrink on their own and are not counted.
  auto own_threads = [&] {
    return daemon_->ThreadCount("gpu-device-plug") + daemon_->ThreadCount("gdp-");
  };
  auto restart_kubelet = [&](size_t round) {
    stub_->Stop(KubeletStub::StopMode::kRemoveAllSockets);
    ASSERT_TRUE(stub_->Start().ok());
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(5)), round))
        << "round " << round << "\n"
        << daemon_->Output();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(1)) << "round " << round;
    auto client = Client();
    v1beta1::DevicePluginOptions opts;
    EXPECT_TRUE(client->GetOptions(&opts).ok());
  };
  // One restart first, so that lazily created state is there, then the baseline.
  restart_kubelet(2);
  int fds_before = -1, threads_before = -1;
  Eventually(
      [&] {
        const int f = daemon_->OpenFdCount(), t = own_threads();
        const bool stable = f == fds_before && t == threads_before;
        fds_before = f;
        threads_before = t;
        return stable;
      },
      seconds(5));
  ASSERT_GT(threads_before, 0);

  for (size_t round = 3; round <= 12; ++round) restart_kubelet(round);

  // Nothing leaked: fds and the daemon's threads come back to the baseline.
  EXPECT_TRUE(Eventually(
      [&] { return daemon_->OpenFdCount() <= fds_before && own_threads() <= threads_before; },
      seconds(10)))
      << "fds " << fds_before << " -> " << daemon_->OpenFdCount() << ", threads " << threads_before
      << " -> " << own_threads();
}

TEST_F(DaemonTest, ManyConcurrentAllocatesAndStreams) {
  LayRoot("dgx-h100");
  StartRegistered();
  auto profile = sim::BuiltinProfile("dgx-h100");
  auto client = Client();
  std::vector<std::unique_ptr<kubelet_stub::WatchStream>> streams;
  for (int i = 0; i < 16; ++i) streams.push_back(client->Watch());
  for (auto& s : streams) ASSERT_TRUE(s->WaitForCount(1, In(seconds(10))));

  std::atomic<int> failures{0};
  std::mutex first_mu;
  std::string first_failure;  // guarded by first_mu
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        v1beta1::AllocateResponse resp;
        const std::string& id = profile->gpus[(t + i) % 8].uuid;
        grpc::Status s = client->Allocate(PluginClient::AllocateRequestFor({{id}}), &resp);
        if (!s.ok() || resp.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES") != id) {
          ++failures;
          std::lock_guard lock(first_mu);
          if (first_failure.empty()) {
            first_failure =
                s.ok() ? "wrong device" : std::to_string(s.error_code()) + " " + s.error_message();
          }
        }
      }
    });
  }
  Gpusim({"xid", "--gpu", "2", "--xid", "48"});
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << "first: " << first_failure << "\n" << daemon_->Output();
  const std::string gpu2 = profile->gpus[2].uuid;
  for (auto& s : streams) {
    EXPECT_TRUE(s->WaitFor([&](const auto& r) { return HealthById(r)[gpu2] == "Unhealthy"; },
                           In(seconds(10))));
  }
}

// --- lifecycle ------------------------------------------------------------------

TEST_F(DaemonTest, SigtermStopsPromptlyAndRemovesTheSocket) {
  LayRoot("dgx-h100");
  StartRegistered();
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  daemon_->Signal(SIGTERM);
  std::optional<int> code = daemon_->WaitForExit(seconds(5));
  ASSERT_TRUE(code.has_value()) << "daemon did not stop within 5 s";
  EXPECT_EQ(*code, 0) << daemon_->Output();
  EXPECT_TRUE(stream->WaitFinished(In(seconds(5))));
  EXPECT_FALSE(std::filesystem::exists(plugin_dir_ + "/" + kSocket));
}

TEST_F(DaemonTest, NoDriverIsOneClearErrorAndExitCodeOne) {
  std::filesystem::create_directories(root_);
  StartStub();
  StartDaemon();
  std::optional<int> code = daemon_->WaitForExit(seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  const std::string out = daemon_->Output();
  EXPECT_THAT(out, HasSubstr(root_ + "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"));
  EXPECT_THAT(out, HasSubstr("driver root"));
  EXPECT_EQ(stub_->RegistrationCount(kResource), 0u);
}

TEST_F(DaemonTest, WithoutFailOnInitErrorItWaitsForNvmlAndThenServes) {
  std::filesystem::create_directories(root_);
  StartStub();
  StartDaemon({"--fail-on-init-error=false"});
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = Get("/readyz");
        return r && r->status == 503 && r->body.find("NVML") != std::string::npos;
      },
      seconds(10)))
      << daemon_->Output();
  auto live = Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);

  // The driver appears: the daemon finds it on its next try, without a restart.
  LayRoot("dgx-h100");
  ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20)))) << daemon_->Output();
  EXPECT_TRUE(Eventually(
      [&] {
        auto r = Get("/readyz");
        return r && r->status == 200;
      },
      seconds(10)));
}

TEST_F(DaemonTest, DriverAndCudaOlderThanTheMinimumsAreRefused) {
  struct Case {
    std::vector<std::string> gpusim_flags;
    std::vector<std::string> daemon_flags;
    std::optional<int> want_exit;  // nullopt: runs and registers
    std::string want_text;
  };
  const std::vector<Case> cases = {
      {{"--driver-version", "418.67"}, {}, 1, "older than the minimum 450"},
      {{"--driver-version", "450.51.05"}, {}, std::nullopt, ""},
      {{"--cuda-version", "9020"}, {}, 1, "10.0"},
      {{"--driver-version", "418.67"}, {"--require-minimum-versions=false"}, std::nullopt, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.gpusim_flags) + " " +
                 ::testing::PrintToString(c.daemon_flags));
    LayRoot("dgx-h100", c.gpusim_flags);
    StartStub();
    StartDaemon(c.daemon_flags);
    if (c.want_exit) {
      std::optional<int> code = daemon_->WaitForExit(seconds(10));
      ASSERT_TRUE(code.has_value());
      EXPECT_EQ(*code, *c.want_exit);
      EXPECT_THAT(daemon_->Output(), HasSubstr(c.want_text));
    } else {
      EXPECT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20)))) << daemon_->Output();
    }
    daemon_.reset();
    stub_.reset();
  }
}

// --- configuration ---------------------------------------------------------------

TEST_F(DaemonTest, InvalidConfigAtStartIsRefusedNamingTheField) {
  LayRoot("dgx-h100");
  const std::string cfg = WriteConfig("config.yaml",
                                      "version: v1\n"
                                      "flags:\n"
                                      "  migStrategy: sometimes\n"
                                      "  plugin:\n"
                                      "    deviceIdStrategy: uuid\n");
  StartStub();
  StartDaemon({"--config-file", cfg});
  std::optional<int> code = daemon_->WaitForExit(seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  const std::string out = daemon_->Output();
  EXPECT_THAT(out, HasSubstr("flags.migStrategy"));
  EXPECT_THAT(out, HasSubstr("flags.plugin.deviceIdStrategy"));
  EXPECT_EQ(stub_->RegistrationCount(kResource), 0u);
}

TEST_F(DaemonTest, ReloadAppliesValidConfigsAndKeepsTheRunningOneOnInvalidOnes) {
  LayRoot("dgx-h100");
  const std::string cfg = WriteConfig("config.yaml", "version: v1\nlog:\n  level: info\n");
  StartRegistered({"--config-file", cfg});
  auto profile = sim::BuiltinProfile("dgx-h100");
  auto client = Client();

  // A change that leaves the resource as it is keeps the registration.
  WriteConfig("config.yaml", "version: v1\nlog:\n  level: debug\n");
  ASSERT_TRUE(daemon_->WaitForOutput("configuration reloaded", seconds(10))) << daemon_->Output();
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);

  // An invalid file is rejected with its errors and the daemon keeps serving.
  WriteConfig("config.yaml", "version: v1\nflags:\n  plugin:\n    deviceIDStrategy: serial\n");
  ASSERT_TRUE(daemon_->WaitForOutput("flags.plugin.deviceIDStrategy", seconds(10)))
      << daemon_->Output();
  v1beta1::AllocateResponse resp;
  EXPECT_TRUE(
      client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);

  // A valid change of the ID strategy changes what containers get; the
  // kubelet keeps the UUIDs (NVIDIA's plugin advertises them under both
  // strategies, so the kubelet's checkpoint stays valid). Here triggered by
  // SIGHUP as well as by the file change.
  auto fresh = Client();
  auto stream = fresh->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const size_t lists = stream->UpdateCount();
  WriteConfig("config.yaml", "version: v1\nflags:\n  plugin:\n    deviceIDStrategy: index\n");
  daemon_->Signal(SIGHUP);
  const std::string gpu3 = profile->gpus[3].uuid;
  std::string visible;
  bool every_allocate_ok = true;  // during the reload too
  Eventually(
      [&] {
        if (!fresh->Allocate(PluginClient::AllocateRequestFor({{gpu3}}), &resp).ok()) {
          every_allocate_ok = false;
          return true;
        }
        visible = resp.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES");
        return visible == "3";
      },
      milliseconds(10000));
  EXPECT_TRUE(every_allocate_ok) << daemon_->Output();
  EXPECT_EQ(visible, "3") << daemon_->Output();
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
  for (const auto& update : stream->Updates()) {
    for (const auto& d : update.devices()) EXPECT_EQ(d.id().rfind("GPU-", 0), 0u) << d.id();
  }
  EXPECT_LE(stream->UpdateCount(), lists + 1) << "at most one list, with the same IDs";
  EXPECT_FALSE(fresh->Allocate(PluginClient::AllocateRequestFor({{"3"}}), &resp).ok())
      << "an index is not a device ID the kubelet has";
}

// --- NVIDIA's config format, flags and environment (docs/migrating-from-nvidia.md) ---

TEST_F(DaemonTest, StartsTheWayNvidiasChartStartsItsPlugin) {
  LayRoot("dgx-h100");
  // The JSON NVIDIA's plugin prints at start, pasted back as the config file,
  // with the node's paths filled in.
  std::ifstream dump(std::string(GDP_SOURCE_DIR) +
                     "/tests/testdata/config/valid-nvidia-startup-dump.yaml");
  std::stringstream text;
  text << dump.rdbuf();
  std::string cfg = text.str();
  auto swap = [&cfg](const std::string& from, const std::string& to) {
    const size_t at = cfg.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    cfg.replace(at, from.size(), to);
  };
  swap("\"migStrategy\": \"single\"", "\"migStrategy\": \"none\"");
  swap("\"nvidiaDriverRoot\": \"/run/nvidia/driver\"", "\"nvidiaDriverRoot\": \"" + root_ + "\"");
  swap("\"nvidiaDevRoot\": \"/\"", "\"nvidiaDevRoot\": \"" + root_ + "\"");
  swap("\"containerDriverRoot\": \"/driver-root\"", "\"containerDriverRoot\": \"" + root_ + "\"");
  swap("\"mpsRoot\": \"/run/nvidia/mps\"", "\"mpsRoot\": \"" + dir_ + "/mps\"");
  const std::string path = WriteConfig("nvidia.json", cfg);
  StartStub();
  // No flag of ours: NVIDIA's environment only, as its chart sets it.
  daemon_ = std::make_unique<Process>(
      std::vector<std::string>{GDP_DAEMON_BIN},
      std::map<std::string, std::string>{{"CONFIG_FILE", path},
                                         {"KUBELET_SOCKET", plugin_dir_ + "/kubelet.sock"},
                                         {"PASS_DEVICE_SPECS", "true"},
                                         {"DEVICE_ID_STRATEGY", "index"},
                                         {"NVIDIA_CTK_PATH", "/usr/bin/nvidia-ctk"},
                                         {"DP_DISABLE_HEALTHCHECKS", "109"},
                                         {"METRICS_PORT", std::to_string(port_)},
                                         {"METRICS_BIND_ADDRESS", "127.0.0.1"}},
      dir_ + "/daemon.log");
  ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20)))) << daemon_->Output();
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  auto profile = sim::BuiltinProfile("dgx-h100");
  EXPECT_EQ(stream->Updates().front().devices_size(), 8);
  EXPECT_EQ(stream->Updates().front().devices(0).id(), profile->gpus[0].uuid)
      << "the kubelet sees UUIDs under the index strategy too";
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(
      client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[2].uuid}}), &resp).ok());
  EXPECT_EQ(resp.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), "2");
  // passDeviceSpecs: the file says false, PASS_DEVICE_SPECS (higher) true.
  EXPECT_GT(resp.container_responses(0).devices_size(), 0);
  const std::string out = daemon_->Output();
  EXPECT_THAT(out, HasSubstr("config field accepted but not acted on field=flags.gfd.outputFile"));
  EXPECT_THAT(out, HasSubstr("field=resources.gpus"));
  EXPECT_THAT(out, HasSubstr("pass_device_specs=true"));
  EXPECT_THAT(out, Not(HasSubstr("invalid config")));
}

TEST_F(DaemonTest, ResourcePatternsRenameGpusLiveAndSayWhichPodsTheyStrand) {
  LayRoot("dgx-h100");
  kubelet_stub::PodResourcesStub pods(dir_ + "/pr.sock");
  ASSERT_TRUE(pods.Start().ok());
  auto profile = sim::BuiltinProfile("dgx-h100");
  pods.SetAssignments({{"ml", "trainer", "main", kResource, {profile->gpus[3].uuid}}});
  const std::string patterns =
      "version: v1\nresources:\n  gpus:\n  - pattern: '*H100*'\n    name: h100\n";
  const std::string cfg = WriteConfig("config.yaml", patterns);
  StartRegistered({"--config-file", cfg, "--pod-resources-socket", dir_ + "/pr.sock"});
  // Ignored by default, as NVIDIA's plugin ignores them, and said so.
  EXPECT_THAT(daemon_->Output(), HasSubstr("field=resources.gpus"));
  WriteConfig("config.yaml", "version: v1\nflags:\n  plugin:\n    useResourcePatterns: true\n" +
                                 patterns.substr(std::string("version: v1\n").size()));
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/h100", In(seconds(10)))) << daemon_->Output();
  ASSERT_TRUE(daemon_->WaitForOutput("a config change strands running pods", seconds(10)))
      << daemon_->Output();
  EXPECT_THAT(daemon_->Output(), HasSubstr("1 pod(s) hold (ml/trainer)"));
  PluginClient h100(plugin_dir_ + "/nvidia-h100.sock");
  ASSERT_TRUE(h100.WaitConnected(In(seconds(10))));
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(
      h100.Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  EXPECT_EQ(resp.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), profile->gpus[0].uuid);
}

// NVIDIA's chart runs `config-manager` as an init container (ONESHOT) with its
// environment: the file the node's label picks lands where the plugin reads it.
TEST_F(DaemonTest, ConfigManagerCopiesTheNamedConfigTheNodeLabelPicks) {
  httplib::Server api;
  std::atomic<int> gets{0};
  api.Get("/api/v1/nodes/gpu-node-0", [&gets](const httplib::Request&, httplib::Response& res) {
    ++gets;
    res.set_content(R"({"kind":"Node","metadata":{"name":"gpu-node-0","resourceVersion":"7",)"
                    R"("labels":{"nvidia.com/device-plugin.config":"ts4"}}})",
                    "application/json");
  });
  const int port = api.bind_to_any_port("127.0.0.1");
  std::thread serve([&api] { api.listen_after_bind(); });
  ASSERT_TRUE(Eventually([&api] { return api.is_running(); }, milliseconds(5000)));
  const std::string kubeconfig =
      WriteConfig("kubeconfig",
                  "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n"
                  "  cluster:\n    server: http://127.0.0.1:" +
                      std::to_string(port) +
                      "\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: fake\n"
                      "  context:\n    cluster: fake\n    user: u\n");
  std::filesystem::create_directories(dir_ + "/available");
  std::filesystem::create_directories(dir_ + "/config");
  std::ofstream(dir_ + "/available/default") << "version: v1\n";
  std::ofstream(dir_ + "/available/ts4") << "version: v1\nsharing: {timeSlicing: {}}\n";
  // Run under NVIDIA's command name, as its chart runs it.
  const std::string link = dir_ + "/config-manager";
  std::filesystem::create_symlink(GDP_DAEMON_BIN, link);
  Process cm({link},
             {{"NODE_NAME", "gpu-node-0"},
              {"KUBECONFIG", kubeconfig},
              {"ONESHOT", "true"},
              {"CONFIG_FILE_SRCDIR", dir_ + "/available"},
              {"CONFIG_FILE_DST", dir_ + "/config/config.yaml"},
              {"DEFAULT_CONFIG", "default"},
              {"FALLBACK_STRATEGIES", "named,single"}},
             dir_ + "/config-manager.log");
  std::optional<int> code = cm.WaitForExit(seconds(20));
  api.stop();
  serve.join();
  ASSERT_TRUE(code.has_value()) << cm.Output();
  EXPECT_EQ(*code, 0) << cm.Output();
  EXPECT_GE(gets.load(), 1);
  std::ifstream in(dir_ + "/config/config.yaml");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "version: v1\nsharing: {timeSlicing: {}}\n") << cm.Output();
  EXPECT_THAT(cm.Output(), HasSubstr("config written"));
}

TEST_F(DaemonTest, RunAsNvidiaDevicePluginItTakesNvidiasDefaults) {
  LayRoot("dgx-h100");
  // The command NVIDIA's chart runs: a link named nvidia-device-plugin.
  const std::string link = dir_ + "/nvidia-device-plugin";
  std::filesystem::create_symlink(GDP_DAEMON_BIN, link);
  StartStub();
  std::map<std::string, std::string> env = {{"NVIDIA_DRIVER_ROOT", root_},
                                            {"DRIVER_ROOT_CTR_PATH", root_},
                                            {"KUBELET_SOCKET", plugin_dir_ + "/kubelet.sock"},
                                            {"METRICS_PORT", std::to_string(port_)},
                                            {"METRICS_BIND_ADDRESS", "127.0.0.1"}};
  daemon_ = std::make_unique<Process>(std::vector<std::string>{link}, env, dir_ + "/daemon.log");
  ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20)))) << daemon_->Output();
  EXPECT_THAT(daemon_->Output(), HasSubstr("pass_device_specs=false"));
  auto client = Client();
  auto profile = sim::BuiltinProfile("dgx-h100");
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(
      client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  EXPECT_EQ(resp.container_responses(0).devices_size(), 0) << "NVIDIA's default: no DeviceSpecs";

  // A config file (or our variable) still wins over those defaults.
  daemon_.reset();
  stub_.reset();
  StartStub();
  env["CONFIG_FILE"] =
      WriteConfig("on.yaml", "version: v1\nflags:\n  plugin:\n    passDeviceSpecs: true\n");
  daemon_ = std::make_unique<Process>(std::vector<std::string>{link}, env, dir_ + "/daemon.log");
  ASSERT_TRUE(stub_->WaitForRegistration(kResource, In(seconds(20)))) << daemon_->Output();
  auto client2 = Client();
  ASSERT_TRUE(
      client2->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  EXPECT_GT(resp.container_responses(0).devices_size(), 0);
}

TEST_F(DaemonTest, GdrcopyGivesEveryContainerTheNodeAndAMissingOneSaysWhatToLoad) {
  LayRoot("dgx-h100", {"--extras", "gdrcopy"});
  StartRegistered({"--gdrcopy-enabled"});
  auto client = Client();
  auto profile = sim::BuiltinProfile("dgx-h100");
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(
      client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  const auto& c = resp.container_responses(0);
  EXPECT_EQ(c.envs().at("NVIDIA_GDRCOPY"), "enabled");
  bool gdrdrv = false;
  for (const auto& d : c.devices()) gdrdrv = gdrdrv || d.container_path() == "/dev/gdrdrv";
  EXPECT_TRUE(gdrdrv) << resp.DebugString();

  // Without the node: nothing is advertised, and the log says what to load.
  daemon_.reset();
  stub_.reset();
  LayRoot("dgx-h100");
  StartStub();
  StartDaemon({"--gdrcopy-enabled"});
  ASSERT_TRUE(daemon_->WaitForOutput("load GDRCopy's gdrdrv kernel module", seconds(10)))
      << daemon_->Output();
}

TEST_F(DaemonTest, NfdFeatureFileNeedsNoApiServerAndCarriesGfdsKeys) {
  LayRoot("dgx-h100");
  const std::string file = dir_ + "/features.d/gpu";
  std::filesystem::create_directories(dir_ + "/features.d");
  // No NODE_NAME, no kubeconfig, no in-cluster service account.
  StartRegistered({"--nfd-feature-file", file});
  std::string text;
  Eventually(
      [&] {
        std::ifstream in(file);
        std::stringstream s;
        s << in.rdbuf();
        text = s.str();
        return !text.empty();
      },
      milliseconds(10000));
  ASSERT_FALSE(text.empty()) << daemon_->Output();
  for (const char* line :
       {"nvidia.com/gpu.count=8\n", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3\n",
        "nvidia.com/cuda.driver.major=550\n", "nvidia.com/cuda.runtime.major=12\n",
        "nvidia.com/vgpu.present=false\n", "nvidia.com/gpu.mode=", "nvidia.com/gpu.machine="}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  EXPECT_THAT(daemon_->Output(), Not(HasSubstr("node labels and events are off")));
}

// --- sharing, MIG and CDI (docs/sharing.md) -------------------------------

TEST_F(DaemonTest, TimeSlicingReplicasAreServedThroughCdiAlone) {
  LayRoot("dgx-h100");
  const std::string cdi = dir_ + "/cdi";
  std::filesystem::create_directories(cdi);
  std::ofstream(cdi + "/gpu-device-plugin.v0.json") << "{}";  // a leftover of ours
  const std::string cfg = WriteConfig("config.yaml", R"(version: v1
flags:
  plugin:
    deviceListStrategy: cdi-cri
    passDeviceSpecs: false
    cdiRoot: )" + cdi + R"(
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 4
)");
  StartRegistered({"--config-file", cfg});
  auto profile = sim::BuiltinProfile("dgx-h100");
  ASSERT_TRUE(profile.ok());
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const auto first = stream->Updates().front();
  ASSERT_EQ(first.devices_size(), 32);
  EXPECT_EQ(first.devices(13).id(), profile->gpus[3].uuid + "::1");

  const std::string replica = profile->gpus[3].uuid + "::1";
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(client->Allocate(PluginClient::AllocateRequestFor({{replica}}), &resp).ok());
  const auto& c = resp.container_responses(0);
  ASSERT_EQ(c.cdi_devices_size(), 1);
  EXPECT_EQ(c.cdi_devices(0).name(), "nvidia.com/gpu=" + replica);
  EXPECT_EQ(c.devices_size(), 0);
  EXPECT_EQ(c.envs_size(), 0);

  // The spec names that device with its GPU's node; the leftover is gone.
  std::ifstream in(cdi + "/gpu-device-plugin.nvidia.com-gpu.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("\"name\": \"" + replica + "\""), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("\"hostPath\": \"" + root_ + "/dev/nvidia3\""), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(cdi + "/gpu-device-plugin.v0.json"));
  // Every device comes with the driver's user space the root's ld cache names:
  // the library of the running version, also under its soname, and its firmware.
  const std::string lib = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.";
  for (const std::string& want :
       {"\"hostPath\": \"" + root_ + lib + profile->driver_version + "\"",
        "\"containerPath\": \"" + lib + "1\"",
        "\"containerPath\": \"/lib/firmware/nvidia/" + profile->driver_version + "/gsp_ga10x.bin\"",
        std::string("\"containerPath\": \"/usr/bin/nvidia-cuda-mps-control\"")}) {
    EXPECT_NE(text.str().find(want), std::string::npos) << want << "\n" << text.str();
  }
}

TEST_F(DaemonTest, MigMixedAdvertisesOneResourcePerProfileWithCapsNodes) {
  LayRoot("a100-mig");
  auto profile = sim::BuiltinProfile("a100-mig");
  ASSERT_TRUE(profile.ok());
  std::map<std::string, std::vector<std::string>> want;  // resource -> MIG UUIDs
  for (const auto& gpu : profile->gpus) {
    for (const auto& m : gpu.mig_devices) want["nvidia.com/mig-" + m.profile].push_back(m.uuid);
  }
  ASSERT_GE(want.size(), 2u);
  StartStub();
  StartDaemon({"--mig-strategy", "mixed"});
  for (const auto& [resource, uuids] : want) {
    ASSERT_TRUE(stub_->WaitForRegistration(resource, In(seconds(20)))) << resource << "\n"
                                                                       << daemon_->Output();
    PluginClient client(plugin_dir_ + "/" + stub_->LastRegistration(resource).endpoint());
    ASSERT_TRUE(client.WaitConnected(In(seconds(10))));
    auto stream = client.Watch();
    ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
    std::vector<std::string> ids;
    const v1beta1::ListAndWatchResponse update = stream->Updates().front();
    for (const auto& d : update.devices()) ids.push_back(d.id());
    std::vector<std::string> sorted_want = uuids;
    std::sort(ids.begin(), ids.end());
    std::sort(sorted_want.begin(), sorted_want.end());
    EXPECT_EQ(ids, sorted_want) << resource;

    v1beta1::AllocateResponse resp;
    ASSERT_TRUE(client.Allocate(PluginClient::AllocateRequestFor({{uuids[0]}}), &resp).ok());
    const auto& c = resp.container_responses(0);
    EXPECT_EQ(c.envs().at("NVIDIA_VISIBLE_DEVICES"), uuids[0]);
    int caps = 0;
    for (const auto& d : c.devices()) {
      if (d.container_path().rfind("/dev/nvidia-caps/nvidia-cap", 0) == 0) {
        ++caps;
        EXPECT_TRUE(std::filesystem::exists(d.host_path())) << d.host_path();
      }
    }
    EXPECT_EQ(caps, 2) << resource;  // its GPU instance and compute instance
  }
}

// --- a node that changes under the daemon --------------------------------------

size_t HealthyCount(const v1beta1::ListAndWatchResponse& r) {
  size_t n = 0;
  for (const auto& d : r.devices()) n += d.health() == "Healthy" ? 1 : 0;
  return n;
}

// Every device of `resource` a stream of it shows now, with its health.
std::map<std::string, std::string> Last(const kubelet_stub::WatchStream& s) {
  const auto updates = s.Updates();
  return updates.empty() ? std::map<std::string, std::string>{} : HealthById(updates.back());
}

TEST_F(DaemonTest, HotAddedGpuIsAdvertisedOnTheOpenStreamWithoutReRegistering) {
  LayRoot("dgx-h100");
  StartRegistered({"--rescan-interval", "200ms"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  Gpusim({"add", "--like", "3"});
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return r.devices_size() == 9; }, In(seconds(10))))
      << daemon_->Output();
  const auto now = Last(*stream);
  EXPECT_EQ(HealthyCount(stream->Updates().back()), 9u);
  EXPECT_FALSE(stream->finished()) << "the stream stays open";
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u) << "no new registration";
  std::string added;
  auto profile = sim::BuiltinProfile("dgx-h100");
  for (const auto& [id, health] : now) {
    bool known = false;
    for (const auto& g : profile->gpus) known = known || g.uuid == id;
    if (!known) added = id;
  }
  ASSERT_FALSE(added.empty());
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(client->Allocate(PluginClient::AllocateRequestFor({{added}}), &resp).ok());
  EXPECT_EQ(resp.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), added);
  auto inv = Get("/inventory");
  ASSERT_TRUE(inv);
  EXPECT_EQ(nlohmann::json::parse(inv->body)["gpus"].size(), 9u);
  EXPECT_THAT(daemon_->Output(), HasSubstr("GPU added: " + added));
  // Seen first by a fresh NVML session in a child process.
  EXPECT_THAT(daemon_->Output(), HasSubstr("GPUs discovered in a child process"));
}

TEST_F(DaemonTest, AGpuTheDriverUnbindsIsUnhealthyAtOnceThenLeavesTheList) {
  LayRoot("dgx-h100");
  StartRegistered({"--rescan-interval", "0"});
  auto profile = sim::BuiltinProfile("dgx-h100");
  const std::string gpu4 = profile->gpus[4].uuid;
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const size_t before = stream->UpdateCount();
  Gpusim({"remove", "--uuid", gpu4});
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return r.devices_size() == 7; }, In(seconds(10))))
      << daemon_->Output();
  const auto updates = stream->Updates();
  ASSERT_GT(updates.size(), before + 1) << "an update before the list without it\n"
                                        << daemon_->Output();
  EXPECT_EQ(HealthById(updates[before])[gpu4], "Unhealthy") << daemon_->Output();
  EXPECT_EQ(updates[before].devices_size(), 8);
}

TEST_F(DaemonTest, WithoutChangeEventsThePeriodicCheckAloneNoticesAChange) {
  // An older driver: no bind/unbind system events, no MIG configuration event.
  LayRoot("dgx-h100", {"--no-change-events"});
  StartRegistered({"--rescan-interval", "0"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  Gpusim({"add"});
  // With events off and no periodic check, nothing notices.
  EXPECT_FALSE(
      stream->WaitFor([](const auto& r) { return r.devices_size() == 9; }, In(seconds(2))));

  daemon_.reset();
  stub_.reset();
  LayRoot("dgx-h100", {"--no-change-events"});
  StartRegistered({"--rescan-interval", "200ms"});
  auto client2 = Client();
  auto stream2 = client2->Watch();
  ASSERT_TRUE(stream2->WaitForCount(1, In(seconds(10))));
  Gpusim({"add"});
  ASSERT_TRUE(
      stream2->WaitFor([](const auto& r) { return r.devices_size() == 9; }, In(seconds(10))))
      << daemon_->Output();
  EXPECT_THAT(daemon_->Output(), HasSubstr("GPU device nodes in"));
}

TEST_F(DaemonTest, RemovedGpuAPodHoldsStaysUnhealthyUntilReleasedAndIsNeverReissued) {
  LayRoot("dgx-h100");
  kubelet_stub::PodResourcesStub pods(dir_ + "/pr.sock");
  ASSERT_TRUE(pods.Start().ok());
  auto profile = sim::BuiltinProfile("dgx-h100");
  const std::string held = profile->gpus[3].uuid;
  const std::string free = profile->gpus[5].uuid;
  pods.SetAssignments({{"default", "trainer", "main", kResource, {held}}});
  StartRegistered({"--rescan-interval", "200ms", "--pod-resources-socket", dir_ + "/pr.sock"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));

  Gpusim({"remove", "--uuid", free});
  Gpusim({"remove", "--uuid", held});
  ASSERT_TRUE(stream->WaitFor(
      [&](const auto& r) {
        auto h = HealthById(r);
        return r.devices_size() == 7 && h.count(free) == 0 && h[held] == "Unhealthy";
      },
      In(seconds(10))))
      << daemon_->Output();
  // Never handed out again, and no failure for the other GPUs.
  v1beta1::AllocateResponse resp;
  grpc::Status st = client->Allocate(PluginClient::AllocateRequestFor({{held}}), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("default/trainer/main"));
  v1beta1::PreferredAllocationRequest pref_req;
  auto* creq = pref_req.add_container_requests();
  creq->add_available_deviceids(profile->gpus[0].uuid);
  creq->add_available_deviceids(held);
  creq->set_allocation_size(1);
  v1beta1::PreferredAllocationResponse pref;
  st = client->GetPreferredAllocation(pref_req, &pref);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(
      client->Allocate(PluginClient::AllocateRequestFor({{profile->gpus[0].uuid}}), &resp).ok());
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);

  // The pod ends: the device goes away.
  pods.SetAssignments({});
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return r.devices_size() == 6; }, In(seconds(15))))
      << daemon_->Output();
  EXPECT_EQ(HealthyCount(stream->Updates().back()), 6u);
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
  daemon_.reset();  // before the pod-resources stand-in it still asks goes away
}

TEST_F(DaemonTest, MigReLayoutUnderMixedAddsAndRemovesProfileResourcesLive) {
  LayRoot("a100-mig");
  StartStub();
  StartDaemon({"--mig-strategy", "mixed", "--rescan-interval", "200ms"});
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/mig-2g.20gb", In(seconds(20))))
      << daemon_->Output();
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/mig-1g.10gb", In(seconds(20))));
  PluginClient small(plugin_dir_ + "/" +
                     stub_->LastRegistration("nvidia.com/mig-1g.10gb").endpoint());
  ASSERT_TRUE(small.WaitConnected(In(seconds(10))));
  auto stream = small.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  const int before = stream->Updates().back().devices_size();
  const std::string mid_socket =
      plugin_dir_ + "/" + stub_->LastRegistration("nvidia.com/mig-2g.20gb").endpoint();

  // GPU 0 (3g+2g+1g x2) becomes 1g x7, GPU 3 (2g x3 + 1g) one 4g.40gb: the
  // 2g.20gb profile leaves the node, 4g.40gb arrives, 1g.10gb grows by 4.
  Gpusim({"mig", "--gpu", "0", "--layout", "1g.10gb=7"});
  Gpusim({"mig", "--gpu", "3", "--layout", "4g.40gb=1"});
  ASSERT_TRUE(stub_->WaitForRegistration("nvidia.com/mig-4g.40gb", In(seconds(10))))
      << daemon_->Output();
  ASSERT_TRUE(stream->WaitFor([&](const auto& r) { return r.devices_size() == before + 5 - 1; },
                              In(seconds(10))))
      << daemon_->Output();
  EXPECT_FALSE(stream->finished());
  EXPECT_EQ(stub_->RegistrationCount("nvidia.com/mig-1g.10gb"), 1u);
  for (int i = 0; i < 100 && std::filesystem::exists(mid_socket); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_FALSE(std::filesystem::exists(mid_socket)) << "the 2g.20gb server stopped";
}

TEST_F(DaemonTest, MigReLayoutUnderSingleChangesTheGpuResourceLive) {
  LayRoot("a100-mig");
  for (const char* gpu : {"0", "1", "2", "3"})
    Gpusim({"mig", "--gpu", gpu, "--layout", "1g.10gb=7"});
  StartRegistered({"--mig-strategy", "single", "--rescan-interval", "200ms"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(
      stream->WaitFor([](const auto& r) { return r.devices_size() == 28; }, In(seconds(10))));
  Gpusim({"mig", "--gpu", "2", "--layout", "1g.10gb=3"});
  ASSERT_TRUE(
      stream->WaitFor([](const auto& r) { return r.devices_size() == 24; }, In(seconds(10))))
      << daemon_->Output();
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
}

TEST_F(DaemonTest, DriverStopReleasesEverythingAndStartBringsTheGpusBack) {
  LayRoot("dgx-h100");
  const std::string cdi = dir_ + "/cdi";
  std::filesystem::create_directories(cdi);
  StartRegistered({"--rescan-interval", "200ms", "--device-list-strategy", "envvar,cdi-cri",
                   "--cdi-root", cdi});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));

  // Without a wait the unload fails: the daemon has the driver open.
  std::string out;
  EXPECT_NE(GpusimStatus({"driver", "stop"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("EBUSY"));
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return HealthyCount(r) == 8; }, In(seconds(10))))
      << "a failed stop changes nothing";

  // With a wait, the daemon notices the driver leaving and lets go.
  ASSERT_EQ(GpusimStatus({"driver", "stop", "--wait", "20s"}, &out), 0) << out << daemon_->Output();
  ASSERT_TRUE(stream->WaitFor(
      [](const auto& r) { return r.devices_size() == 8 && HealthyCount(r) == 0; }, In(seconds(10))))
      << daemon_->Output();
  auto ready = Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("driver is unavailable"));
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u) << "still registered";

  Gpusim({"driver", "start"});
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return HealthyCount(r) == 8; }, In(seconds(15))))
      << daemon_->Output();
  EXPECT_TRUE(daemon_->WaitForOutput("the driver is back", seconds(5)));

  // Again, now with a new driver version.
  ASSERT_EQ(GpusimStatus({"driver", "stop", "--wait", "20s"}, &out), 0) << out << daemon_->Output();
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return HealthyCount(r) == 0; }, In(seconds(10))));
  Gpusim({"driver", "start", "--version", "560.35.03"});
  ASSERT_TRUE(stream->WaitFor([](const auto& r) { return HealthyCount(r) == 8; }, In(seconds(15))))
      << daemon_->Output();
  for (int i = 0; i < 100; ++i) {
    auto inv = Get("/inventory");
    if (inv && inv->status == 200 &&
        nlohmann::json::parse(inv->body)["driverVersion"] == "560.35.03") {
      break;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  auto inv = Get("/inventory");
  ASSERT_TRUE(inv);
  EXPECT_EQ(nlohmann::json::parse(inv->body)["driverVersion"], "560.35.03");
  EXPECT_THAT(daemon_->Output(), HasSubstr("the driver version changed"));
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
  EXPECT_FALSE(stream->finished());
  // The CDI spec gives containers the new driver's library, not the old one's.
  const std::string spec_path = cdi + "/gpu-device-plugin.nvidia.com-gpu.json";
  auto spec_text = [&] {
    std::ifstream in(spec_path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  for (int i = 0; i < 100 && spec_text().find("libnvidia-ml.so.560.35.03") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_THAT(spec_text(), HasSubstr("libnvidia-ml.so.560.35.03"));
  EXPECT_THAT(spec_text(), HasSubstr("/lib/firmware/nvidia/560.35.03/gsp_ga10x.bin"));
  EXPECT_THAT(spec_text(), Not(HasSubstr("550.54.15")));
}

TEST_F(DaemonTest, ANodeChangeDuringAConfigReloadEndsWithBoth) {
  LayRoot("dgx-h100");
  const std::string config = WriteConfig("config.yaml", "version: v1\n");
  StartRegistered({"--config-file", config, "--rescan-interval", "200ms"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  WriteConfig("config.yaml",
              "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
              "    - name: nvidia.com/gpu\n      replicas: 2\n");
  Gpusim({"add"});
  ASSERT_TRUE(
      stream->WaitFor([](const auto& r) { return r.devices_size() == 18; }, In(seconds(15))))
      << daemon_->Output();
  EXPECT_EQ(HealthyCount(stream->Updates().back()), 18u);
}

TEST_F(DaemonTest, ABurstOfChangesEndsInTheLastStateWithoutFlapping) {
  LayRoot("dgx-h100");
  StartRegistered({"--rescan-interval", "200ms"});
  auto client = Client();
  auto stream = client->Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(10))));
  for (int i = 0; i < 3; ++i) Gpusim({"add"});
  ASSERT_TRUE(
      stream->WaitFor([](const auto& r) { return r.devices_size() == 11; }, In(seconds(15))))
      << daemon_->Output();
  for (const auto& u : stream->Updates()) {
    EXPECT_EQ(HealthyCount(u), static_cast<size_t>(u.devices_size())) << "no device flapped";
  }
  EXPECT_EQ(stub_->RegistrationCount(kResource), 1u);
}

}  // namespace
}  // namespace gdp::testing
