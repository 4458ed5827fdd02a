// Integration tests: PosixOs running real processes, and the supervisor
// running the stand-in nvidia-cuda-mps-control (sim/mps_control_standin.cc)
// as real daemons. The stand-in records every command its daemon receives in
// <log dir>/commands.log; the tests read the limits there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "src/mps/agent.h"
#include "src/mps/os.h"
#include "src/mps/supervisor.h"
#include "src/nvml/dl_nvml.h"

namespace gdp::mps {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kStandin[] = GDP_MPS_CONTROL_BIN;
constexpr char kGpuA[] = "GPU-aaaaaaaa-0000-0000-0000-000000000000";
constexpr char kGpuB[] = "GPU-bbbbbbbb-0000-0000-0000-000000000000";
constexpr char kGpuC[] = "GPU-cccccccc-0000-0000-0000-000000000000";

template <typename Pred>
bool Eventually(Pred pred, milliseconds timeout = milliseconds(10'000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    struct timespec ts = {0, 5'000'000};
    nanosleep(&ts, nullptr);
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

// A short private directory (unix socket paths are limited to 108 bytes).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gdpmps.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// --- PosixOs ------------------------------------------------------------------

TEST(PosixOsTest, RunPassesArgsEnvAndStdinAndCapturesOutput) {
  PosixOs os;
  auto r =
      os.Run(Command{{"/bin/sh", "-c", "read line; echo \"$line/$GDP_X\"; echo err >&2; exit 3"},
                     {{"GDP_X", "y"}},
                     "hello\n",
                     milliseconds(5000)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->output, "hello/y\nerr\n");
}

TEST(PosixOsTest, RunReportsSignalsMissingProgramsAndTimeouts) {
  PosixOs os;
  auto killed = os.Run(Command{{"/bin/sh", "-c", "kill -9 $$"}, {}, "", milliseconds(5000)});
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(killed->exit_code, 128 + SIGKILL);

  auto missing = os.Run(Command{{"/nonexistent/prog"}, {}, "", milliseconds(5000)});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/prog"));

  const auto start = std::chrono::steady_clock::now();
  auto slow = os.Run(Command{{"/bin/sleep", "30"}, {}, "", milliseconds(100)});
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(PosixOsTest, RunDoesNotWaitForADescendantHoldingTheOutput) {
  PosixOs os;
  const auto start = std::chrono::steady_clock::now();
  auto r =
      os.Run(Command{{"/bin/sh", "-c", "sleep 30 & echo started"}, {}, "", milliseconds(5000)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output, "started\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(PosixOsTest, AZombieIsNotAlive) {
  PosixOs os;
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  // Exited but not reaped: a zombie, which kill(pid, 0) would call alive.
  ASSERT_TRUE(Eventually([&] {
    std::string stat = ReadAll("/proc/" + std::to_string(child) + "/stat");
    return stat.find(") Z ") != std::string::npos;
  }));
  EXPECT_FALSE(os.ProcessAlive(child));
  EXPECT_FALSE(os.ProcessAlive(child));  // still not alive once reaped
  waitpid(child, nullptr, WNOHANG);      // in case it was not
}

TEST(PosixOsTest, ProcessAliveAndDirectories) {
  PosixOs os;
  EXPECT_TRUE(os.ProcessAlive(getpid()));
  EXPECT_FALSE(os.ProcessAlive(0));
  TempDir dir;
  EXPECT_TRUE(os.MakeDirectories(dir.path() + "/a/b/c").ok());
  EXPECT_TRUE(os.CheckWritable(dir.path() + "/a/b/c").ok());
  std::ofstream(dir.path() + "/file") << "x";
  absl::Status st = os.MakeDirectories(dir.path() + "/file/sub");
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(dir.path() + "/file/sub"));
  EXPECT_EQ(os.CheckWritable(dir.path() + "/missing").code(), absl::StatusCode::kNotFound);
}

// --- The supervisor with the stand-in ------------------------------------------

class SupervisorIntegrationTest : public ::testing::Test {
 protected:
  SupervisorOptions Options() {
    SupervisorOptions o;
    o.control_binary = kStandin;
    o.pipe_root = dir_.path() + "/run";
    o.log_root = dir_.path() + "/log";
    o.health_interval = milliseconds(20);
    o.restart_backoff_initial = milliseconds(10);
    o.restart_backoff_max = milliseconds(100);
    return o;
  }
  std::unique_ptr<Supervisor> Make(SupervisorOptions o) {
    options_ = o;
    return std::make_unique<Supervisor>(o, [this](const GpuHealth& h) {
      std::lock_guard lock(mu_);
      reports_.push_back(h);
    });
  }
  std::string Commands(const std::string& uuid) {
    return ReadAll(LogDirectory(options_, uuid) + "/commands.log");
  }
  int Pid(const std::string& uuid) {
    std::string text = ReadAll(PipeDirectory(options_, uuid) + "/" + kPidFileName);
    return text.empty() ? 0 : std::stoi(text);
  }
  int CountReports(const std::string& uuid, bool healthy) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& r : reports_) n += r.gpu.uuid == uuid && r.healthy == healthy;
    return n;
  }
  std::vector<GpuHealth> Reports() {
    std::lock_guard lock(mu_);
    return reports_;
  }

  TempDir dir_;
  SupervisorOptions options_;
  PosixOs os_;
  std::mutex mu_;
  std::vector<GpuHealth> reports_;
};

TEST_F(SupervisorIntegrationTest, EachDaemonReceivesItsLimitsAndAnswers) {
  auto s = Make(Options());
  ASSERT_TRUE(s->Apply({{0, kGpuA, 40960, 50}, {1, kGpuB, 20480, 25}}).ok());
  EXPECT_THAT(Lines(Commands(kGpuA)), ElementsAre("set_default_device_pinned_mem_limit 0 40960M",
                                                  "set_default_active_thread_percentage 50",
                                                  "get_default_active_thread_percentage",
                                                  "get_default_device_pinned_mem_limit 0"));
  EXPECT_THAT(Commands(kGpuB), HasSubstr("set_default_device_pinned_mem_limit 0 20480M\n"
                                         "set_default_active_thread_percentage 25\n"));
  for (const char* uuid : {kGpuA, kGpuB}) {
    EXPECT_TRUE(std::filesystem::exists(PipeDirectory(options_, uuid) + "/control")) << uuid;
    EXPECT_TRUE(os_.ProcessAlive(Pid(uuid))) << uuid;
    EXPECT_EQ(CountReports(uuid, true), 1) << uuid;
  }
  EXPECT_NE(Pid(kGpuA), Pid(kGpuB));
  // A client, as a pod would run it, talks to the daemon of its GPU.
  auto r = os_.Run(Command{{kStandin},
                           {{"CUDA_MPS_PIPE_DIRECTORY", PipeDirectory(options_, kGpuB)}},
                           "get_default_active_thread_percentage\n",
                           milliseconds(5000)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "25.0\n");
  // Health rounds keep asking the harmless query.
  EXPECT_TRUE(Eventually([&] {
    auto lines = Lines(Commands(kGpuA));
    return std::count(lines.begin(), lines.end(), "get_default_active_thread_percentage") >= 3;
  }));
}

// A daemon whose limits someone else changed through its control pipe is
// found out at the next health round and restarted with its own.
TEST_F(SupervisorIntegrationTest, LimitsChangedBehindItsBackAreRestored) {
  auto s = Make(Options());
  ASSERT_TRUE(s->Apply({{0, kGpuA, 8192, 50}}).ok());
  const int first = Pid(kGpuA);
  auto r = os_.Run(Command{{kStandin},
                           {{"CUDA_MPS_PIPE_DIRECTORY", PipeDirectory(options_, kGpuA)}},
                           "set_default_device_pinned_mem_limit 0 65536M\n",
                           milliseconds(5000)});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, false) >= 1; }));
  for (const auto& h : Reports()) {
    if (!h.healthy) {
      EXPECT_THAT(h.status.message(), HasSubstr("holds pinned memory limit '65536M', not 8192M"));
    }
  }
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, true) >= 2; }));
  EXPECT_NE(Pid(kGpuA), first);
  r = os_.Run(Command{{kStandin},
                      {{"CUDA_MPS_PIPE_DIRECTORY", PipeDirectory(options_, kGpuA)}},
                      "get_default_device_pinned_mem_limit 0\n",
                      milliseconds(5000)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "8192M\n");
}

TEST_F(SupervisorIntegrationTest, StopQuitsEveryDaemonCleanly) {
  auto s = Make(Options());
  ASSERT_TRUE(s->Apply({{0, kGpuA, 1024, 0}, {1, kGpuB, 0, 10}}).ok());
  const int pid_a = Pid(kGpuA), pid_b = Pid(kGpuB);
  s->Stop();
  for (auto [uuid, pid] : {std::pair{kGpuA, pid_a}, std::pair{kGpuB, pid_b}}) {
    EXPECT_FALSE(os_.ProcessAlive(pid)) << uuid;
    EXPECT_EQ(Lines(Commands(uuid)).back(), "quit") << uuid;
    EXPECT_FALSE(std::filesystem::exists(PipeDirectory(options_, uuid) + "/control")) << uuid;
    EXPECT_THAT(ReadAll(LogDirectory(options_, uuid) + "/control.log"), HasSubstr("Shutting down"));
  }
}

TEST_F(SupervisorIntegrationTest, RestartsAKilledDaemonAndReportsHealth) {
  auto s = Make(Options());
  ASSERT_TRUE(s->Apply({{0, kGpuA, 8192, 30}}).ok());
  const int first = Pid(kGpuA);
  ASSERT_GT(first, 0);
  kill(first, SIGKILL);
  // Unhealthy, with the reason, then healthy again with a new daemon.
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, false) >= 1; }));
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, true) >= 2; }));
  for (const auto& r : Reports()) {
    if (!r.healthy) {
      EXPECT_THAT(r.status.message(), HasSubstr("exited"));
      EXPECT_THAT(r.status.message(), HasSubstr("control.log"));
    }
  }
  const int second = Pid(kGpuA);
  EXPECT_NE(second, first);
  EXPECT_TRUE(os_.ProcessAlive(second));
  // The new daemon received the limits again.
  auto lines = Lines(Commands(kGpuA));
  EXPECT_EQ(std::count(lines.begin(), lines.end(), "set_default_device_pinned_mem_limit 0 8192M"),
            2);
  auto health = s->Health();
  ASSERT_EQ(health.size(), 1u);
  EXPECT_TRUE(health[0].healthy);
}

TEST_F(SupervisorIntegrationTest, AHungDaemonIsKilledAndReplaced) {
  SupervisorOptions o = Options();
  o.command_timeout = milliseconds(300);
  o.stop_timeout = milliseconds(300);
  auto s = Make(o);
  ASSERT_TRUE(s->Apply({{0, kGpuA, 4096, 40}}).ok());
  const int hung = Pid(kGpuA);
  kill(hung, SIGSTOP);  // alive, but answers nothing
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, true) >= 2; }));
  EXPECT_FALSE(os_.ProcessAlive(hung));
  const int fresh = Pid(kGpuA);
  EXPECT_NE(fresh, hung);
  EXPECT_TRUE(os_.ProcessAlive(fresh));
  bool saw_reason = false;
  for (const auto& r : Reports()) {
    saw_reason |= !r.healthy && absl::StrContains(r.status.message(), "does not answer") &&
                  absl::StrContains(r.status.message(), "did not finish within 300 ms");
  }
  EXPECT_TRUE(saw_reason);
}

TEST_F(SupervisorIntegrationTest, ApplyRestartsOnlyWhatChanged) {
  auto s = Make(Options());
  ASSERT_TRUE(s->Apply({{0, kGpuA, 1000, 50}, {1, kGpuB, 1000, 50}}).ok());
  const int pid_a = Pid(kGpuA), pid_b = Pid(kGpuB);
  // A unchanged, B's share changes, C added.
  ASSERT_TRUE(s->Apply({{0, kGpuA, 1000, 50}, {1, kGpuB, 1000, 20}, {2, kGpuC, 500, 20}}).ok());
  EXPECT_EQ(Pid(kGpuA), pid_a);
  EXPECT_TRUE(os_.ProcessAlive(pid_a));
  EXPECT_FALSE(os_.ProcessAlive(pid_b));
  EXPECT_NE(Pid(kGpuB), pid_b);
  EXPECT_THAT(Commands(kGpuB), HasSubstr("quit\nset_default_device_pinned_mem_limit 0 1000M\n"
                                         "set_default_active_thread_percentage 20\n"));
  EXPECT_THAT(Commands(kGpuC), HasSubstr("set_default_device_pinned_mem_limit 0 500M\n"));
  // Removing GPUs quits their daemons.
  const int pid_c = Pid(kGpuC);
  ASSERT_TRUE(s->Apply({{0, kGpuA, 1000, 50}}).ok());
  EXPECT_FALSE(os_.ProcessAlive(pid_c));
  EXPECT_TRUE(os_.ProcessAlive(pid_a));
  EXPECT_EQ(s->Health().size(), 1u);
}

TEST_F(SupervisorIntegrationTest, ReplacesADaemonLeftByAnEarlierRun) {
  // A daemon that outlived a crashed plugin, holding the GPU's pipe directory.
  SupervisorOptions o = Options();
  options_ = o;
  ASSERT_TRUE(os_.MakeDirectories(PipeDirectory(o, kGpuA)).ok());
  ASSERT_TRUE(os_.MakeDirectories(LogDirectory(o, kGpuA)).ok());
  auto left = os_.Run(Command{{kStandin, "-d"},
                              {{"CUDA_MPS_PIPE_DIRECTORY", PipeDirectory(o, kGpuA)},
                               {"CUDA_MPS_LOG_DIRECTORY", LogDirectory(o, kGpuA)}},
                              "",
                              milliseconds(5000)});
  ASSERT_TRUE(left.ok() && left->exit_code == 0) << left.status();
  const int old = Pid(kGpuA);
  ASSERT_TRUE(os_.ProcessAlive(old));
  auto s = Make(o);
  ASSERT_TRUE(s->Apply({{0, kGpuA, 200, 20}}).ok());
  EXPECT_FALSE(os_.ProcessAlive(old));
  EXPECT_NE(Pid(kGpuA), old);
  EXPECT_THAT(Commands(kGpuA), HasSubstr("quit\nset_default_device_pinned_mem_limit 0 200M\n"));
}

TEST_F(SupervisorIntegrationTest, MissingBinaryAndBadDirectoryExplainThemselves) {
  SupervisorOptions o = Options();
  o.control_binary = dir_.path() + "/usr/bin/nvidia-cuda-mps-control";
  {
    auto s = Make(o);
    absl::Status st = s->Apply({{0, kGpuA, 100, 10}});
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(st.message(), HasSubstr(o.control_binary + " not found"));
  }
  o = Options();
  std::ofstream(dir_.path() + "/plain") << "not a directory";
  o.pipe_root = dir_.path() + "/plain";
  auto s = Make(o);
  absl::Status st = s->Apply({{0, kGpuA, 100, 10}});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("cannot prepare the MPS directory for GPU 0"));
  EXPECT_THAT(st.message(), HasSubstr(dir_.path() + "/plain/" + kGpuA + "/pipe"));
  ASSERT_FALSE(Reports().empty());
  EXPECT_FALSE(Reports().back().healthy);
}

TEST_F(SupervisorIntegrationTest, AFailedStartIsRetriedUntilItWorks) {
  // The pipe root is a file at first; once it is a directory the watcher's
  // retry succeeds and reports the GPU healthy.
  SupervisorOptions o = Options();
  o.pipe_root = dir_.path() + "/later";
  std::ofstream(o.pipe_root) << "x";
  auto s = Make(o);
  EXPECT_FALSE(s->Apply({{0, kGpuA, 100, 10}}).ok());
  std::filesystem::remove(o.pipe_root);
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, true) == 1; }));
  EXPECT_THAT(Commands(kGpuA), HasSubstr("set_default_active_thread_percentage 10\n"));
}

// --- On a simulated driver root: the stand-in found there, NVML's compute mode -----

TEST_F(SupervisorIntegrationTest, OnASimulatedDriverRootProhibitedGpusAreRefused) {
  // A two-GPU profile whose second GPU is in compute mode PROHIBITED.
  const std::string profile = dir_.path() + "/two.yaml";
  std::ofstream(profile) << R"(name: two
description: two T4, the second compute-prohibited
driverVersion: "535.183.01"
cudaDriverVersion: 12020
models:
  t4: {name: Tesla T4, brand: nvidia, architecture: turing, computeCapability: "7.5",
       memoryMiB: 15360, pciDeviceId: 0x1EB810DE, multiprocessors: 40, powerLimitW: 70,
       idlePowerW: 9, maxSmClockMHz: 1590, maxMemClockMHz: 5001}
gpus:
  - {model: t4, busId: "0000:3b:00.0", numaNode: 0, uuid: GPU-00000000-0000-0000-0000-00000000000a}
  - {model: t4, busId: "0000:3c:00.0", numaNode: 0, computeMode: PROHIBITED,
     uuid: GPU-00000000-0000-0000-0000-00000000000b}
)";
  const std::string root = dir_.path() + "/driver";
  auto laid = os_.Run(Command{{GDP_GPUSIM_BIN, "root", root, "--profile", profile, "--no-mknod"},
                              {},
                              "",
                              milliseconds(20'000)});
  ASSERT_TRUE(laid.ok() && laid->exit_code == 0)
      << laid.status() << (laid.ok() ? laid->output : "");

  auto binary = FindControlBinary(PosixFileSystem::Get(), root);
  ASSERT_TRUE(binary.ok()) << binary.status();
  EXPECT_EQ(*binary, root + "/usr/bin/nvidia-cuda-mps-control");
  auto nvml = nvml::DlNvml::Open(root + "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1");
  ASSERT_TRUE(nvml.ok()) << nvml.status();
  ASSERT_EQ((*nvml)->Init(), NVML_SUCCESS);

  SupervisorOptions o = Options();
  o.control_binary = *binary;
  options_ = o;
  Supervisor s(
      o,
      [this](const GpuHealth& h) {
        std::lock_guard lock(mu_);
        reports_.push_back(h);
      },
      os_, PosixFileSystem::Get(), nvml->get());
  const GpuSpec ok{0, "GPU-00000000-0000-0000-0000-00000000000a", 7680, 50};
  const GpuSpec prohibited{1, "GPU-00000000-0000-0000-0000-00000000000b", 7680, 50};
  absl::Status st = s.Apply({ok, prohibited});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("MPS is not ready on 1 of 2 GPU(s)"));
  EXPECT_THAT(st.message(),
              HasSubstr("GPU 1 (" + prohibited.uuid + ") is in compute mode PROHIBITED"));
  EXPECT_THAT(Commands(ok.uuid), HasSubstr("set_default_device_pinned_mem_limit 0 7680M\n"));
  EXPECT_FALSE(std::filesystem::exists(LogDirectory(o, prohibited.uuid)));  // nothing started
  s.Stop();
  EXPECT_EQ((*nvml)->Shutdown(), NVML_SUCCESS);
}

// --- the MPS agent -------------------------------------------------------------

// The plugin hands its list to the agent through the MPS root; a plugin that
// restarts and hands the same list changes nothing, a changed limit restarts
// that GPU's daemon only, and a silent agent makes the GPUs Unhealthy.
TEST_F(SupervisorIntegrationTest, TheAgentKeepsDaemonsAcrossPluginRestarts) {
  SupervisorOptions o = Options();
  o.log_root = o.pipe_root;
  options_ = o;
  Agent agent(o.pipe_root, o, PosixFileSystem::Get());
  auto client = std::make_unique<AgentClient>(
      o.pipe_root,
      [this](const GpuHealth& h) {
        std::lock_guard lock(mu_);
        reports_.push_back(h);
      },
      PosixFileSystem::Get(), milliseconds(10), milliseconds(1500));
  std::filesystem::create_directories(o.pipe_root);
  ASSERT_TRUE(client->Apply({{0, kGpuA, 8192, 50}, {1, kGpuB, 4096, 50}}).ok());
  EXPECT_EQ(CountReports(kGpuA, false), 1) << "Unhealthy until the agent has started it";
  agent.Tick();
  ASSERT_TRUE(Eventually([&] { return CountReports(kGpuA, true) == 1; }));
  const int pid_a = Pid(kGpuA), pid_b = Pid(kGpuB);
  ASSERT_GT(pid_a, 0);
  // The plugin goes and comes back with the same list: the daemons stay.
  client->Detach();
  client.reset();
  client = std::make_unique<AgentClient>(
      o.pipe_root, [](const GpuHealth&) {}, PosixFileSystem::Get(), milliseconds(10),
      milliseconds(1500));
  ASSERT_TRUE(client->Apply({{0, kGpuA, 8192, 50}, {1, kGpuB, 4096, 50}}).ok());
  agent.Tick();
  EXPECT_EQ(Pid(kGpuA), pid_a);
  EXPECT_EQ(Pid(kGpuB), pid_b);
  ASSERT_TRUE(Eventually([&] {
    auto h = client->Health();
    return h.size() == 2 && h[0].healthy && h[1].healthy;
  }));
  // A changed limit restarts that GPU's daemon alone.
  ASSERT_TRUE(client->Apply({{0, kGpuA, 2048, 50}, {1, kGpuB, 4096, 50}}).ok());
  agent.Tick();
  EXPECT_NE(Pid(kGpuA), pid_a);
  EXPECT_EQ(Pid(kGpuB), pid_b);
  EXPECT_THAT(Commands(kGpuA), HasSubstr("set_default_device_pinned_mem_limit 0 2048M"));
  // An agent that stops reporting: every GPU Unhealthy, saying so.
  ASSERT_TRUE(Eventually(
      [&] {
        auto h = client->Health();
        return !h.empty() && !h[0].healthy &&
               absl::StrContains(h[0].status.message(), "has not reported");
      },
      milliseconds(10'000)));
  // Stop: the agent quits them.
  client->Stop();
  agent.Tick();
  EXPECT_TRUE(Eventually([&] { return !os_.ProcessAlive(pid_b); }));
}

}  // namespace
}  // namespace gdp::mps
