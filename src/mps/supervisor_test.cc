// Unit tests of the MPS supervisor: every process it would run goes through a
// StrictMock of the process seam, files through an in-memory filesystem, the
// compute mode through a StrictMock of NVML. Real processes: mps_integration_test.
#include "src/mps/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "tests/mocks/fake_filesystem.h"
#include "tests/mocks/mock_mps_os.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::mps {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::DoAll;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::Invoke;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;

constexpr char kBin[] = "/driver/usr/bin/nvidia-cuda-mps-control";
constexpr char kUuid[] = "GPU-11111111-2222-3333-4444-555555555555";
constexpr int kPid = 4242;

SupervisorOptions TestOptions() {
  SupervisorOptions o;
  o.control_binary = kBin;
  o.pipe_root = "/run/mps";
  o.log_root = "/var/log/mps";
  o.ready_timeout = std::chrono::milliseconds(200);
  o.stop_timeout = std::chrono::milliseconds(200);
  // The watcher stays out of these tests: no health round, no retry.
  o.health_interval = std::chrono::hours(1);
  o.restart_backoff_initial = std::chrono::hours(1);
  o.restart_backoff_max = std::chrono::hours(1);
  o.log_tail_lines = 2;
  return o;
}

GpuSpec Gpu(uint64_t mib = 10240, unsigned pct = 25) { return GpuSpec{3, kUuid, mib, pct}; }

std::string PipeDir() { return std::string("/run/mps/") + kUuid + "/pipe"; }
std::string LogDir() { return std::string("/var/log/mps/") + kUuid + "/log"; }

// Matches a client run of the control program sending `command`.
auto ClientCommand(const std::string& command) {
  return AllOf(Field(&Command::argv, std::vector<std::string>{kBin}),
               Field(&Command::stdin_text, command + "\n"));
}
absl::StatusOr<CommandResult> Answer(const std::string& output, int code = 0) {
  return CommandResult{code, output};
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() { fs_.AddFile(kBin, "#!binary"); }

  std::unique_ptr<Supervisor> Make(SupervisorOptions o = TestOptions(),
                                   nvml::NvmlApi* nvml = nullptr) {
    return std::make_unique<Supervisor>(
        std::move(o),
        [this](const GpuHealth& h) {
          std::lock_guard lock(mu_);
          reports_.push_back(h);
        },
        os_, fs_, nvml);
  }

  // The directory preparation every start does.
  void ExpectDirectories() {
    EXPECT_CALL(os_, MakeDirectories(PipeDir())).WillOnce(Return(absl::OkStatus()));
    EXPECT_CALL(os_, CheckWritable(PipeDir())).WillOnce(Return(absl::OkStatus()));
    EXPECT_CALL(os_, MakeDirectories(LogDir())).WillOnce(Return(absl::OkStatus()));
    EXPECT_CALL(os_, CheckWritable(LogDir())).WillOnce(Return(absl::OkStatus()));
  }
  // `-d`, which (like the real program) leaves a socket and a pid file.
  void ExpectDaemonStart() {
    std::map<std::string, std::string> env = {{"CUDA_VISIBLE_DEVICES", kUuid},
                                              {"CUDA_MPS_PIPE_DIRECTORY", PipeDir()},
                                              {"CUDA_MPS_LOG_DIRECTORY", LogDir()}};
    EXPECT_CALL(os_, Run(AllOf(Field(&Command::argv, std::vector<std::string>{kBin, "-d"}),
                               Field(&Command::env, env))))
        .WillOnce(Invoke([this](const Command&) {
          fs_.AddFile(PipeDir() + "/nvidia-cuda-mps-control.pid", std::to_string(kPid) + "\n");
          fs_.AddFile(PipeDir() + "/control", "");
          return Answer("");
        }));
  }
  void ExpectQuit() {
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    EXPECT_CALL(os_, Run(ClientCommand("quit"))).WillOnce(Invoke([this](const Command&) {
      (void)fs_.Remove(PipeDir() + "/control");  // as the daemon does on its way out
      return Answer("");
    }));
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(false));
  }

  std::vector<GpuHealth> Reports() {
    std::lock_guard lock(mu_);
    return reports_;
  }

  StrictMock<MockMpsOs> os_;
  FakeFileSystem fs_;
  std::mutex mu_;
  std::vector<GpuHealth> reports_;
};

TEST_F(SupervisorTest, StartsDaemonSendsLimitsAndVerifiesThemBeforeReady) {
  auto s = Make();
  {
    InSequence seq;
    ExpectDirectories();
    ExpectDaemonStart();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    // The daemon sees only this GPU, as its device 0.
    EXPECT_CALL(os_, Run(ClientCommand("set_default_device_pinned_mem_limit 0 10240M")))
        .WillOnce(Return(Answer("")));
    EXPECT_CALL(os_, Run(ClientCommand("set_default_active_thread_percentage 25")))
        .WillOnce(Return(Answer("25.0\n")));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_active_thread_percentage")))
        .WillOnce(Return(Answer("25.0\n")));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_device_pinned_mem_limit 0")))
        .WillOnce(Return(Answer("10240M\n")));
    ExpectQuit();
  }
  ASSERT_TRUE(s->Apply({Gpu()}).ok());
  auto health = s->Health();
  ASSERT_EQ(health.size(), 1u);
  EXPECT_TRUE(health[0].healthy);
  ASSERT_EQ(Reports().size(), 1u);
  EXPECT_TRUE(Reports()[0].healthy);
  EXPECT_EQ(Reports()[0].gpu, Gpu());
  s->Stop();
  EXPECT_TRUE(s->Health().empty());
}

TEST_F(SupervisorTest, WithoutLimitsOnlyChecksThatTheDaemonAnswers) {
  auto s = Make();
  {
    InSequence seq;
    ExpectDirectories();
    ExpectDaemonStart();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_active_thread_percentage")))
        .WillOnce(Return(Answer("100.0\n")));
    ExpectQuit();
  }
  EXPECT_TRUE(s->Apply({Gpu(0, 0)}).ok());
}

TEST_F(SupervisorTest, LimitNotTakenIsAnErrorAndTheDaemonIsQuit) {
  auto s = Make();
  {
    InSequence seq;
    ExpectDirectories();
    ExpectDaemonStart();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    EXPECT_CALL(os_, Run(ClientCommand("set_default_device_pinned_mem_limit 0 10240M")))
        .WillOnce(Return(Answer("")));
    EXPECT_CALL(os_, Run(ClientCommand("set_default_active_thread_percentage 25")))
        .WillOnce(Return(Answer("Invalid percentage\n")));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_active_thread_percentage")))
        .WillOnce(Return(Answer("100.0\n")));
    ExpectQuit();
  }
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("did not take active thread percentage 25"));
  EXPECT_THAT(st.message(), HasSubstr("Invalid percentage"));
  EXPECT_THAT(st.message(), HasSubstr("GPU 3 (" + std::string(kUuid) + ")"));
  ASSERT_EQ(Reports().size(), 1u);
  EXPECT_FALSE(Reports()[0].healthy);
  EXPECT_EQ(Reports()[0].status.code(), absl::StatusCode::kFailedPrecondition);
  s->Stop();  // nothing left to quit
}

TEST_F(SupervisorTest, MemoryLimitReadBackMismatchIsAnError) {
  auto s = Make();
  {
    InSequence seq;
    ExpectDirectories();
    ExpectDaemonStart();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    EXPECT_CALL(os_, Run(ClientCommand("set_default_device_pinned_mem_limit 0 10240M")))
        .WillOnce(Return(Answer("")));
    EXPECT_CALL(os_, Run(ClientCommand("set_default_active_thread_percentage 25")))
        .WillOnce(Return(Answer("25.0")));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_active_thread_percentage")))
        .WillOnce(Return(Answer("25.0")));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_device_pinned_mem_limit 0")))
        .WillOnce(Return(Answer("5G")));
    ExpectQuit();
  }
  absl::Status st = s->Apply({Gpu()});
  EXPECT_THAT(st.message(), HasSubstr("did not take pinned memory limit 10240M"));
  EXPECT_THAT(st.message(), HasSubstr("'5G'"));
}

TEST_F(SupervisorTest, MissingBinaryNamesThePathAndRunsNothing) {
  SupervisorOptions o = TestOptions();
  o.control_binary = "/nowhere/nvidia-cuda-mps-control";
  auto s = Make(o);
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("/nowhere/nvidia-cuda-mps-control not found"));
  EXPECT_THAT(st.message(), HasSubstr("MPS is not ready on 1 of 1 GPU(s)"));
  ASSERT_EQ(Reports().size(), 1u);
  EXPECT_FALSE(Reports()[0].healthy);
}

TEST_F(SupervisorTest, PipeDirectoryPermissionDeniedSaysWhatToMount) {
  auto s = Make();
  EXPECT_CALL(os_, MakeDirectories(PipeDir())).WillOnce(Return(absl::OkStatus()));
  EXPECT_CALL(os_, CheckWritable(PipeDir()))
      .WillOnce(
          Return(absl::PermissionDeniedError("write into " + PipeDir() + ": Permission denied")));
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("write into " + PipeDir() + ": Permission denied"));
  EXPECT_THAT(st.message(), HasSubstr("mount the host's /run/mps read-write"));
}

TEST_F(SupervisorTest, DaemonThatFailsToStartIsReportedWithItsOutputAndLogTail) {
  fs_.AddFile(LogDir() + "/control.log", "line one\nline two\nline three\n");
  auto s = Make();
  ExpectDirectories();
  EXPECT_CALL(os_, Run(Field(&Command::argv, std::vector<std::string>{kBin, "-d"})))
      .WillOnce(Return(Answer("An instance of this daemon is already running\n", 1)));
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("-d exited with 1): An instance of this daemon is already"));
  // The last two lines (log_tail_lines), not the first.
  EXPECT_THAT(st.message(), HasSubstr("control.log: line two | line three"));
  EXPECT_THAT(st.message(), ::testing::Not(HasSubstr("line one")));
}

TEST_F(SupervisorTest, DaemonThatNeverCreatesItsSocketTimesOut) {
  auto s = Make();
  ExpectDirectories();
  EXPECT_CALL(os_, Run(Field(&Command::argv, std::vector<std::string>{kBin, "-d"})))
      .WillOnce(Return(Answer("")));
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st.message(), HasSubstr("did not create its socket " + PipeDir() + "/control"));
  EXPECT_THAT(st.message(), HasSubstr("is empty or missing"));
}

TEST_F(SupervisorTest, QuitsADaemonLeftByAnEarlierRunBeforeStarting) {
  fs_.AddFile(PipeDir() + "/nvidia-cuda-mps-control.pid", "4242");
  auto s = Make();
  {
    InSequence seq;
    ExpectDirectories();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));  // the old one lives
    ExpectQuit();
    ExpectDaemonStart();
    EXPECT_CALL(os_, ProcessAlive(kPid)).WillOnce(Return(true));
    EXPECT_CALL(os_, Run(ClientCommand("get_default_active_thread_percentage")))
        .WillOnce(Return(Answer("100.0")));
    ExpectQuit();
  }
  EXPECT_TRUE(s->Apply({Gpu(0, 0)}).ok());
}

TEST_F(SupervisorTest, RejectsBadGpuLists) {
  auto s = Make();
  struct Case {
    const char* name;
    std::vector<GpuSpec> gpus;
    const char* message;
  };
  const Case cases[] = {
      {"empty uuid", {GpuSpec{0, "", 0, 0}}, "has no UUID"},
      {"percentage", {GpuSpec{0, kUuid, 0, 101}}, "must be 1..100"},
      {"duplicate", {Gpu(), Gpu()}, "listed twice"},
  };
  for (const auto& c : cases) {
    absl::Status st = s->Apply(c.gpus);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(st.message(), HasSubstr(c.message)) << c.name;
  }
}

TEST_F(SupervisorTest, ApplyAfterStopFails) {
  auto s = Make();
  s->Stop();
  s->Stop();  // idempotent
  EXPECT_EQ(s->Apply({Gpu()}).code(), absl::StatusCode::kFailedPrecondition);
}

// --- Compute mode -------------------------------------------------------------

nvmlDevice_t FakeHandle() { return reinterpret_cast<nvmlDevice_t>(0x1000); }

TEST(CheckComputeModeTest, Modes) {
  struct Case {
    nvmlComputeMode_t mode;
    nvmlReturn_t ret;
    absl::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {NVML_COMPUTEMODE_DEFAULT, NVML_SUCCESS, absl::StatusCode::kOk, ""},
      {NVML_COMPUTEMODE_EXCLUSIVE_PROCESS, NVML_SUCCESS, absl::StatusCode::kOk, ""},
      {NVML_COMPUTEMODE_PROHIBITED, NVML_SUCCESS, absl::StatusCode::kFailedPrecondition,
       "is in compute mode PROHIBITED"},
      {NVML_COMPUTEMODE_EXCLUSIVE_THREAD, NVML_SUCCESS, absl::StatusCode::kFailedPrecondition,
       "EXCLUSIVE_THREAD"},
      {NVML_COMPUTEMODE_DEFAULT, NVML_ERROR_FUNCTION_NOT_FOUND, absl::StatusCode::kOk, ""},
      {NVML_COMPUTEMODE_DEFAULT, NVML_ERROR_NOT_SUPPORTED, absl::StatusCode::kOk, ""},
      {NVML_COMPUTEMODE_DEFAULT, NVML_ERROR_GPU_IS_LOST, absl::StatusCode::kUnavailable,
       "nvmlDeviceGetComputeMode(GPU 3"},
  };
  for (const auto& c : cases) {
    StrictMock<nvml::MockNvml> nvml;
    EXPECT_CALL(nvml, DeviceGetHandleByUUID(::testing::StrEq(kUuid), _))
        .WillOnce(DoAll(SetArgPointee<1>(FakeHandle()), Return(NVML_SUCCESS)));
    EXPECT_CALL(nvml, DeviceGetComputeMode(FakeHandle(), _))
        .WillOnce(DoAll(SetArgPointee<1>(c.mode), Return(c.ret)));
    EXPECT_CALL(nvml, ErrorString(_)).WillRepeatedly(Return("error"));
    absl::Status st = CheckComputeMode(nvml, Gpu());
    EXPECT_EQ(st.code(), c.code) << c.mode << " " << c.ret << ": " << st;
    EXPECT_THAT(st.message(), HasSubstr(c.message));
    if (c.code == absl::StatusCode::kFailedPrecondition) {
      EXPECT_THAT(st.message(),
                  HasSubstr(std::string("nvidia-smi -i ") + kUuid + " -c EXCLUSIVE_PROCESS"));
    }
  }
}

TEST_F(SupervisorTest, ProhibitedComputeModeStopsTheStartBeforeAnyProcess) {
  StrictMock<nvml::MockNvml> nvml;
  EXPECT_CALL(nvml, DeviceGetHandleByUUID(_, _))
      .WillOnce(DoAll(SetArgPointee<1>(FakeHandle()), Return(NVML_SUCCESS)));
  EXPECT_CALL(nvml, DeviceGetComputeMode(_, _))
      .WillOnce(DoAll(SetArgPointee<1>(NVML_COMPUTEMODE_PROHIBITED), Return(NVML_SUCCESS)));
  auto s = Make(TestOptions(), &nvml);
  absl::Status st = s->Apply({Gpu()});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("PROHIBITED"));
}

// --- Finding the binary ---------------------------------------------------------

TEST(FindControlBinaryTest, SearchOrderAndErrors) {
  struct Case {
    const char* name;
    std::vector<std::string> files;
    std::string driver_root;
    std::string configured;
    std::string want;  // empty: NotFound
    std::string message;
  };
  const Case cases[] = {
      {"driver root usr/bin",
       {"/run/nvidia/driver/usr/bin/nvidia-cuda-mps-control", "/usr/bin/nvidia-cuda-mps-control"},
       "/run/nvidia/driver",
       "",
       "/run/nvidia/driver/usr/bin/nvidia-cuda-mps-control",
       ""},
      {"host usr/bin as fallback",
       {"/usr/bin/nvidia-cuda-mps-control"},
       "/run/nvidia/driver",
       "",
       "/usr/bin/nvidia-cuda-mps-control",
       ""},
      {"configured", {"/opt/mps/ctl"}, "/", "/opt/mps/ctl", "/opt/mps/ctl", ""},
      {"configured missing",
       {"/usr/bin/nvidia-cuda-mps-control"},
       "/",
       "/opt/mps/ctl",
       "",
       "not found at /opt/mps/ctl (the configured path)"},
      {"nowhere",
       {},
       "/run/nvidia/driver",
       "",
       "",
       "looked in /run/nvidia/driver/usr/bin/nvidia-cuda-mps-control, "
       "/run/nvidia/driver/bin/nvidia-cuda-mps-control, /usr/bin/nvidia-cuda-mps-control, "
       "/usr/local/bin/nvidia-cuda-mps-control"},
  };
  for (const auto& c : cases) {
    FakeFileSystem fs;
    for (const auto& f : c.files) fs.AddFile(f, "");
    auto got = FindControlBinary(fs, c.driver_root, c.configured);
    if (c.want.empty()) {
      ASSERT_FALSE(got.ok()) << c.name;
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << c.name;
      EXPECT_THAT(got.status().message(), HasSubstr(c.message)) << c.name;
    } else {
      ASSERT_TRUE(got.ok()) << c.name << ": " << got.status();
      EXPECT_EQ(*got, c.want) << c.name;
    }
  }
}

TEST(DirectoriesTest, PerGpuUnderTheRoots) {
  SupervisorOptions o;
  EXPECT_EQ(PipeDirectory(o, "GPU-a"), "/run/nvidia/mps/GPU-a/pipe");
  EXPECT_EQ(LogDirectory(o, "GPU-a"), "/run/nvidia/mps/GPU-a/log");
}

}  // namespace
}  // namespace gdp::mps
