// Unit tests of every doctor check: OK, WARN and FAIL for each, against an
// in-memory filesystem, a StrictMock host, the NVML mock and a fake lister.
#include "src/doctor/doctor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "src/driver/ldcache.h"
#include "tests/mocks/fake_filesystem.h"
#include "tests/mocks/fake_gpus.h"
#include "tests/mocks/mock_api_client.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::doctor {
namespace {

using ::testing::_;
using ::testing::AnyNumber;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;

constexpr char kRoot[] = "/run/nvidia/driver";
constexpr char kLib[] = "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1";

class MockHostAccess : public HostAccess {
 public:
  MOCK_METHOD(absl::Status, Access, (const std::string& path, int mode), (const, override));
  MOCK_METHOD(absl::Status, ConnectUnix, (const std::string& path), (const, override));
};

class MockLister : public podresources::PodResourcesLister {
 public:
  MOCK_METHOD(absl::StatusOr<std::vector<podresources::Assignment>>, List, (), (override));
};

Options TestOptions() {
  Options o;
  o.driver_root = kRoot;
  o.plugin_directory = "/var/lib/kubelet/device-plugins";
  o.pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";
  o.containerd_config = "/etc/containerd/config.toml";
  o.cdi_directory = "/var/run/cdi";
  return o;
}

// An opener that hands out a StrictMock programmed as `machine`; counts opens.
NvmlOpener MachineOpener(nvml::fakes::FakeMachine machine, int* opens = nullptr) {
  return
      [machine, opens](const std::string& path) -> absl::StatusOr<std::unique_ptr<nvml::NvmlApi>> {
        EXPECT_EQ(path, kLib);
        if (opens != nullptr) ++*opens;
        auto mock = std::make_unique<StrictMock<nvml::MockNvml>>();
        nvml::fakes::ProgramMachine(*mock, machine);
        return std::unique_ptr<nvml::NvmlApi>(std::move(mock));
      };
}

Severity SeverityOf(const std::vector<CheckResult>& rows, const std::string& name) {
  for (const CheckResult& r : rows) {
    if (r.name == name) return r.severity;
  }
  ADD_FAILURE() << "no row " << name;
  return Severity::kFail;
}

// --- NVML ---

TEST(CheckNvmlTest, FoundLoadedAndNewEnough) {
  FakeFileSystem fs;
  fs.AddFile(kLib, "");
  std::shared_ptr<const nvml::Inventory> inv;
  auto rows =
      CheckNvml(TestOptions(), fs, MachineOpener(nvml::fakes::HopperNvSwitchMachine(2)), &inv);
  ASSERT_EQ(rows.size(), 4u);
  for (const CheckResult& r : rows)
    EXPECT_EQ(r.severity, Severity::kOk) << r.name << ": " << r.detail;
  EXPECT_THAT(rows[0].detail, HasSubstr(kLib));
  EXPECT_THAT(rows[2].detail, HasSubstr("driver 550.54.15, CUDA 12.4"));
  EXPECT_THAT(rows[3].detail, HasSubstr("2 x NVIDIA H100 80GB HBM3"));
  ASSERT_NE(inv, nullptr);
  EXPECT_EQ(inv->gpus.size(), 2u);
}

TEST(CheckNvmlTest, NoLibraryFailsAndSkipsTheRest) {
  FakeFileSystem fs;
  std::shared_ptr<const nvml::Inventory> inv;
  int opens = 0;
  auto rows = CheckNvml(TestOptions(), fs, MachineOpener({}, &opens), &inv);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].severity, Severity::kFail);
  EXPECT_THAT(rows[0].detail, HasSubstr("libnvidia-ml.so.1"));
  EXPECT_THAT(rows[0].fix, HasSubstr("--nvml-library"));
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(rows[i].severity, Severity::kWarn);
  EXPECT_EQ(opens, 0);
  EXPECT_EQ(inv, nullptr);
}

TEST(CheckNvmlTest, UnloadableLibraryFails) {
  FakeFileSystem fs;
  fs.AddFile(kLib, "");
  std::shared_ptr<const nvml::Inventory> inv;
  auto rows = CheckNvml(
      TestOptions(), fs,
      [](const std::string&) -> absl::StatusOr<std::unique_ptr<nvml::NvmlApi>> {
        return absl::InternalError("dlopen: invalid ELF header");
      },
      &inv);
  EXPECT_EQ(SeverityOf(rows, "nvml library"), Severity::kOk);
  EXPECT_EQ(SeverityOf(rows, "nvml init"), Severity::kFail);
  EXPECT_THAT(rows[1].detail, HasSubstr("invalid ELF header"));
}

TEST(CheckNvmlTest, InitFailureFailsWithTheNvmlError) {
  FakeFileSystem fs;
  fs.AddFile(kLib, "");
  std::shared_ptr<const nvml::Inventory> inv;
  auto rows = CheckNvml(
      TestOptions(), fs,
      [](const std::string&) -> absl::StatusOr<std::unique_ptr<nvml::NvmlApi>> {
        auto mock = std::make_unique<StrictMock<nvml::MockNvml>>();
        EXPECT_CALL(*mock, Init()).WillOnce(Return(NVML_ERROR_DRIVER_NOT_LOADED));
        EXPECT_CALL(*mock, ErrorString(NVML_ERROR_DRIVER_NOT_LOADED))
            .Times(AnyNumber())
            .WillRepeatedly(Return("Driver Not Loaded"));
        return std::unique_ptr<nvml::NvmlApi>(std::move(mock));
      },
      &inv);
  EXPECT_EQ(SeverityOf(rows, "nvml init"), Severity::kFail);
  EXPECT_THAT(rows[1].detail, HasSubstr("NVML_ERROR_DRIVER_NOT_LOADED"));
  EXPECT_THAT(rows[1].fix, HasSubstr("kernel module"));
  EXPECT_EQ(inv, nullptr);
}

TEST(CheckNvmlTest, OldDriverFailsOrWarnsPerRequireMinimumVersions) {
  FakeFileSystem fs;
  fs.AddFile(kLib, "");
  auto machine = nvml::fakes::PcieTwoNumaMachine(2);
  machine.driver_version = "418.87.01";
  machine.cuda_driver_version = 10010;
  std::shared_ptr<const nvml::Inventory> inv;
  Options o = TestOptions();
  auto rows = CheckNvml(o, fs, MachineOpener(machine), &inv);
  EXPECT_EQ(SeverityOf(rows, "driver and cuda versions"), Severity::kFail);
  EXPECT_THAT(rows[2].detail, HasSubstr("418"));
  EXPECT_THAT(rows[2].fix, HasSubstr("450"));

  o.require_minimum_versions = false;
  rows = CheckNvml(o, fs, MachineOpener(machine), &inv);
  EXPECT_EQ(SeverityOf(rows, "driver and cuda versions"), Severity::kWarn);
  EXPECT_NE(inv, nullptr);
}

TEST(CheckNvmlTest, NoGpusWarns) {
  FakeFileSystem fs;
  fs.AddFile(kLib, "");
  std::shared_ptr<const nvml::Inventory> inv;
  auto rows = CheckNvml(TestOptions(), fs, MachineOpener(nvml::fakes::FakeMachine{}), &inv);
  EXPECT_EQ(SeverityOf(rows, "gpus"), Severity::kWarn);
  EXPECT_EQ(SeverityOf(rows, "nvml init"), Severity::kOk);
}

// --- device nodes ---

class DeviceNodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    inv_.gpus.resize(2);
    inv_.gpus[0].minor = 0;
    inv_.gpus[1].minor = 3;
    fs_.AddCharDevice(std::string(kRoot) + "/dev/nvidiactl", 195, 255);
    fs_.AddCharDevice(std::string(kRoot) + "/dev/nvidia-uvm", 510, 0);
    fs_.AddCharDevice(std::string(kRoot) + "/dev/nvidia0", 195, 0);
    fs_.AddCharDevice(std::string(kRoot) + "/dev/nvidia3", 195, 3);
  }
  FakeFileSystem fs_;
  StrictMock<MockHostAccess> host_;
  nvml::Inventory inv_;
};

TEST_F(DeviceNodesTest, AllPresentAndAccessible) {
  EXPECT_CALL(host_, Access(_, R_OK | W_OK)).Times(4).WillRepeatedly(Return(absl::OkStatus()));
  CheckResult r = CheckDeviceNodes(TestOptions(), fs_, host_, &inv_);
  EXPECT_EQ(r.severity, Severity::kOk) << r.detail;
  EXPECT_THAT(r.detail, HasSubstr("4 present"));
}

TEST_F(DeviceNodesTest, MissingGpuNodeFails) {
  inv_.gpus[1].minor = 5;
  EXPECT_CALL(host_, Access(_, _)).Times(3).WillRepeatedly(Return(absl::OkStatus()));
  CheckResult r = CheckDeviceNodes(TestOptions(), fs_, host_, &inv_);
  EXPECT_EQ(r.severity, Severity::kFail);
  EXPECT_THAT(r.detail, HasSubstr("/run/nvidia/driver/dev/nvidia5"));
  EXPECT_THAT(r.fix, HasSubstr("nvidia-modprobe"));
}

TEST_F(DeviceNodesTest, PermissionDeniedFails) {
  EXPECT_CALL(host_, Access(_, _)).WillRepeatedly(Return(absl::OkStatus()));
  EXPECT_CALL(host_, Access(std::string(kRoot) + "/dev/nvidia3", _))
      .WillOnce(Return(absl::PermissionDeniedError("access /dev/nvidia3: Permission denied")));
  CheckResult r = CheckDeviceNodes(TestOptions(), fs_, host_, &inv_);
  EXPECT_EQ(r.severity, Severity::kFail);
  EXPECT_THAT(r.detail, HasSubstr("Permission denied"));
}

TEST_F(DeviceNodesTest, RegularFilesWarn) {
  fs_.AddFile(std::string(kRoot) + "/dev/nvidia0", "");
  EXPECT_CALL(host_, Access(_, _)).Times(4).WillRepeatedly(Return(absl::OkStatus()));
  CheckResult r = CheckDeviceNodes(TestOptions(), fs_, host_, &inv_);
  EXPECT_EQ(r.severity, Severity::kWarn);
  EXPECT_THAT(r.detail, HasSubstr("not character devices: /run/nvidia/driver/dev/nvidia0"));
}

TEST_F(DeviceNodesTest, WithoutInventoryChecksTheNodesFound) {
  fs_.AddFile(std::string(kRoot) + "/dev/nvidia-modeset", "");  // not a GPU node: not checked
  EXPECT_CALL(host_, Access(_, _)).Times(4).WillRepeatedly(Return(absl::OkStatus()));
  CheckResult r = CheckDeviceNodes(TestOptions(), fs_, host_, nullptr);
  EXPECT_EQ(r.severity, Severity::kOk) << r.detail;
}

// --- kubelet ---

TEST(CheckKubeletTest, Cases) {
  const std::string dir = "/var/lib/kubelet/device-plugins";
  const std::string sock = dir + "/kubelet.sock";
  struct Case {
    std::string name;
    bool dir_exists, dir_writable, sock_exists, sock_connects;
    Severity want_dir, want_sock;
  };
  const std::vector<Case> cases = {
      {"healthy", true, true, true, true, Severity::kOk, Severity::kOk},
      {"no directory", false, true, false, false, Severity::kFail, Severity::kFail},
      {"read-only directory", true, false, true, true, Severity::kFail, Severity::kOk},
      {"no kubelet", true, true, false, false, Severity::kOk, Severity::kFail},
      {"stale socket", true, true, true, false, Severity::kOk, Severity::kFail},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeFileSystem fs;
    if (c.dir_exists) fs.AddDirectory(dir);
    if (c.sock_exists) fs.AddFile(sock, "");
    StrictMock<MockHostAccess> host;
    if (c.dir_exists) {
      EXPECT_CALL(host, Access(dir, W_OK | X_OK))
          .WillOnce(Return(c.dir_writable ? absl::OkStatus()
                                          : absl::PermissionDeniedError("read-only file system")));
    }
    if (c.sock_exists) {
      EXPECT_CALL(host, ConnectUnix(sock))
          .WillOnce(Return(c.sock_connects ? absl::OkStatus()
                                           : absl::UnavailableError("connection refused")));
    }
    auto rows = CheckKubelet(TestOptions(), fs, host);
    EXPECT_EQ(SeverityOf(rows, "plugin directory"), c.want_dir);
    EXPECT_EQ(SeverityOf(rows, "kubelet socket"), c.want_sock);
    for (const CheckResult& r : rows) {
      if (r.severity != Severity::kOk) {
        EXPECT_FALSE(r.fix.empty()) << r.name;
      }
    }
  }
}

// --- pod resources ---

TEST(CheckPodResourcesTest, Cases) {
  const Options o = TestOptions();
  {
    FakeFileSystem fs;
    StrictMock<MockLister> lister;  // not called: no socket
    CheckResult r = CheckPodResources(o, fs, lister);
    EXPECT_EQ(r.severity, Severity::kWarn);
    EXPECT_THAT(r.detail, HasSubstr("does not exist"));
  }
  FakeFileSystem fs;
  fs.AddFile(o.pod_resources_socket, "");
  {
    StrictMock<MockLister> lister;
    EXPECT_CALL(lister, List()).WillOnce(Return(absl::UnavailableError("connection refused")));
    CheckResult r = CheckPodResources(o, fs, lister);
    EXPECT_EQ(r.severity, Severity::kWarn);
    EXPECT_THAT(r.detail, HasSubstr("connection refused"));
    EXPECT_THAT(r.fix, HasSubstr("--pod-resources-socket"));
  }
  {
    StrictMock<MockLister> lister;
    EXPECT_CALL(lister, List())
        .WillOnce(Return(std::vector<podresources::Assignment>{
            {"ns", "p", "c", "nvidia.com/gpu", {"GPU-1", "GPU-2"}}}));
    CheckResult r = CheckPodResources(o, fs, lister);
    EXPECT_EQ(r.severity, Severity::kOk);
    EXPECT_THAT(r.detail, HasSubstr("1 container resource(s), 2 device(s)"));
  }
}

// --- containerd ---

constexpr char kContainerd2[] = R"(version = 3
root = "/x/root"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  cdi_spec_dirs = ["/x/cdi", "/etc/cdi", "/var/run/cdi"]
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
)";

constexpr char kContainerd17Nvidia[] = R"(version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    enable_cdi = true
    cdi_spec_dirs = [
      "/etc/cdi",
      "/var/run/cdi",
    ]
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "nvidia"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
          BinaryName = "/usr/bin/nvidia-container-runtime"
)";

constexpr char kContainerd16Plain[] = R"(version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"  # the default
)";

TEST(ParseContainerdConfigTest, ReadsTheKeysThatMatter) {
  ContainerdFacts v3 = ParseContainerdConfig(kContainerd2);
  EXPECT_EQ(v3.version, 3);
  EXPECT_FALSE(v3.enable_cdi.has_value());
  EXPECT_TRUE(v3.CdiEnabled());
  EXPECT_THAT(v3.cdi_spec_dirs, ::testing::ElementsAre("/x/cdi", "/etc/cdi", "/var/run/cdi"));
  EXPECT_FALSE(v3.nvidia_runtime);
  EXPECT_EQ(v3.default_runtime, "runc");

  ContainerdFacts nv = ParseContainerdConfig(kContainerd17Nvidia);
  EXPECT_EQ(nv.version, 2);
  EXPECT_EQ(nv.enable_cdi, true);
  EXPECT_THAT(nv.cdi_spec_dirs, ::testing::ElementsAre("/etc/cdi", "/var/run/cdi"));
  EXPECT_TRUE(nv.nvidia_runtime);
  EXPECT_EQ(nv.default_runtime, "nvidia");

  ContainerdFacts plain = ParseContainerdConfig(kContainerd16Plain);
  EXPECT_FALSE(plain.CdiEnabled());
  EXPECT_EQ(plain.default_runtime, "runc");
  EXPECT_FALSE(ParseContainerdConfig("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n"
                                     "  enable_cdi = false\n")
                   .CdiEnabled());
}

TEST(CheckContainerRuntimeTest, Cases) {
  using DLS = config::DeviceListStrategy;
  struct Case {
    std::string name;
    std::optional<std::string> file;
    std::vector<DLS> strategy;
    std::string cdi_dir;
    Severity want_cdi, want_runtime;
  };
  const std::vector<Case> cases = {
      {"containerd 2, cdi-cri",
       kContainerd2,
       {DLS::kCdiCri},
       "/var/run/cdi",
       Severity::kOk,
       Severity::kOk},
      {"containerd 2, envvar without nvidia runtime",
       kContainerd2,
       {DLS::kEnvvar},
       "/var/run/cdi",
       Severity::kOk,
       Severity::kWarn},
      {"cdi dir not among spec dirs, cdi-cri",
       kContainerd2,
       {DLS::kCdiCri},
       "/opt/cdi",
       Severity::kFail,
       Severity::kOk},
      {"cdi dir not among spec dirs, envvar",
       kContainerd2,
       {DLS::kEnvvar},
       "/opt/cdi",
       Severity::kWarn,
       Severity::kWarn},
      {"1.7 with nvidia runtime",
       kContainerd17Nvidia,
       {DLS::kEnvvar},
       "/var/run/cdi",
       Severity::kOk,
       Severity::kOk},
      {"1.6 no cdi, cdi-annotations",
       kContainerd16Plain,
       {DLS::kCdiAnnotations},
       "/var/run/cdi",
       Severity::kFail,
       Severity::kOk},
      {"1.6 no cdi, envvar",
       kContainerd16Plain,
       {DLS::kEnvvar},
       "/var/run/cdi",
       Severity::kWarn,
       Severity::kWarn},
      {"no config file",
       std::nullopt,
       {DLS::kEnvvar},
       "/var/run/cdi",
       Severity::kWarn,
       Severity::kWarn},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Options o = TestOptions();
    o.device_list_strategy = c.strategy;
    o.cdi_directory = c.cdi_dir;
    FakeFileSystem fs;
    if (c.file) fs.AddFile(o.containerd_config, *c.file);
    auto rows = CheckContainerRuntime(o, fs);
    EXPECT_EQ(SeverityOf(rows, "containerd cdi"), c.want_cdi) << rows[0].detail;
    EXPECT_EQ(SeverityOf(rows, "nvidia runtime"), c.want_runtime) << rows[1].detail;
  }
}

// Finds the row named `name`; nullptr when there is none.
const CheckResult* Row(const std::vector<CheckResult>& rows, const std::string& name) {
  for (const CheckResult& r : rows) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

// On a node without containerd, the doctor reads CRI-O's crio.conf and its drop-ins, later
// drop-ins overriding earlier ones, as CRI-O does.
TEST(CheckContainerRuntimeTest, ReadsCrioConfigAndItsDropIns) {
  Options o = TestOptions();
  o.containerd_config.clear();
  o.device_list_strategy = {config::DeviceListStrategy::kCdiCri};
  o.cdi_directory = "/var/run/cdi";
  // Drop-ins alone, as CRI-O's packages ship it.
  FakeFileSystem fs;
  fs.AddFile("/etc/crio/crio.conf.d/20-nvidia.conf",
             "[crio.runtime]\ncdi_spec_dirs = [\n  \"/etc/cdi\",\n  \"/var/run/cdi\",\n]\n"
             "[crio.runtime.runtimes.nvidia]\n"
             "runtime_path = \"/usr/bin/nvidia-container-runtime\"\n");
  fs.AddFile("/etc/crio/crio.conf.d/10-crio.conf",
             "[crio.runtime]\ndefault_runtime = \"crun\"\ncdi_spec_dirs = [\"/opt/cdi\"]\n");
  fs.AddFile("/etc/crio/crio.conf.d/README", "[crio.runtime]\ncdi_spec_dirs = [\"/nowhere\"]\n");
  auto rows = CheckContainerRuntime(o, fs);
  ASSERT_NE(Row(rows, "crio cdi"), nullptr);
  EXPECT_EQ(Row(rows, "containerd cdi"), nullptr);
  EXPECT_EQ(SeverityOf(rows, "crio cdi"), Severity::kOk) << rows[0].detail;
  EXPECT_THAT(rows[0].detail, HasSubstr("CRI-O's /etc/crio/crio.conf.d/10-crio.conf, "
                                        "/etc/crio/crio.conf.d/20-nvidia.conf"));
  EXPECT_THAT(rows[0].detail, HasSubstr("spec dirs /etc/cdi, /var/run/cdi"));
  EXPECT_EQ(SeverityOf(rows, "nvidia runtime"), Severity::kOk);
  EXPECT_THAT(Row(rows, "nvidia runtime")->detail, HasSubstr("default runtime crun"));

  // The CDI directory among none of CRI-O's spec dirs: a CDI strategy fails, naming the table.
  FakeFileSystem narrow;
  narrow.AddFile(kCrioConfig, "[crio.runtime]\ncdi_spec_dirs = [\"/opt/cdi\"]\n");
  rows = CheckContainerRuntime(o, narrow);
  EXPECT_EQ(SeverityOf(rows, "crio cdi"), Severity::kFail);
  EXPECT_THAT(rows[0].fix, HasSubstr("[crio.runtime]"));

  // Named with --containerd-config (the chart's containerdConfig): read as CRI-O's by its
  // tables, with the drop-ins beside it.
  o.containerd_config = "/host/containerd/crio.conf";
  FakeFileSystem named;
  named.AddFile("/host/containerd/crio.conf", "[crio]\n[crio.runtime]\n");
  named.AddFile("/host/containerd/crio.conf.d/01-cdi.conf",
                "[crio.runtime]\ncdi_spec_dirs = [\"/opt/cdi\"]\n");
  rows = CheckContainerRuntime(o, named);
  EXPECT_EQ(SeverityOf(rows, "crio cdi"), Severity::kFail);
  EXPECT_THAT(rows[0].detail, HasSubstr("/host/containerd/crio.conf, "
                                        "/host/containerd/crio.conf.d/01-cdi.conf"));
}

// Without --containerd-config the doctor looks where each distribution keeps the config.
TEST(CheckContainerRuntimeTest, FindsEachDistributionsConfigWhenNoneIsNamed) {
  for (const auto& known : KnownContainerdConfigs()) {
    SCOPED_TRACE(known.distribution);
    Options o = TestOptions();
    o.containerd_config.clear();
    FakeFileSystem fs;
    fs.AddFile(known.path, "version = 3\n");
    auto rows = CheckContainerRuntime(o, fs);
    ASSERT_FALSE(rows.empty());
    EXPECT_EQ(SeverityOf(rows, "containerd cdi"), Severity::kOk) << rows[0].detail;
    EXPECT_THAT(rows[0].detail, HasSubstr(absl::StrCat(known.distribution, "'s ", known.path)));
  }
  Options o = TestOptions();
  o.containerd_config.clear();
  FakeFileSystem none;
  auto rows = CheckContainerRuntime(o, none);
  EXPECT_EQ(SeverityOf(rows, "containerd cdi"), Severity::kWarn);
  for (const auto& known : KnownContainerdConfigs()) {
    EXPECT_THAT(rows[0].detail, HasSubstr(known.path));
  }
  EXPECT_THAT(rows[0].detail, HasSubstr(kCrioConfig));
}

// --- CDI directory ---

TEST(CheckCdiDirectoryTest, Cases) {
  Options o = TestOptions();
  {
    FakeFileSystem fs;
    StrictMock<MockHostAccess> host;
    EXPECT_EQ(CheckCdiDirectory(o, fs, host).severity, Severity::kWarn);
    o.device_list_strategy = {config::DeviceListStrategy::kCdiCri};
    CheckResult r = CheckCdiDirectory(o, fs, host);
    EXPECT_EQ(r.severity, Severity::kFail);
    EXPECT_THAT(r.fix, HasSubstr("--cdi-root"));
  }
  FakeFileSystem fs;
  fs.AddFile("/var/run/cdi/nvidia.com-gpu.json", "{}");
  fs.AddFile("/var/run/cdi/other.json", "{}");
  {
    StrictMock<MockHostAccess> host;
    EXPECT_CALL(host, Access("/var/run/cdi", W_OK | X_OK))
        .WillOnce(Return(absl::PermissionDeniedError("read-only file system")));
    EXPECT_EQ(CheckCdiDirectory(o, fs, host).severity, Severity::kFail);
  }
  {
    StrictMock<MockHostAccess> host;
    EXPECT_CALL(host, Access("/var/run/cdi", W_OK | X_OK)).WillOnce(Return(absl::OkStatus()));
    CheckResult r = CheckCdiDirectory(o, fs, host);
    EXPECT_EQ(r.severity, Severity::kOk);
    EXPECT_THAT(r.detail, HasSubstr("NVIDIA specs: nvidia.com-gpu.json"));
  }
}

// --- the driver's user space ---

TEST(CheckDriverUserSpaceTest, Cases) {
  Options o = TestOptions();
  nvml::Inventory inv;
  inv.driver_version = "550.54.15";
  FakeFileSystem fs;
  // envvar: the NVIDIA runtime's job, not checked.
  EXPECT_EQ(CheckDriverUserSpace(o, fs, &inv).severity, Severity::kOk);
  o.device_list_strategy = {config::DeviceListStrategy::kCdiCri};
  EXPECT_EQ(CheckDriverUserSpace(o, fs, nullptr).severity, Severity::kWarn);
  // No ld cache under the driver root: the spec would carry no library.
  CheckResult r = CheckDriverUserSpace(o, fs, &inv);
  EXPECT_EQ(r.severity, Severity::kWarn);
  EXPECT_THAT(r.detail, HasSubstr("no ld cache at " + o.driver_root));
  EXPECT_THAT(r.fix, HasSubstr("ldconfig"));
  // A root whose ld cache names the driver's library.
  const std::string lib = JoinRoot(o.driver_root, "/usr/lib/x86_64-linux-gnu");
  fs.AddFile(lib + "/libcuda.so.550.54.15", "elf");
  fs.AddSymlink(lib + "/libcuda.so.1", "libcuda.so.550.54.15");
  fs.AddFile(JoinRoot(o.driver_root, "/etc/ld.so.cache"),
             driver::WriteLdCache({{"libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                                    driver::NativeLdCacheFlags()}}));
  fs.AddFile(JoinRoot(o.driver_root, "/usr/bin/nvidia-smi"), "elf");
  r = CheckDriverUserSpace(o, fs, &inv);
  EXPECT_EQ(r.severity, Severity::kOk) << r.detail;
  EXPECT_THAT(r.detail, HasSubstr("driver 550.54.15: 2 library mounts, 0 firmware files, 1 "
                                  "binaries and sockets"));
}

// --- MIG ---

TEST(CheckMigTest, Cases) {
  using MS = config::MigStrategy;
  nvml::Inventory plain;
  plain.gpus.resize(2);
  nvml::Inventory mig = plain;
  mig.gpus[1].mig_enabled = true;
  mig.gpus[1].index = 1;
  mig.gpus[1].mig_devices.resize(3);
  nvml::Inventory mig_empty = plain;
  mig_empty.gpus[0].mig_enabled = true;
  struct Case {
    std::string name;
    const nvml::Inventory* inv;
    MS strategy;
    bool caps;
    Severity want;
  };
  const std::vector<Case> cases = {
      {"no MIG, none", &plain, MS::kNone, false, Severity::kOk},
      {"no MIG, mixed", &plain, MS::kMixed, false, Severity::kWarn},
      {"MIG, none", &mig, MS::kNone, true, Severity::kWarn},
      {"MIG, mixed, caps", &mig, MS::kMixed, true, Severity::kOk},
      {"MIG, single, no caps", &mig, MS::kSingle, false, Severity::kFail},
      {"MIG without instances", &mig_empty, MS::kMixed, true, Severity::kWarn},
      {"no NVML", nullptr, MS::kMixed, true, Severity::kWarn},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Options o = TestOptions();
    o.mig_strategy = c.strategy;
    FakeFileSystem fs;
    if (c.caps) {
      fs.AddCharDevice(std::string(kRoot) + "/dev/nvidia-caps/nvidia-cap1", 511, 1);
      fs.AddFile(std::string(kRoot) + "/proc/driver/nvidia-caps/mig-minors", "config 1\n");
    }
    CheckResult r = CheckMig(o, fs, c.inv);
    EXPECT_EQ(r.severity, c.want) << r.detail;
    if (r.severity != Severity::kOk) {
      EXPECT_FALSE(r.fix.empty());
    }
  }
}

// --- MPS ---

TEST(CheckMpsTest, Cases) {
  const std::string bin = std::string(kRoot) + "/usr/bin/nvidia-cuda-mps-control";
  Options o = TestOptions();
  {
    FakeFileSystem fs;
    StrictMock<MockHostAccess> host;
    CheckResult r = CheckMps(o, fs, host);
    EXPECT_EQ(r.severity, Severity::kWarn);
    EXPECT_THAT(r.detail, HasSubstr(bin));
    o.mps_required = true;
    EXPECT_EQ(CheckMps(o, fs, host).severity, Severity::kFail);
  }
  FakeFileSystem fs;
  fs.AddFile(bin, "");
  {
    StrictMock<MockHostAccess> host;
    EXPECT_CALL(host, Access(bin, X_OK)).WillOnce(Return(absl::OkStatus()));
    CheckResult r = CheckMps(o, fs, host);
    EXPECT_EQ(r.severity, Severity::kOk);
    EXPECT_THAT(r.detail, HasSubstr(bin));
  }
  {
    StrictMock<MockHostAccess> host;
    EXPECT_CALL(host, Access(bin, X_OK))
        .WillOnce(Return(absl::PermissionDeniedError("Permission denied")));
    EXPECT_EQ(CheckMps(o, fs, host).severity, Severity::kFail);
  }
}

TEST(CheckMetricsAccessTest, Cases) {
  Options o;
  EXPECT_EQ(CheckMetricsAccess(o, nullptr, "").severity, Severity::kOk);
  o.metrics_tls = true;
  o.metrics_auth = true;
  CheckResult c = CheckMetricsAccess(o, nullptr, "no service-account token");
  EXPECT_EQ(c.severity, Severity::kFail);
  EXPECT_THAT(c.detail, HasSubstr("no service-account token"));

  const std::string path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
  auto allowed = [](bool yes) { return nlohmann::json{{"status", {{"allowed", yes}}}}; };
  {
    StrictMock<kube::MockApiClient> api;
    EXPECT_CALL(api, Post(path, _))
        .WillRepeatedly([&](const std::string&, const nlohmann::json& body) {
          EXPECT_EQ(body["spec"]["resourceAttributes"]["verb"], "create");
          return absl::StatusOr<nlohmann::json>(allowed(true));
        });
    EXPECT_EQ(CheckMetricsAccess(o, &api, "").severity, Severity::kOk);
  }
  {
    StrictMock<kube::MockApiClient> api;
    EXPECT_CALL(api, Post(path, _))
        .WillOnce(Return(allowed(true)))
        .WillOnce(Return(allowed(false)));
    c = CheckMetricsAccess(o, &api, "");
    EXPECT_EQ(c.severity, Severity::kFail);
    EXPECT_THAT(c.detail, HasSubstr("may not create subjectaccessreviews"));
    EXPECT_THAT(c.fix, HasSubstr("system:auth-delegator"));
  }
  {
    StrictMock<kube::MockApiClient> api;
    EXPECT_CALL(api, Post(path, _)).WillOnce(Return(absl::UnavailableError("connection refused")));
    c = CheckMetricsAccess(o, &api, "");
    EXPECT_EQ(c.severity, Severity::kWarn);
    EXPECT_THAT(c.detail, HasSubstr("connection refused"));
  }
}

// --- the whole run and its rendering ---

TEST(RunChecksTest, HealthyNodeHasNoFailure) {
  FakeFileSystem fs;
  // The driver's library as a real root has it: versioned, linked, in the ld cache.
  fs.AddFile(std::string(kLib).replace(std::string(kLib).size() - 1, 1, "550.54.15"), "");
  fs.AddSymlink(kLib, "libnvidia-ml.so.550.54.15");
  fs.AddFile(
      std::string(kRoot) + "/etc/ld.so.cache",
      driver::WriteLdCache({{"libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                             driver::NativeLdCacheFlags()}}));
  for (unsigned i = 0; i < 2; ++i) {
    fs.AddCharDevice(std::string(kRoot) + "/dev/nvidia" + std::to_string(i), 195, i);
  }
  fs.AddCharDevice(std::string(kRoot) + "/dev/nvidiactl", 195, 255);
  fs.AddCharDevice(std::string(kRoot) + "/dev/nvidia-uvm", 510, 0);
  fs.AddFile(std::string(kRoot) + "/usr/bin/nvidia-cuda-mps-control", "");
  fs.AddFile("/var/lib/kubelet/device-plugins/kubelet.sock", "");
  fs.AddFile("/var/lib/kubelet/pod-resources/kubelet.sock", "");
  fs.AddFile("/etc/containerd/config.toml", kContainerd2);
  fs.AddDirectory("/var/run/cdi");
  StrictMock<MockHostAccess> host;
  EXPECT_CALL(host, Access(_, _)).WillRepeatedly(Return(absl::OkStatus()));
  EXPECT_CALL(host, ConnectUnix(_)).WillOnce(Return(absl::OkStatus()));
  StrictMock<MockLister> lister;
  EXPECT_CALL(lister, List()).WillOnce(Return(std::vector<podresources::Assignment>{}));
  Options o = TestOptions();
  o.device_list_strategy = {config::DeviceListStrategy::kCdiCri};
  Environment env{&fs, &host, MachineOpener(nvml::fakes::HopperNvSwitchMachine(2)), &lister};
  Report r = RunChecks(o, env);
  EXPECT_FALSE(r.HasFailure()) << RenderTable(r);
  EXPECT_EQ(r.Count(Severity::kOk), static_cast<int>(r.checks.size())) << RenderTable(r);
  EXPECT_EQ(r.checks.size(), 16u);
  EXPECT_EQ(r.checks.back().name, "metrics access");
  EXPECT_THAT(r.checks.back().detail, HasSubstr("plain HTTP"));
}

TEST(RunChecksTest, ConfigErrorIsAFailureRow) {
  FakeFileSystem fs;
  StrictMock<MockHostAccess> host;
  EXPECT_CALL(host, Access(_, _)).Times(AnyNumber()).WillRepeatedly(Return(absl::OkStatus()));
  StrictMock<MockLister> lister;
  Options o = TestOptions();
  o.config_error = "flags.migStrategy: must be none, single or mixed";
  Report r = RunChecks(o, Environment{&fs, &host, MachineOpener({}), &lister});
  ASSERT_FALSE(r.checks.empty());
  EXPECT_EQ(r.checks[0].name, "configuration");
  EXPECT_EQ(r.checks[0].severity, Severity::kFail);
  EXPECT_TRUE(r.HasFailure());
}

TEST(RenderTest, TableAndJson) {
  Report r;
  r.checks = {
      {"nvml library", Severity::kOk, "found /usr/lib/libnvidia-ml.so.1", ""},
      {"kubelet socket", Severity::kFail, "/x/kubelet.sock does not exist", "start the kubelet"},
      {"mps", Severity::kWarn, "not found", "install it"}};
  EXPECT_EQ(RenderTable(r),
            "STATUS  CHECK           DETAIL\n"
            "OK      nvml library    found /usr/lib/libnvidia-ml.so.1\n"
            "FAIL    kubelet socket  /x/kubelet.sock does not exist\n"
            "                        fix: start the kubelet\n"
            "WARN    mps             not found\n"
            "                        fix: install it\n"
            "1 OK, 1 WARN, 1 FAIL\n");
  const std::string json = RenderJson(r);
  EXPECT_THAT(json, HasSubstr(R"("status": "FAIL")"));
  EXPECT_THAT(json, HasSubstr(R"("fail": 1)"));
}

}  // namespace
}  // namespace gdp::doctor
