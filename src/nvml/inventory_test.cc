#include "src/nvml/inventory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "absl/status/status.h"
#include "src/nvml/inventory_codec.h"
#include "tests/mocks/fake_gpus.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::nvml {
namespace {

using fakes::A100MigMachine;
using fakes::FakeGpuUuid;
using fakes::FakeHandle;
using fakes::FakeMachine;
using fakes::FakeMigHandle;
using fakes::FakeMigUuid;
using fakes::HopperNvSwitchMachine;
using fakes::NvLinkAllToAllMachine;
using fakes::PcieTwoNumaMachine;
using fakes::ProgramMachine;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;

constexpr uint64_t kMiB = 1024ull * 1024;

// A read-only in-memory tree, for the sysfs fallback.
class MapFileSystem final : public FileSystem {
 public:
  explicit MapFileSystem(std::map<std::string, std::string> files) : files_(std::move(files)) {}
  absl::StatusOr<FileInfo> Stat(const std::string& path) const override {
    if (!files_.count(path)) return absl::NotFoundError(path);
    return FileInfo{FileInfo::Type::kRegular};
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) const override {
    auto it = files_.find(path);
    if (it == files_.end()) return absl::NotFoundError(path);
    return it->second;
  }
  absl::Status WriteFileAtomic(const std::string&, const std::string&) const override {
    return absl::UnimplementedError("read-only");
  }
  absl::Status Remove(const std::string&) const override {
    return absl::UnimplementedError("read-only");
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string&) const override {
    return absl::UnimplementedError("read-only");
  }
  absl::StatusOr<std::string> ReadLink(const std::string& path) const override {
    return absl::NotFoundError(path);
  }

 private:
  std::map<std::string, std::string> files_;
};

class InventoryTest : public ::testing::Test {
 protected:
  std::shared_ptr<const Inventory> Discover(const FakeMachine& machine) {
    ProgramMachine(nvml_, machine);
    auto inv = DiscoverInventory(nvml_, options_);
    EXPECT_TRUE(inv.ok()) << inv.status();
    return inv.ok() ? *inv : nullptr;
  }

  StrictMock<MockNvml> nvml_;
  MapFileSystem empty_fs_{std::map<std::string, std::string>{}};
  DiscoveryOptions options_{"/sys", &empty_fs_};
};

TEST_F(InventoryTest, EightHopperGpusBehindNvSwitches) {
  auto inv = Discover(HopperNvSwitchMachine(8));
  ASSERT_NE(inv, nullptr);
  EXPECT_EQ(inv->driver_version, "550.54.15");
  EXPECT_EQ(inv->nvml_version, "12.550.54.15");
  EXPECT_EQ(inv->cuda_driver_version, 12040);
  EXPECT_EQ(inv->CudaDriverVersionString(), "12.4");
  EXPECT_TRUE(CheckMinimumVersions(*inv).ok());
  ASSERT_EQ(inv->gpus.size(), 8u);
  const std::string buses[] = {"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0",
                               "0000:9a:00.0", "0000:ab:00.0", "0000:ba:00.0", "0000:db:00.0"};
  for (unsigned i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    const Gpu& g = inv->gpus[i];
    EXPECT_EQ(g.index, i);
    EXPECT_EQ(g.minor, i);
    EXPECT_EQ(g.uuid, FakeGpuUuid(i));
    EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(g.brand, "NVIDIA");
    EXPECT_EQ(g.architecture, "Hopper");
    EXPECT_EQ(g.cuda_compute_major, 9);
    EXPECT_EQ(g.cuda_compute_minor, 0);
    EXPECT_EQ(g.memory_bytes, 81559 * kMiB);
    EXPECT_EQ(g.pci_bus_id, buses[i]);
    EXPECT_EQ(g.pci_device_id, 0x233010deu);
    EXPECT_EQ(g.numa_node, i < 4 ? 0 : 1);
    EXPECT_FALSE(g.mig_enabled);
    EXPECT_TRUE(g.mig_devices.empty());
  }
  ASSERT_EQ(inv->links.size(), 8u);
  for (unsigned i = 0; i < 8; ++i) {
    ASSERT_EQ(inv->links[i].size(), 8u);
    for (unsigned j = 0; j < 8; ++j) {
      SCOPED_TRACE(testing::PrintToString(std::make_pair(i, j)));
      if (i == j) {
        EXPECT_EQ(inv->links[i][j].path, PathKind::kSelf);
      } else {
        EXPECT_EQ(inv->links[i][j].path, PathKind::kNvLink);
        EXPECT_EQ(inv->links[i][j].nvlinks, 18u);
      }
    }
  }
  EXPECT_EQ(inv->FindByUuid(FakeGpuUuid(5)), &inv->gpus[5]);
  EXPECT_EQ(inv->FindByUuid("GPU-nope"), nullptr);
}

TEST_F(InventoryTest, NvSwitchInferredFromBusIdsWhenRemoteTypeIsUnavailable) {
  FakeMachine machine = HopperNvSwitchMachine(8);
  machine.remote_device_type_supported = false;
  auto inv = Discover(machine);
  ASSERT_NE(inv, nullptr);
  for (unsigned j = 1; j < 8; ++j) {
    EXPECT_EQ(inv->links[0][j].path, PathKind::kNvLink);
    EXPECT_EQ(inv->links[0][j].nvlinks, 18u);
  }
}

TEST_F(InventoryTest, DirectNvLinksCountedPerPair) {
  for (bool type_supported : {true, false}) {
    SCOPED_TRACE(type_supported);
    StrictMock<MockNvml> nvml;
    FakeMachine machine = NvLinkAllToAllMachine(4, 4);
    machine.remote_device_type_supported = type_supported;
    ProgramMachine(nvml, machine);
    auto inv = DiscoverInventory(nvml, options_);
    ASSERT_TRUE(inv.ok()) << inv.status();
    for (unsigned i = 0; i < 4; ++i) {
      for (unsigned j = 0; j < 4; ++j) {
        const Link& l = (*inv)->links[i][j];
        EXPECT_EQ(l.path, i == j ? PathKind::kSelf : PathKind::kNvLink);
        EXPECT_EQ(l.nvlinks, i == j ? 0u : 4u);
      }
    }
  }
}

TEST_F(InventoryTest, FourPcieGpusOnTwoNumaNodes) {
  auto inv = Discover(PcieTwoNumaMachine(4));
  ASSERT_NE(inv, nullptr);
  ASSERT_EQ(inv->gpus.size(), 4u);
  std::vector<int> numa;
  for (const Gpu& g : inv->gpus) {
    numa.push_back(g.numa_node);
    EXPECT_EQ(g.brand, "Tesla");
    EXPECT_EQ(g.architecture, "Turing");
    EXPECT_EQ(g.cuda_compute_major, 7);
    EXPECT_EQ(g.cuda_compute_minor, 5);
    EXPECT_FALSE(g.mig_enabled);  // MIG NOT_SUPPORTED on T4
    EXPECT_FALSE(g.mig_capable);
  }
  EXPECT_THAT(numa, ElementsAre(0, 0, 1, 1));
  EXPECT_EQ(inv->gpus[3].pci_bus_id, "0000:af:00.0");
  const PathKind expected[4][4] = {
      {PathKind::kSelf, PathKind::kPcieSwitch, PathKind::kSystem, PathKind::kSystem},
      {PathKind::kPcieSwitch, PathKind::kSelf, PathKind::kSystem, PathKind::kSystem},
      {PathKind::kSystem, PathKind::kSystem, PathKind::kSelf, PathKind::kPcieSwitch},
      {PathKind::kSystem, PathKind::kSystem, PathKind::kPcieSwitch, PathKind::kSelf}};
  for (unsigned i = 0; i < 4; ++i) {
    for (unsigned j = 0; j < 4; ++j) {
      EXPECT_EQ(inv->links[i][j].path, expected[i][j]) << i << "," << j;
      EXPECT_EQ(inv->links[i][j].nvlinks, 0u);
    }
  }
}

TEST_F(InventoryTest, PcieLevelsMapToPathKinds) {
  FakeMachine machine = PcieTwoNumaMachine(4);
  machine.topology[0][1] = machine.topology[1][0] = NVML_TOPOLOGY_MULTIPLE;
  machine.topology[0][2] = machine.topology[2][0] = NVML_TOPOLOGY_HOSTBRIDGE;
  machine.topology[0][3] = machine.topology[3][0] = NVML_TOPOLOGY_NODE;
  machine.topology[1][2] = machine.topology[2][1] = NVML_TOPOLOGY_INTERNAL;
  auto inv = Discover(machine);
  ASSERT_NE(inv, nullptr);
  EXPECT_EQ(inv->links[0][1].path, PathKind::kPcieMultiSwitch);
  EXPECT_EQ(inv->links[0][2].path, PathKind::kHostBridge);
  EXPECT_EQ(inv->links[3][0].path, PathKind::kNumaNode);
  EXPECT_EQ(inv->links[1][2].path, PathKind::kPcieSwitch);
  EXPECT_EQ(inv->links[1][3].path, PathKind::kSystem);
}

TEST_F(InventoryTest, NumaFallsBackToSysfsThenMinusOne) {
  FakeMachine machine = PcieTwoNumaMachine(4);
  for (auto& g : machine.gpus) g.numa_node = -1;  // NVML: NOT_SUPPORTED
  MapFileSystem fs({{"/host/sys/bus/pci/devices/0000:3b:00.0/numa_node", "1\n"},
                    {"/host/sys/bus/pci/devices/0000:5e:00.0/numa_node", "-1\n"},
                    {"/host/sys/bus/pci/devices/0000:86:00.0/numa_node", "junk"}});
  options_ = DiscoveryOptions{"/host/sys", &fs};
  auto inv = Discover(machine);
  ASSERT_NE(inv, nullptr);
  std::vector<int> numa;
  for (const Gpu& g : inv->gpus) numa.push_back(g.numa_node);
  EXPECT_THAT(numa, ElementsAre(1, -1, -1, -1));
}

TEST_F(InventoryTest, NumaSysfsFallbackAlsoForOldDriversAndCanBeSwitchedOff) {
  MapFileSystem fs(
      std::map<std::string, std::string>{{"/sys/bus/pci/devices/0000:3b:00.0/numa_node", "1\n"}});
  options_ = DiscoveryOptions{"/sys", &fs};
  ProgramMachine(nvml_, PcieTwoNumaMachine(4));
  EXPECT_CALL(nvml_, DeviceGetNumaNodeId(_, _))
      .WillRepeatedly(Return(NVML_ERROR_FUNCTION_NOT_FOUND));
  auto inv = DiscoverInventory(nvml_, options_);
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ((*inv)->gpus[0].numa_node, 1);
  EXPECT_EQ((*inv)->gpus[1].numa_node, -1);

  options_.sysfs_root = "";
  inv = DiscoverInventory(nvml_, options_);
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ((*inv)->gpus[0].numa_node, -1);
}

TEST_F(InventoryTest, DiscoversMigDevicesWithNvidiaProfileNames) {
  auto inv = Discover(A100MigMachine());
  ASSERT_NE(inv, nullptr);
  const Gpu& g = inv->gpus[0];
  EXPECT_TRUE(g.mig_enabled);
  EXPECT_TRUE(g.mig_capable);
  ASSERT_EQ(g.mig_devices.size(), 4u);  // slot 2 is empty
  struct Want {
    unsigned index, gi, ci;
    const char* profile;
    uint64_t mib;
    unsigned sms, gi_slices, ci_slices;
  };
  const Want want[] = {{0, 9, 0, "1g.10gb", 9856, 14, 1, 1},
                       {1, 10, 0, "1g.10gb", 9856, 14, 1, 1},
                       {3, 2, 0, "3g.40gb", 40192, 42, 3, 3},
                       {4, 1, 1, "1c.3g.40gb", 40192, 14, 3, 1}};
  for (size_t k = 0; k < 4; ++k) {
    SCOPED_TRACE(k);
    const MigDevice& m = g.mig_devices[k];
    EXPECT_EQ(m.index, want[k].index);
    EXPECT_EQ(m.uuid, FakeMigUuid(0, want[k].index));
    EXPECT_EQ(m.gpu_instance_id, want[k].gi);
    EXPECT_EQ(m.compute_instance_id, want[k].ci);
    EXPECT_EQ(m.profile, want[k].profile);
    EXPECT_EQ(m.memory_bytes, want[k].mib * kMiB);
    EXPECT_EQ(m.multiprocessor_count, want[k].sms);
    EXPECT_EQ(m.gpu_instance_slices, want[k].gi_slices);
    EXPECT_EQ(m.compute_instance_slices, want[k].ci_slices);
  }
  EXPECT_FALSE(inv->gpus[1].mig_enabled);
  EXPECT_TRUE(inv->gpus[1].mig_devices.empty());
}

TEST_F(InventoryTest, CodecReadsBackEveryField) {
  for (const FakeMachine& machine : {HopperNvSwitchMachine(8), A100MigMachine()}) {
    ::testing::Mock::VerifyAndClearExpectations(&nvml_);
    auto inv = Discover(machine);
    ASSERT_NE(inv, nullptr);
    auto back = DecodeInventory(EncodeInventory(*inv));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(**back, *inv);
  }
}

TEST(InventoryCodecTest, EveryFieldTravels) {
  Inventory inv;
  inv.driver_version = "570.1";
  inv.nvml_version = "12.570.1";
  inv.cuda_driver_version = 12080;
  Gpu g;
  g.index = 3;
  g.minor = 7;
  g.uuid = "GPU-x";
  g.name = "n";
  g.brand = "b";
  g.architecture = "a";
  g.cuda_compute_major = 9;
  g.cuda_compute_minor = 1;
  g.memory_bytes = 1ull << 40;
  g.pci_bus_id = "0000:1b:00.0";
  g.pci_device_id = 0x233010deu;
  g.numa_node = -1;
  g.mig_enabled = true;
  g.mig_capable = true;
  g.vgpu_guest = true;
  g.mig_devices.push_back(MigDevice{2, "MIG-y", 9, 1, "1g.10gb", 5ull << 30, 14, 1, 1});
  inv.gpus.push_back(g);
  inv.links = {{Link{PathKind::kSelf, 0}}};
  auto back = DecodeInventory(EncodeInventory(inv));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(**back, inv);
}

TEST(InventoryCodecTest, BadDocumentsNameTheField) {
  auto error = [](std::string_view text) {
    auto r = DecodeInventory(text);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  EXPECT_THAT(error("not json"), HasSubstr("not a JSON object"));
  EXPECT_THAT(error(R"({"format":2})"), HasSubstr("inventory.format is 2"));
  const std::string ok_head =
      R"({"format":1,"driverVersion":"1","nvmlVersion":"1","cudaDriverVersion":1,)";
  EXPECT_THAT(error(ok_head + R"("gpus":[{"index":"zero"}],"links":[[[0,0]]]})"),
              HasSubstr("inventory.gpus[0].index has the wrong type"));
  EXPECT_THAT(error(ok_head + R"("gpus":[],"links":[[]]})"),
              HasSubstr("inventory.links has 1 rows for 0 GPUs"));
  EXPECT_THAT(error(ok_head + R"("links":[]})"), HasSubstr("inventory.gpus is not an array"));
}

TEST(MigProfileNameTest, FollowsNvidiasRounding) {
  struct Case {
    unsigned g, c;
    uint64_t mig_mib, parent_mib;
    const char* want;
  } cases[] = {
      {1, 1, 9856, 81920, "1g.10gb"},   // A100 80GB
      {1, 1, 4864, 40960, "1g.5gb"},    // A100 40GB
      {2, 2, 9856, 40960, "2g.10gb"},   // A100 40GB
      {7, 7, 40192, 40960, "7g.40gb"},  // A100 40GB
      {7, 7, 81920, 81920, "7g.80gb"},  // A100 80GB
      {1, 1, 9984, 81559, "1g.10gb"},   // H100 80GB: 79.6 GiB rounds up to 80
      {1, 1, 19968, 81559, "1g.20gb"},  // H100 80GB
      {4, 4, 40192, 81920, "4g.40gb"},  // A100 80GB
      {3, 1, 40192, 81920, "1c.3g.40gb"}, {1, 1, 2048, 0, "1g.2gb"},  // parent memory unknown
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MigProfileName(c.g, c.c, c.mig_mib, c.parent_mib * kMiB), c.want) << c.want;
  }
}

TEST(NormalizePciBusIdTest, CanonicalLowerCase) {
  const std::pair<const char*, const char*> cases[] = {
      {"00000000:1B:00.0", "0000:1b:00.0"},
      {"0000:1b:00.0", "0000:1b:00.0"},
      {"1B:00.0", "0000:1b:00.0"},
      {"00010000:AF:1F.7", "00010000:af:1f.7"},
      {"0001:AF:00.1", "0001:af:00.1"},
      {"", ""},
      {"zz:00.0", ""},
      {"0000:1b:00", ""},
      {"0000:1b:00.0:1", ""},
      {"000000000:1b:00.0", ""},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(NormalizePciBusId(in), want) << in;
}

struct FailureCase {
  const char* call;
  std::function<void(StrictMock<MockNvml>&)> inject;
  const char* subject;
};

TEST(InventoryFailureTest, RequiredCallFailureNamesGpuAndCall) {
  const FailureCase cases[] = {
      {"nvmlDeviceGetUUID",
       [](auto& m) {
         EXPECT_CALL(m, DeviceGetUUID(FakeHandle(3), _, _))
             .WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
       },
       "GPU 3"},
      {"nvmlDeviceGetHandleByIndex",
       [](auto& m) {
         EXPECT_CALL(m, DeviceGetHandleByIndex(2, _))
             .WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
       },
       "GPU 2"},
      {"nvmlDeviceGetMinorNumber",
       [](auto& m) {
         EXPECT_CALL(m, DeviceGetMinorNumber(FakeHandle(0), _))
             .WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
       },
       "GPU 0"},
      {"nvmlDeviceGetMemoryInfo",
       [](auto& m) {
         EXPECT_CALL(m, DeviceGetMemoryInfo(FakeHandle(1), _))
             .WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
       },
       "GPU 1"},
      {"nvmlDeviceGetPciInfo",
       [](auto& m) {
         EXPECT_CALL(m, DeviceGetPciInfo(FakeHandle(1), _))
             .WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
       },
       "GPU 1"},
  };
  for (const FailureCase& c : cases) {
    SCOPED_TRACE(c.call);
    StrictMock<MockNvml> nvml;
    ProgramMachine(nvml, PcieTwoNumaMachine(4));
    c.inject(nvml);
    MapFileSystem fs(std::map<std::string, std::string>{});
    auto inv = DiscoverInventory(nvml, DiscoveryOptions{"/sys", &fs});
    ASSERT_FALSE(inv.ok());
    EXPECT_EQ(inv.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(inv.status().message(), HasSubstr(std::string(c.call) + "(" + c.subject + ")"));
    EXPECT_THAT(inv.status().message(), HasSubstr("NVML_ERROR_GPU_IS_LOST"));
  }
}

TEST(InventoryFailureTest, SystemAndMigFailuresAreNamed) {
  {
    StrictMock<MockNvml> nvml;
    ProgramMachine(nvml, PcieTwoNumaMachine(2));
    EXPECT_CALL(nvml, DeviceGetCount(_)).WillRepeatedly(Return(NVML_ERROR_UNINITIALIZED));
    auto inv = DiscoverInventory(nvml, DiscoveryOptions{""});
    ASSERT_FALSE(inv.ok());
    EXPECT_EQ(inv.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(inv.status().message(), HasSubstr("nvmlDeviceGetCount"));
  }
  {
    StrictMock<MockNvml> nvml;
    ProgramMachine(nvml, A100MigMachine());
    EXPECT_CALL(nvml, DeviceGetAttributes(FakeMigHandle(0, 3), _))
        .WillRepeatedly(Return(NVML_ERROR_UNKNOWN));
    auto inv = DiscoverInventory(nvml, DiscoveryOptions{""});
    ASSERT_FALSE(inv.ok());
    EXPECT_THAT(inv.status().message(), HasSubstr("nvmlDeviceGetAttributes(GPU 0 MIG device 3)"));
  }
}

TEST_F(InventoryTest, OptionalCallsNotSupportedAreTolerated) {
  ProgramMachine(nvml_, PcieTwoNumaMachine(4));
  EXPECT_CALL(nvml_, SystemGetNVMLVersion(_, _)).WillRepeatedly(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(nvml_, DeviceGetName(_, _, _)).WillRepeatedly(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(nvml_, DeviceGetBrand(_, _)).WillRepeatedly(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(nvml_, DeviceGetArchitecture(_, _))
      .WillRepeatedly(Return(NVML_ERROR_FUNCTION_NOT_FOUND));
  EXPECT_CALL(nvml_, DeviceGetCudaComputeCapability(_, _, _))
      .WillRepeatedly(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(nvml_, DeviceGetMigMode(_, _, _))
      .WillRepeatedly(Return(NVML_ERROR_FUNCTION_NOT_FOUND));
  EXPECT_CALL(nvml_, DeviceGetNvLinkState(_, _, _))
      .WillRepeatedly(Return(NVML_ERROR_FUNCTION_NOT_FOUND));
  EXPECT_CALL(nvml_, DeviceGetTopologyCommonAncestor(_, _, _))
      .WillRepeatedly(Return(NVML_ERROR_NOT_SUPPORTED));
  auto inv = DiscoverInventory(nvml_, options_);
  ASSERT_TRUE(inv.ok()) << inv.status();
  const Gpu& g = (*inv)->gpus[2];
  EXPECT_EQ((*inv)->nvml_version, "");
  EXPECT_EQ(g.uuid, FakeGpuUuid(2));
  EXPECT_EQ(g.name, "");
  EXPECT_EQ(g.brand, "Unknown");
  EXPECT_EQ(g.architecture, "unknown");
  EXPECT_EQ(g.cuda_compute_major, 0);
  EXPECT_FALSE(g.mig_enabled);
  EXPECT_EQ((*inv)->links[0][1].path, PathKind::kSystem);
}

TEST(VersionTest, ParsesDriverVersions) {
  int major = 0, minor = 0;
  EXPECT_TRUE(ParseDriverVersion("550.54.15", &major, &minor));
  EXPECT_EQ(major, 550);
  EXPECT_EQ(minor, 54);
  EXPECT_TRUE(ParseDriverVersion("418.67", &major, &minor));
  EXPECT_EQ(major, 418);
  EXPECT_EQ(minor, 67);
  for (const char* bad : {"", "550", "550.", ".54", "abc.def", "550.54-rc1", "r550.54"}) {
    EXPECT_FALSE(ParseDriverVersion(bad, &major, &minor)) << bad;
  }
}

TEST(VersionTest, MinimumDriverAndCudaVersionsOnBothSidesOfTheBoundary) {
  struct Case {
    const char* driver;
    int cuda;
    bool ok;
    const char* message;
  } cases[] = {
      {"449.99", 12000, false,
       "driver 449.99 is older than the minimum 450; upgrade the NVIDIA driver"},
      {"450.36.06", 11000, true, ""},
      {"418.67", 10010, false,
       "driver 418.67 is older than the minimum 450; upgrade the NVIDIA driver"},
      {"550.54.15", 9020, false,
       "CUDA driver version 9.2 is older than the minimum 10.0; upgrade the NVIDIA driver"},
      {"550.54.15", 10000, true, ""},
      {"550.54.15", 0, false, "could not be read"},
      {"garbage", 12040, false, "cannot parse the NVIDIA driver version \"garbage\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(std::make_pair(c.driver, c.cuda)));
    Inventory inv;
    inv.driver_version = c.driver;
    inv.cuda_driver_version = c.cuda;
    absl::Status s = CheckMinimumVersions(inv);
    EXPECT_EQ(s.ok(), c.ok) << s;
    if (!c.ok) {
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(s.message(), HasSubstr(c.message));
    }
  }
}

TEST(VersionTest, CudaVersionString) {
  Inventory inv;
  for (const auto& [v, want] : std::vector<std::pair<int, std::string>>{
           {12040, "12.4"}, {10000, "10.0"}, {9020, "9.2"}, {11080, "11.8"}, {0, "unknown"}}) {
    inv.cuda_driver_version = v;
    EXPECT_EQ(inv.CudaDriverVersionString(), want);
  }
}

}  // namespace
}  // namespace gdp::nvml
