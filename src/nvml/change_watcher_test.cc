#include "src/nvml/change_watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/mocks/fake_filesystem.h"
#include "tests/mocks/fake_gpus.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::nvml {
namespace {

using fakes::A100MigMachine;
using fakes::FakeMachine;
using fakes::HopperNvSwitchMachine;
using fakes::ProgramMachine;
using ::testing::_;
using ::testing::AnyNumber;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;

constexpr char kLib[] = "/driver/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1";
constexpr char kDev[] = "/driver/dev";

class ChangeProbeTest : public ::testing::Test {
 protected:
  void SetUpMachine(const FakeMachine& m) {
    ProgramMachine(nvml_, m);
    auto inv = DiscoverInventory(nvml_, DiscoveryOptions{"", &fs_});
    ASSERT_TRUE(inv.ok()) << inv.status();
    inventory_ = *inv;
    fs_.AddFile(kLib, "lib");
    fs_.SetInode(kLib, 100);
    fs_.AddCharDevice(std::string(kDev) + "/nvidiactl", 195, 255);
    fs_.AddCharDevice(std::string(kDev) + "/nvidia-uvm", 510, 0);
    for (const Gpu& g : inventory_->gpus) {
      fs_.AddCharDevice(std::string(kDev) + "/nvidia" + std::to_string(g.minor), 195, g.minor);
    }
  }
  ChangeWatcherOptions Options() const {
    ChangeWatcherOptions o;
    o.library_path = kLib;
    o.dev_dir = kDev;
    return o;
  }

  StrictMock<MockNvml> nvml_;
  FakeFileSystem fs_;
  std::shared_ptr<const Inventory> inventory_;
};

TEST_F(ChangeProbeTest, NothingChangedSaysNothing) {
  SetUpMachine(A100MigMachine());
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  EXPECT_EQ(probe.Check(), std::nullopt);
  EXPECT_EQ(probe.Check(), std::nullopt);
}

TEST_F(ChangeProbeTest, DeviceNodesAppearingOrVanishingAreDeviceChanges) {
  SetUpMachine(HopperNvSwitchMachine(4));
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  fs_.AddCharDevice(std::string(kDev) + "/nvidia4", 195, 4);
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDevices);
  EXPECT_THAT(c->reason, HasSubstr("appeared: nvidia4"));

  ASSERT_TRUE(fs_.Remove(std::string(kDev) + "/nvidia4").ok());
  ASSERT_TRUE(fs_.Remove(std::string(kDev) + "/nvidia2").ok());
  c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_THAT(c->reason, HasSubstr("disappeared: nvidia2"));
  EXPECT_THAT(c->reason, ::testing::Not(HasSubstr("nvidia4")));
  EXPECT_EQ(c->unbound, std::vector<std::string>{inventory_->gpus[2].uuid})
      << "the GPU behind the vanished node is gone already";
  EXPECT_TRUE(c->new_session);
}

TEST_F(ChangeProbeTest, OtherNvidiaNodesAreNotGpus) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  fs_.AddCharDevice(std::string(kDev) + "/nvidia-modeset", 195, 254);
  fs_.AddCharDevice(std::string(kDev) + "/nvidia-uvm-tools", 510, 1);
  fs_.AddDirectory(std::string(kDev) + "/nvidia-caps");
  EXPECT_EQ(probe.Check(), std::nullopt);
}

TEST_F(ChangeProbeTest, LibraryGoneOrReplacedMeansTheDriverIsLeaving) {
  SetUpMachine(HopperNvSwitchMachine(2));
  {
    ChangeProbe probe(nvml_, fs_, inventory_, Options());
    probe.TakeBaseline();
    fs_.SetInode(kLib, 101);
    std::optional<NodeChange> c = probe.Check();
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->kind, NodeChange::Kind::kDriverGone);
    EXPECT_THAT(c->reason, HasSubstr("replaced"));
  }
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  ASSERT_TRUE(fs_.Remove(kLib).ok());
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDriverGone);
  EXPECT_THAT(c->reason, HasSubstr("is gone"));
}

TEST_F(ChangeProbeTest, ALibraryThatLeftBeforeTheBaselineIsStillSeen) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeWatcherOptions o = Options();
  o.library_identity = *fs_.Stat(kLib);  // as loaded
  ASSERT_TRUE(fs_.Remove(kLib).ok());    // gone before the watcher started
  ChangeProbe probe(nvml_, fs_, inventory_, o);
  probe.TakeBaseline();
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDriverGone);
}

TEST_F(ChangeProbeTest, NvmlCountDifferentFromTheInventory) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  EXPECT_CALL(nvml_, DeviceGetCount(_)).WillRepeatedly([](unsigned* n) {
    *n = 3;
    return NVML_SUCCESS;
  });
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDevices);
  EXPECT_THAT(c->reason, HasSubstr("NVML counts 3 GPUs where 2 were discovered"));
}

TEST_F(ChangeProbeTest, NvmlSayingTheDriverIsGone) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();
  EXPECT_CALL(nvml_, DeviceGetCount(_)).WillRepeatedly(Return(NVML_ERROR_DRIVER_NOT_LOADED));
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDriverGone);
  EXPECT_THAT(c->reason, HasSubstr("NVML_ERROR_DRIVER_NOT_LOADED"));
}

TEST_F(ChangeProbeTest, MigModeAndLayoutChangesAreSeen) {
  SetUpMachine(A100MigMachine());
  ChangeProbe probe(nvml_, fs_, inventory_, Options());
  probe.TakeBaseline();

  // GPU 1 turns MIG on (no MIG devices yet).
  FakeMachine m = A100MigMachine();
  m.gpus[1].mig_enabled = true;
  ProgramMachine(nvml_, m);
  std::optional<NodeChange> c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, NodeChange::Kind::kDevices);
  EXPECT_THAT(c->reason, HasSubstr("MIG mode of GPU " + fakes::FakeGpuUuid(1) + " is now enabled"));

  // Back as discovered, then GPU 0 loses a MIG device.
  ProgramMachine(nvml_, A100MigMachine());
  EXPECT_EQ(probe.Check(), std::nullopt);
  m = A100MigMachine();
  m.gpus[0].mig_devices.pop_back();
  ProgramMachine(nvml_, m);
  c = probe.Check();
  ASSERT_TRUE(c.has_value());
  EXPECT_THAT(c->reason, HasSubstr("MIG layout of GPU " + fakes::FakeGpuUuid(0) + " changed"));
}

TEST_F(ChangeProbeTest, UncheckablePartsAreSkipped) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeWatcherOptions o;  // no library, no /dev
  ChangeProbe probe(nvml_, fs_, inventory_, o);
  probe.TakeBaseline();
  ASSERT_TRUE(fs_.Remove(kLib).ok());
  ASSERT_TRUE(fs_.Remove(std::string(kDev) + "/nvidia0").ok());
  EXPECT_EQ(probe.Check(), std::nullopt);
}

TEST_F(ChangeProbeTest, WatcherReportsFromItsThreadAndStopsPromptly) {
  SetUpMachine(HopperNvSwitchMachine(2));
  ChangeWatcherOptions o = Options();
  o.interval = std::chrono::milliseconds(100);
  o.wait_timeout = std::chrono::milliseconds(50);
  std::mutex mu;
  std::vector<NodeChange> seen;
  ChangeWatcher watcher(nvml_, fs_, inventory_, o, [&](const NodeChange& c) {
    std::lock_guard lock(mu);
    seen.push_back(c);
  });
  ASSERT_TRUE(watcher.Start().ok());
  EXPECT_EQ(watcher.Start().code(), absl::StatusCode::kFailedPrecondition);
  fs_.AddCharDevice(std::string(kDev) + "/nvidia7", 195, 7);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (!seen.empty()) break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no change reported";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto stop_start = std::chrono::steady_clock::now();
  watcher.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, std::chrono::seconds(2));
  std::lock_guard lock(mu);
  EXPECT_THAT(seen.front().reason, HasSubstr("appeared: nvidia7"));
  EXPECT_GE(watcher.checks(), 1u);
  watcher.Stop();  // idempotent
}

}  // namespace
}  // namespace gdp::nvml

namespace gdp::nvml {
namespace {

TEST(InventoryChangesTest, NamesEveryDifferenceByUuid) {
  Inventory a;
  a.driver_version = "550.54.15";
  Gpu g0;
  g0.uuid = "GPU-0";
  g0.index = 0;
  g0.pci_bus_id = "0000:18:00.0";
  Gpu g1 = g0;
  g1.uuid = "GPU-1";
  g1.index = 1;
  g1.mig_enabled = true;
  g1.mig_devices.push_back(MigDevice{0, "MIG-a", 1, 0, "3g.40gb"});
  a.gpus = {g0, g1};
  EXPECT_TRUE(InventoryChanges(a, a).empty());

  Inventory b = a;
  b.gpus[0].index = 5;  // renumbered only: no change
  EXPECT_TRUE(InventoryChanges(a, b).empty());

  b.driver_version = "560.35.03";
  b.gpus.erase(b.gpus.begin());
  b.gpus[0].mig_devices = {MigDevice{0, "MIG-b", 1, 0, "1g.10gb"},
                           MigDevice{1, "MIG-c", 2, 0, "1g.10gb"}};
  Gpu g2 = g0;
  g2.uuid = "GPU-2";
  b.gpus.push_back(g2);
  const std::vector<std::string> c = InventoryChanges(a, b);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0], "driver 550.54.15 -> 560.35.03");
  EXPECT_EQ(c[1], "MIG layout of GPU GPU-1: 1 -> 2 MIG devices [1g.10gb,1g.10gb]");
  EXPECT_THAT(c[2], ::testing::StartsWith("GPU added: GPU-2"));
  EXPECT_EQ(c[3], "GPU removed: GPU-0 (0000:18:00.0)");
}

}  // namespace
}  // namespace gdp::nvml
