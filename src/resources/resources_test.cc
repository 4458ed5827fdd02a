// BuildResources (IDs, NUMA, device nodes), Allocate answers per device list
// strategy and its errors, PreferredAllocation validation, GpusBehind.
#include "src/resources/resources.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <functional>
#include <set>
#include <thread>

#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::plugin {
// For readable gmock failures.
void PrintTo(const DeviceSpec& d, std::ostream* os) {
  *os << "{" << d.container_path << " <- " << d.host_path << " " << d.permissions << "}";
}
void PrintTo(const Mount& m, std::ostream* os) {
  *os << "{" << m.container_path << " <- " << m.host_path << (m.read_only ? " ro" : " rw") << "}";
}
}  // namespace gdp::plugin

namespace gdp::resources {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;
namespace t = testing;
using config::DeviceListStrategy;

auto Spec(const std::string& container, const std::string& host) {
  return AllOf(Field(&plugin::DeviceSpec::container_path, container),
               Field(&plugin::DeviceSpec::host_path, host),
               Field(&plugin::DeviceSpec::permissions, "rw"));
}

auto MountOf(const std::string& container) {
  return AllOf(Field(&plugin::Mount::container_path, container),
               Field(&plugin::Mount::host_path, "/dev/null"),
               Field(&plugin::Mount::read_only, true));
}

// A driver root with every GPU node and the given control nodes.
std::unique_ptr<FakeFileSystem> DriverRoot(const std::string& root, unsigned gpus,
                                           std::initializer_list<const char*> control) {
  auto fs = std::make_unique<FakeFileSystem>();
  for (unsigned i = 0; i < gpus; ++i) {
    fs->AddCharDevice(JoinRoot(root, "/dev/nvidia" + std::to_string(i)), 195, i);
  }
  for (const char* name : control) {
    fs->AddCharDevice(JoinRoot(root, std::string("/dev/") + name), 195, 255);
  }
  return fs;
}

std::shared_ptr<const plugin::ResourceBackend> Build(const nvml::Inventory& inv,
                                                     const config::Config& cfg,
                                                     const FileSystem& fs) {
  auto built = BuildResources(inv, cfg, fs);
  EXPECT_TRUE(built.ok()) << built.status();
  if (!built.ok() || built->size() != 1) {
    ADD_FAILURE() << "want exactly one resource";
    return nullptr;
  }
  return built->front();
}

// --- BuildResources ---

TEST(BuildResourcesTest, DevicesPerIdStrategyWithNumaNodes) {
  nvml::Inventory inv = t::T4x4();
  inv.gpus[3].numa_node = -1;  // unknown: no topology hint
  const auto fs = DriverRoot("/", 4, {});
  // The kubelet always sees UUIDs (NVIDIA's plugin does too, so its
  // checkpoint survives a swap); the strategy picks what the container gets.
  struct Case {
    config::DeviceIdStrategy strategy;
    std::vector<std::string> visible;
  };
  const std::vector<std::string> ids = {t::FakeUuid(0), t::FakeUuid(1), t::FakeUuid(2),
                                        t::FakeUuid(3)};
  for (const Case& c : {Case{config::DeviceIdStrategy::kUuid, ids},
                        Case{config::DeviceIdStrategy::kIndex, {"0", "1", "2", "3"}}}) {
    config::Config cfg;
    cfg.device_id_strategy = c.strategy;
    auto backend = Build(inv, cfg, *fs);
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->ResourceName(), "nvidia.com/gpu");
    EXPECT_THAT(
        backend->Devices(),
        ElementsAre(plugin::Device{ids[0], true, 0}, plugin::Device{ids[1], true, 0},
                    plugin::Device{ids[2], true, 1}, plugin::Device{ids[3], true, std::nullopt}));
    for (unsigned i = 0; i < 4; ++i) {
      EXPECT_THAT(backend->GpusBehind(ids[i]), ElementsAre(t::FakeUuid(i)));
      auto got = backend->Allocate({ids[i]});
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->envs.at("NVIDIA_VISIBLE_DEVICES"), c.visible[i]);
    }
    EXPECT_THAT(backend->GpusBehind("GPU-nope"), IsEmpty());
    // An index is not a kubelet-facing ID under either strategy.
    EXPECT_FALSE(backend->Allocate({"0"}).ok());
  }
}

TEST(BuildResourcesTest, DevicesFollowNvmlIndexAndCustomResourceName) {
  nvml::Inventory inv = t::Blank(3);
  // Minor numbers need not follow indices.
  inv.gpus[0].minor = 2;
  inv.gpus[2].minor = 0;
  config::Config cfg;
  cfg.resource_name = "example.com/accel";
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  auto backend = Build(inv, cfg, *DriverRoot("/", 3, {}));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->ResourceName(), "example.com/accel");
  auto got = backend->Allocate({t::FakeUuid(0)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->devices, ElementsAre(Spec("/dev/nvidia2", "/dev/nvidia2")));
  EXPECT_EQ(got->envs.at("NVIDIA_VISIBLE_DEVICES"), "0");
}

TEST(BuildResourcesTest, ControlNodesThatExistUnderTheSeenDriverRootWithHostPaths) {
  struct Case {
    const char* name;
    std::string driver_root, container_root, seen_root;
    std::vector<const char*> present;
    std::vector<std::string> want_control;  // container paths
  };
  const std::vector<Case> cases = {
      {"host driver, all present",
       "/",
       "",
       "/",
       {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"},
       {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"}},
      {"host driver, no modeset or uvm-tools",
       "/",
       "",
       "/",
       {"nvidiactl", "nvidia-uvm"},
       {"/dev/nvidiactl", "/dev/nvidia-uvm"}},
      {"none present", "/", "", "/", {}, {}},
      {"containerised driver seen at /driver-root",
       "/run/nvidia/driver",
       "/driver-root",
       "/driver-root",
       {"nvidiactl"},
       {"/dev/nvidiactl"}},
      {"nodes only at the host path do not count",
       "/run/nvidia/driver",
       "/driver-root",
       "/run/nvidia/driver",
       {"nvidiactl"},
       {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeFileSystem fs;
    fs.AddCharDevice(JoinRoot(c.seen_root, "/dev/nvidia0"), 195, 0);
    for (const char* n : c.present)
      fs.AddCharDevice(JoinRoot(c.seen_root, std::string("/dev/") + n), 195, 255);
    config::Config cfg;
    cfg.driver_root = c.driver_root;
    cfg.container_driver_root = c.container_root;
    auto backend = Build(t::Blank(1), cfg, fs);
    ASSERT_NE(backend, nullptr);
    auto got = backend->Allocate({t::FakeUuid(0)});
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->devices.size(), 1 + c.want_control.size());
    // The GPU node is always passed, at the host path.
    EXPECT_THAT(got->devices[0], Spec("/dev/nvidia0", JoinRoot(c.driver_root, "/dev/nvidia0")));
    for (size_t i = 0; i < c.want_control.size(); ++i) {
      EXPECT_THAT(got->devices[1 + i],
                  Spec(c.want_control[i], JoinRoot(c.driver_root, c.want_control[i])));
    }
  }
}

TEST(BuildResourcesTest, MigEnabledGpuIsAFullGpuUnderStrategyNone) {
  nvml::Inventory inv = t::Blank(2);
  inv.gpus[1].mig_enabled = true;
  inv.gpus[1].mig_devices.push_back(nvml::MigDevice{0, "MIG-aaaa", 1, 0, "1g.10gb"});
  auto backend = Build(inv, config::Config{}, *DriverRoot("/", 2, {}));
  ASSERT_NE(backend, nullptr);
  EXPECT_THAT(backend->Devices(), ElementsAre(Field(&plugin::Device::id, t::FakeUuid(0)),
                                              Field(&plugin::Device::id, t::FakeUuid(1))));
}

TEST(BuildResourcesTest, SingleAndMixedWithoutMigEnabledGpusAdvertiseFullGpus) {
  for (config::MigStrategy s : {config::MigStrategy::kSingle, config::MigStrategy::kMixed}) {
    config::Config cfg;
    cfg.mig_strategy = s;
    auto backend = Build(t::Blank(2), cfg, *DriverRoot("/", 2, {}));
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->Devices().size(), 2u);
  }
}

TEST(BuildResourcesTest, Errors) {
  struct Case {
    const char* name;
    nvml::Inventory inv;
    config::Config cfg;
    absl::StatusCode code;
    std::string message;
  };
  nvml::Inventory mig = t::Blank(2);
  mig.gpus[1].mig_enabled = true;
  mig.gpus[1].mig_devices.push_back(nvml::MigDevice{0, "MIG-aaaa", 1, 0, "1g.10gb"});
  config::Config mixed;
  mixed.mig_strategy = config::MigStrategy::kMixed;
  nvml::Inventory dup = t::Blank(2);
  dup.gpus[1].uuid = dup.gpus[0].uuid;
  nvml::Inventory no_uuid = t::Blank(2);
  no_uuid.gpus[1].uuid.clear();
  nvml::Inventory bad_links = t::Blank(3);
  bad_links.links.pop_back();
  config::Config no_name;
  no_name.resource_name.clear();
  const std::vector<Case> cases = {
      {"MIG devices without mig-minors", mig, mixed, absl::StatusCode::kFailedPrecondition,
       "MIG devices need their /dev/nvidia-caps nodes"},
      {"duplicate UUID", dup, {}, absl::StatusCode::kInvalidArgument, "report the same UUID"},
      {"missing UUID", no_uuid, {}, absl::StatusCode::kInvalidArgument, "GPU 1 has no UUID"},
      {"links not square", bad_links, {}, absl::StatusCode::kInvalidArgument, "not 3x3"},
      {"empty resource name", t::Blank(1), no_name, absl::StatusCode::kInvalidArgument,
       "resource name is empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = BuildResources(c.inv, c.cfg, FakeFileSystem{});
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), c.code);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message));
  }
}

TEST(BuildResourcesTest, NoGpusNoResources) {
  auto got = BuildResources(nvml::Inventory{}, config::Config{}, FakeFileSystem{});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, IsEmpty());
}

// --- Allocate ---

struct AllocateCase {
  const char* name;
  std::vector<DeviceListStrategy> strategies;
  config::DeviceIdStrategy id_strategy;
  bool pass_device_specs;
  std::vector<std::string> request;  // GPU indices, turned into IDs
};

class AllocateTest : public ::testing::Test {
 protected:
  std::shared_ptr<const plugin::ResourceBackend> Make(std::vector<DeviceListStrategy> strategies,
                                                      config::DeviceIdStrategy ids,
                                                      bool pass_specs = true) {
    config::Config cfg;
    cfg.device_list_strategy = std::move(strategies);
    cfg.device_id_strategy = ids;
    cfg.pass_device_specs = pass_specs;
    cfg.driver_root = "/run/nvidia/driver";
    cfg.container_driver_root = "/driver-root";
    return Build(t::DgxH100(), cfg, *fs_);
  }
  std::unique_ptr<FakeFileSystem> fs_ = DriverRoot("/driver-root", 8, {"nvidiactl", "nvidia-uvm"});
};

TEST_F(AllocateTest, EnvvarWithUuidsInIndexOrderAndDeviceSpecs) {
  auto backend = Make({DeviceListStrategy::kEnvvar}, config::DeviceIdStrategy::kUuid);
  auto got = backend->Allocate({t::FakeUuid(5), t::FakeUuid(2)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->envs,
              ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", t::FakeUuid(2) + "," + t::FakeUuid(5))));
  EXPECT_THAT(got->mounts, IsEmpty());
  EXPECT_THAT(got->annotations, IsEmpty());
  EXPECT_THAT(got->cdi_devices, IsEmpty());
  EXPECT_THAT(got->devices,
              ElementsAre(Spec("/dev/nvidia2", "/run/nvidia/driver/dev/nvidia2"),
                          Spec("/dev/nvidia5", "/run/nvidia/driver/dev/nvidia5"),
                          Spec("/dev/nvidiactl", "/run/nvidia/driver/dev/nvidiactl"),
                          Spec("/dev/nvidia-uvm", "/run/nvidia/driver/dev/nvidia-uvm")));
}

TEST_F(AllocateTest, EnvvarWithIndices) {
  auto backend = Make({DeviceListStrategy::kEnvvar}, config::DeviceIdStrategy::kIndex);
  auto got = backend->Allocate({t::FakeUuid(7), t::FakeUuid(0), t::FakeUuid(3)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->envs, ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "0,3,7")));
  EXPECT_EQ(got->devices.size(), 3u + 2u);
}

TEST_F(AllocateTest, VolumeMountsNameEachDeviceAndWinOverEnvvar) {
  for (auto strategies :
       {std::vector{DeviceListStrategy::kVolumeMounts},
        std::vector{DeviceListStrategy::kEnvvar, DeviceListStrategy::kVolumeMounts}}) {
    auto backend = Make(strategies, config::DeviceIdStrategy::kIndex);
    auto got = backend->Allocate({t::FakeUuid(4), t::FakeUuid(1)});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_THAT(got->envs,
                ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "/var/run/nvidia-container-devices")));
    EXPECT_THAT(got->mounts, ElementsAre(MountOf("/var/run/nvidia-container-devices/1"),
                                         MountOf("/var/run/nvidia-container-devices/4")));
  }
}

TEST_F(AllocateTest, CdiAnnotationsAndCriNameUuidsWhateverTheIdStrategy) {
  const std::string want_value =
      "nvidia.com/gpu=" + t::FakeUuid(0) + ",nvidia.com/gpu=" + t::FakeUuid(6);
  for (auto ids : {config::DeviceIdStrategy::kUuid, config::DeviceIdStrategy::kIndex}) {
    auto backend =
        Make({DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri}, ids, false);
    auto got = backend->Allocate({t::FakeUuid(6), t::FakeUuid(0)});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_THAT(got->envs, IsEmpty());
    EXPECT_THAT(got->devices, IsEmpty());  // passDeviceSpecs off
    EXPECT_THAT(got->annotations,
                ElementsAre(Pair("cdi.k8s.io/gpu-device-plugin_nvidia.com_gpu", want_value)));
    EXPECT_THAT(got->cdi_devices, ElementsAre("nvidia.com/gpu=" + t::FakeUuid(0),
                                              "nvidia.com/gpu=" + t::FakeUuid(6)));
  }
}

TEST_F(AllocateTest, EveryStrategyAtOnce) {
  auto backend = Make({DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiAnnotations,
                       DeviceListStrategy::kCdiCri},
                      config::DeviceIdStrategy::kUuid);
  auto got = backend->Allocate({t::FakeUuid(1)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->envs, ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", t::FakeUuid(1))));
  EXPECT_EQ(got->annotations.size(), 1u);
  EXPECT_EQ(got->cdi_devices.size(), 1u);
  EXPECT_EQ(got->devices.size(), 3u);
}

TEST_F(AllocateTest, Errors) {
  auto backend = Make({DeviceListStrategy::kEnvvar}, config::DeviceIdStrategy::kIndex);
  struct Case {
    const char* name;
    std::vector<std::string> request;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty", {}, "empty allocation request for resource nvidia.com/gpu"},
      {"unknown",
       {t::FakeUuid(1), "9"},
       "unknown device ID \"9\" for resource nvidia.com/gpu; known IDs: " + t::FakeUuid(0) + ", " +
           t::FakeUuid(1)},
      // Indices are what the container gets under the index strategy, never the kubelet's IDs.
      {"index", {"0"}, "unknown device ID \"0\""},
      {"duplicate",
       {t::FakeUuid(3), t::FakeUuid(1), t::FakeUuid(3)},
       "device ID \"" + t::FakeUuid(3) +
           "\" appears more than once in the allocation request for resource nvidia.com/gpu"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = backend->Allocate(c.request);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message));
  }
}

TEST(AllocateErrorTest, LongKnownIdListIsShortened) {
  config::Config cfg;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  auto backend = Build(t::ShortIds(t::Islands64()), cfg, *DriverRoot("/", 64, {}));
  ASSERT_NE(backend, nullptr);
  auto got = backend->Allocate({"64"});
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("known IDs: 0, 1, 2, 3, 4, 5, 6, 7, ... (56 more)"));
}

// --- PreferredAllocation validation ---

TEST(PreferredAllocationValidationTest, RejectsImpossibleRequestsNamingTheProblem) {
  config::Config cfg;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  auto backend = Build(t::ShortIds(t::T4x4()), cfg, *DriverRoot("/", 4, {}));
  ASSERT_NE(backend, nullptr);
  struct Case {
    const char* name;
    std::vector<std::string> available, must;
    int size;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"zero size", {"0", "1"}, {}, 0, "size must be positive, got 0"},
      {"negative size", {"0", "1"}, {}, -3, "size must be positive, got -3"},
      {"too large",
       {"0", "1"},
       {},
       3,
       "preferred allocation of 3 devices of resource "
       "nvidia.com/gpu, but only 2 are available"},
      {"unknown available", {"0", "x"}, {}, 1, "unknown device ID \"x\""},
      {"unknown must", {"0", "1"}, {"y"}, 1, "unknown device ID \"y\""},
      {"duplicate available",
       {"0", "1", "0"},
       {},
       1,
       "device ID \"0\" appears more than once in the available devices"},
      {"duplicate must",
       {"0", "1"},
       {"1", "1"},
       2,
       "device ID \"1\" appears more than once in the must-include devices"},
      {"must not available",
       {"0", "1"},
       {"2"},
       1,
       "must-include device \"2\" is not among the 2 available devices"},
      {"must larger than size", {"0", "1", "2"}, {"0", "1"}, 1, "must include 2 devices"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = backend->PreferredAllocation(c.available, c.must, c.size);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message));
  }
}

// --- Concurrency: gRPC calls the backend from many threads (run under TSan too) ---

TEST(ConcurrencyTest, ManyThreadsGetTheSameAnswers) {
  config::Config cfg;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  cfg.device_list_strategy = {DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiCri};
  auto backend = Build(t::ShortIds(t::TwoIslands()), cfg, *DriverRoot("/", 8, {"nvidiactl"}));
  ASSERT_NE(backend, nullptr);
  const std::vector<std::string> all = {"0", "1", "2", "3", "4", "5", "6", "7"};
  const auto want_alloc = backend->Allocate({"6", "2"});
  const auto want_pref = backend->PreferredAllocation(all, {"1"}, 4);
  ASSERT_TRUE(want_alloc.ok() && want_pref.ok());
  std::atomic<int> mismatches{0};
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&] {
        for (int j = 0; j < 200; ++j) {
          auto a = backend->Allocate({"6", "2"});
          auto p = backend->PreferredAllocation(all, {"1"}, 4);
          if (!a.ok() || a->envs != want_alloc->envs || a->cdi_devices != want_alloc->cdi_devices ||
              !p.ok() || *p != *want_pref || backend->GpusBehind("3").size() != 1) {
            ++mismatches;
          }
        }
      });
    }
  }
  EXPECT_EQ(mismatches.load(), 0);
}

// --- Resource::Create and the CDI key ---

TEST(ResourceCreateTest, RejectsInconsistentSpecs) {
  auto valid = [] {
    ResourceSpec spec;
    spec.name = "nvidia.com/gpu";
    spec.gpus = {GpuRef{"GPU-a", 0}};
    spec.gpu_scores = {0};
    spec.devices = {DeviceEntry{"a", {}, {0}, "GPU-a", "nvidia.com/gpu=GPU-a", {}}};
    return spec;
  };
  ASSERT_TRUE(Resource::Create(valid()).ok());
  struct Case {
    const char* name;
    std::function<void(ResourceSpec&)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"no name", [](ResourceSpec& s) { s.name.clear(); }, "empty name"},
      {"scores", [](ResourceSpec& s) { s.gpu_scores.push_back(1); }, "score matrix has 2"},
      {"empty id", [](ResourceSpec& s) { s.devices[0].id.clear(); }, "empty ID"},
      {"dup id", [](ResourceSpec& s) { s.devices.push_back(s.devices[0]); }, "used by devices"},
      {"no gpu", [](ResourceSpec& s) { s.devices[0].gpus.clear(); }, "no GPU behind it"},
      {"gpu range", [](ResourceSpec& s) { s.devices[0].gpus = {1}; }, "GPU position 1 of 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ResourceSpec spec = valid();
    c.mutate(spec);
    auto got = Resource::Create(std::move(spec));
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message));
  }
}

TEST(ResourceCreateTest, ReplicasOnOneGpuShareItsVisibleIdAndNodesOnce) {
  // The shape of time-slicing replicas: two IDs, one GPU.
  ResourceSpec spec;
  spec.name = "nvidia.com/gpu.shared";
  spec.gpus = {GpuRef{"GPU-a", 0}};
  spec.gpu_scores = {0};
  const plugin::DeviceSpec node{"/dev/nvidia0", "/dev/nvidia0", "rw"};
  spec.devices = {DeviceEntry{"GPU-a::0", 0, {0}, "GPU-a", "nvidia.com/gpu=GPU-a", {node}},
                  DeviceEntry{"GPU-a::1", 0, {0}, "GPU-a", "nvidia.com/gpu=GPU-a", {node}}};
  spec.list_strategies = {DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiCri};
  auto resource = Resource::Create(std::move(spec));
  ASSERT_TRUE(resource.ok()) << resource.status();
  auto got = (*resource)->Allocate({"GPU-a::1", "GPU-a::0"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->envs, ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "GPU-a")));
  EXPECT_THAT(got->cdi_devices, ElementsAre("nvidia.com/gpu=GPU-a"));
  EXPECT_THAT(got->devices, ElementsAre(Spec("/dev/nvidia0", "/dev/nvidia0")));
  EXPECT_THAT((*resource)->GpusBehind("GPU-a::1"), ElementsAre("GPU-a"));
}

bool ValidCdiName(const std::string& name) {
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back())) {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

TEST(CdiAnnotationKeyTest, IsValidAndDistinctPerResource) {
  const std::vector<std::string> names = {"nvidia.com/gpu",
                                          "nvidia.com/gpu.shared",
                                          "nvidia.com/mig-1g.10gb",
                                          "nvidia.com/mig-1g.10gb.shared",
                                          "example.com/" + std::string(80, 'x'),
                                          "example.com/" + std::string(80, 'x') + "y",
                                          "weird/name-"};
  std::set<std::string> keys;
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const std::string key = CdiAnnotationKey(n);
    ASSERT_TRUE(key.starts_with("cdi.k8s.io/gpu-device-plugin_"));
    EXPECT_TRUE(ValidCdiName(key.substr(std::string("cdi.k8s.io/").size())));
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), names.size());
  EXPECT_EQ(CdiAnnotationKey("nvidia.com/gpu"), "cdi.k8s.io/gpu-device-plugin_nvidia.com_gpu");
}

// --- Device extras (GDRCopy, GPUDirect Storage, MOFED, IMEX) ---

TEST(DeviceExtrasTest, EveryContainerGetsTheNodesAndTheRuntimesVariables) {
  auto fs = DriverRoot("/driver-root", 4, {"nvidiactl"});
  for (const char* n :
       {"/dev/gdrdrv", "/dev/nvidia-fs1", "/dev/nvidia-fs0", "/dev/infiniband/uverbs0",
        "/dev/infiniband/rdma_cm", "/dev/nvidia-caps-imex-channels/channel2"}) {
    fs->AddCharDevice(JoinRoot("/driver-root", n), 240, 0);
  }
  config::Config cfg;
  cfg.driver_root = "/run/nvidia/driver";
  cfg.container_driver_root = "/driver-root";
  cfg.gdrcopy_enabled = cfg.gds_enabled = cfg.mofed_enabled = true;
  cfg.imex_channel_ids = {2, 5};  // 5 is missing, and not required: skipped
  auto backend = Build(t::T4x4(), cfg, *fs);
  ASSERT_NE(backend, nullptr);
  auto got = backend->Allocate({t::FakeUuid(1)});
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<std::string> paths;
  for (const auto& d : got->devices) paths.push_back(d.container_path + "<-" + d.host_path);
  EXPECT_THAT(paths,
              ElementsAre("/dev/nvidia1<-/run/nvidia/driver/dev/nvidia1",
                          "/dev/nvidiactl<-/run/nvidia/driver/dev/nvidiactl",
                          "/dev/gdrdrv<-/run/nvidia/driver/dev/gdrdrv",
                          "/dev/nvidia-fs0<-/run/nvidia/driver/dev/nvidia-fs0",
                          "/dev/nvidia-fs1<-/run/nvidia/driver/dev/nvidia-fs1",
                          "/dev/infiniband/rdma_cm<-/run/nvidia/driver/dev/infiniband/rdma_cm",
                          "/dev/infiniband/uverbs0<-/run/nvidia/driver/dev/infiniband/uverbs0",
                          "/dev/nvidia-caps-imex-channels/channel2<-/run/nvidia/driver/dev/"
                          "nvidia-caps-imex-channels/channel2"));
  EXPECT_EQ(got->envs.at("NVIDIA_GDRCOPY"), "enabled");
  EXPECT_EQ(got->envs.at("NVIDIA_GDS"), "enabled");
  EXPECT_EQ(got->envs.at("NVIDIA_MOFED"), "enabled");
  EXPECT_EQ(got->envs.at("NVIDIA_IMEX_CHANNELS"), "2");
  // Off (the default): none of it.
  auto plain = Build(t::T4x4(), config::Config{}, *DriverRoot("/", 4, {}));
  ASSERT_NE(plain, nullptr);
  auto none = plain->Allocate({t::FakeUuid(0)});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->envs.count("NVIDIA_GDRCOPY"), 0u);
}

TEST(DeviceExtrasTest, AMissingNodeNamesItAndTheFix) {
  struct Case {
    const char* name;
    std::function<void(config::Config&)> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"gdrcopy", [](config::Config& c) { c.gdrcopy_enabled = true; },
       "flags.gdrcopyEnabled is on, but /dev/gdrdrv does not exist; load GDRCopy's gdrdrv "
       "kernel module (its insmod.sh creates the node), or turn flags.gdrcopyEnabled off"},
      {"gds", [](config::Config& c) { c.gds_enabled = true; },
       "flags.gdsEnabled is on, but /dev/nvidia-fs* does not exist"},
      {"mofed", [](config::Config& c) { c.mofed_enabled = true; },
       "flags.mofedEnabled is on, but /dev/infiniband/* does not exist"},
      {"imex required",
       [](config::Config& c) {
         c.imex_channel_ids = {0};
         c.imex_required = true;
       },
       "imex.required is on, but /dev/nvidia-caps-imex-channels/channel0 does not exist"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    config::Config cfg;
    c.set(cfg);
    auto got = BuildResources(t::T4x4(), cfg, *DriverRoot("/", 4, {}));
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace gdp::resources
