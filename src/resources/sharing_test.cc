// MIG strategies (single, mixed), time-slicing and MPS replicas: resource
// names, IDs, device nodes, Allocate answers and errors, and the replica
// allocation policies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::resources {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
namespace t = testing;

constexpr uint64_t kGiB = 1ULL << 30;

std::unique_ptr<FakeFileSystem> Nodes(unsigned gpus) {
  auto fs = std::make_unique<FakeFileSystem>();
  for (unsigned i = 0; i < gpus; ++i) {
    fs->AddCharDevice("/dev/nvidia" + std::to_string(i), 195, i);
  }
  fs->AddCharDevice("/dev/nvidiactl", 195, 255);
  return fs;
}

// name -> backend, failing the test on an error.
std::map<std::string, std::shared_ptr<const plugin::ResourceBackend>> Build(
    const nvml::Inventory& inv, const config::Config& cfg, const FileSystem& fs) {
  std::map<std::string, std::shared_ptr<const plugin::ResourceBackend>> out;
  auto built = BuildResources(inv, cfg, fs);
  EXPECT_TRUE(built.ok()) << built.status();
  if (!built.ok()) return out;
  for (const auto& r : *built) out[r->ResourceName()] = r;
  return out;
}

std::string BuildError(const nvml::Inventory& inv, const config::Config& cfg,
                       const FileSystem& fs) {
  auto built = BuildResources(inv, cfg, fs);
  EXPECT_FALSE(built.ok());
  return built.ok() ? "" : std::string(built.status().message());
}

std::vector<std::string> Ids(const plugin::ResourceBackend& r) {
  std::vector<std::string> ids;
  for (const plugin::Device& d : r.Devices()) ids.push_back(d.id);
  return ids;
}

// An A100 node: GPU 0 full, GPU 1 with MIG devices 1g.10gb (GI 1, 2) and 3g.40gb (GI 3).
nvml::Inventory A100Mig() {
  nvml::Inventory inv = t::Blank(2);
  for (auto& g : inv.gpus) g.memory_bytes = 80 * kGiB;
  nvml::Gpu& g = inv.gpus[1];
  g.mig_enabled = true;
  g.mig_devices = {nvml::MigDevice{0, "MIG-aaaa", 1, 0, "1g.10gb", 10 * kGiB},
                   nvml::MigDevice{1, "MIG-bbbb", 2, 0, "1g.10gb", 10 * kGiB},
                   nvml::MigDevice{2, "MIG-cccc", 3, 0, "3g.40gb", 40 * kGiB}};
  return inv;
}

std::unique_ptr<FakeFileSystem> MigNodes(const std::string& seen_root = "/") {
  auto fs = Nodes(2);
  // As the driver writes it: GPU g, GI i: 3 + 135g + 9i; CI c: + 1 + c.
  std::string minors = "config 1\nmonitor 2\n";
  for (unsigned gi = 0; gi < 4; ++gi) {
    minors += "gpu1/gi" + std::to_string(gi) + "/access " + std::to_string(138 + 9 * gi) + "\n";
    minors += "gpu1/gi" + std::to_string(gi) + "/ci0/access " + std::to_string(139 + 9 * gi) + "\n";
  }
  fs->AddFile(JoinRoot(seen_root, kMigMinorsPath), minors);
  return fs;
}

TEST(MigTest, MixedAdvertisesOneResourcePerProfileWithCapsNodes) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kMixed;
  cfg.driver_root = "/run/nvidia/driver";
  cfg.container_driver_root = "/driver-root";
  auto fs = MigNodes("/driver-root");
  for (unsigned i = 0; i < 2; ++i) {
    fs->AddCharDevice("/driver-root/dev/nvidia" + std::to_string(i), 195, i);
  }
  fs->AddCharDevice("/driver-root/dev/nvidiactl", 195, 255);
  auto r = Build(A100Mig(), cfg, *fs);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_THAT(Ids(*r["nvidia.com/gpu"]), ElementsAre(t::FakeUuid(0)));
  EXPECT_THAT(Ids(*r["nvidia.com/mig-1g.10gb"]), ElementsAre("MIG-aaaa", "MIG-bbbb"));
  EXPECT_THAT(Ids(*r["nvidia.com/mig-3g.40gb"]), ElementsAre("MIG-cccc"));

  auto a = r["nvidia.com/mig-1g.10gb"]->Allocate({"MIG-bbbb"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->envs, ElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "MIG-bbbb")));
  std::vector<std::string> nodes;
  for (const auto& d : a->devices) nodes.push_back(d.container_path + "<-" + d.host_path);
  // The parent's node, the GPU instance's and the compute instance's caps.
  EXPECT_THAT(nodes, ElementsAre("/dev/nvidia1<-/run/nvidia/driver/dev/nvidia1",
                                 "/dev/nvidia-caps/nvidia-cap156<-/run/nvidia/driver/dev/"
                                 "nvidia-caps/nvidia-cap156",
                                 "/dev/nvidia-caps/nvidia-cap157<-/run/nvidia/driver/dev/"
                                 "nvidia-caps/nvidia-cap157",
                                 "/dev/nvidiactl<-/run/nvidia/driver/dev/nvidiactl"));
  // Health of the parent applies to its MIG devices.
  EXPECT_THAT(r["nvidia.com/mig-3g.40gb"]->GpusBehind("MIG-cccc"), ElementsAre(t::FakeUuid(1)));
}

TEST(MigTest, IndexStrategyGivesTheContainerParentColonMigIndex) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kMixed;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  auto r = Build(A100Mig(), cfg, *MigNodes());
  // The kubelet keeps the UUIDs, as with NVIDIA's plugin.
  EXPECT_THAT(Ids(*r["nvidia.com/mig-1g.10gb"]), ElementsAre("MIG-aaaa", "MIG-bbbb"));
  auto a = r["nvidia.com/mig-1g.10gb"]->Allocate({"MIG-bbbb"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->envs["NVIDIA_VISIBLE_DEVICES"], "1:1");
}

TEST(MigTest, SingleAdvertisesMigDevicesAsGpusAndRefusesInconsistentLayouts) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kSingle;
  nvml::Inventory uniform = A100Mig();
  uniform.gpus[1].mig_devices.pop_back();
  uniform.gpus[0].mig_enabled = true;
  uniform.gpus[0].mig_devices = {nvml::MigDevice{0, "MIG-dddd", 1, 0, "1g.10gb", 10 * kGiB}};
  std::string minors = "gpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n";
  auto fs = MigNodes();
  fs->AddFile(kMigMinorsPath, minors +
                                  "gpu1/gi1/access 147\ngpu1/gi1/ci0/access 148\n"
                                  "gpu1/gi2/access 156\ngpu1/gi2/ci0/access 157\n");
  auto r = Build(uniform, cfg, *fs);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_THAT(Ids(*r["nvidia.com/gpu"]), ElementsAre("MIG-dddd", "MIG-aaaa", "MIG-bbbb"));

  EXPECT_THAT(BuildError(A100Mig(), cfg, *MigNodes()),
              HasSubstr("migStrategy single needs every MIG device on the node to have the same "
                        "profile, but they differ: 1g.10gb (GPU 1), 3g.40gb (GPU 1); use "
                        "migStrategy mixed"));
  nvml::Inventory partly = A100Mig();
  partly.gpus[1].mig_devices.pop_back();
  EXPECT_THAT(BuildError(partly, cfg, *MigNodes()),
              HasSubstr("needs MIG enabled on every GPU or on none, but GPUs 1 have MIG enabled "
                        "and GPUs 0 do not"));
}

config::SharedResource Shared(const std::string& name, unsigned replicas) {
  config::SharedResource r;
  r.name = name;
  r.replicas = replicas;
  return r;
}

TEST(TimeSlicingTest, ReplicasOfEveryGpuWithUuidIds) {
  config::Config cfg;
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/gpu", 4)};
  auto r = Build(t::DgxH100(), cfg, *Nodes(8));
  ASSERT_EQ(r.size(), 1u);
  const auto& gpu = *r["nvidia.com/gpu"];
  ASSERT_EQ(gpu.Devices().size(), 32u);
  EXPECT_EQ(gpu.Devices()[0].id, t::FakeUuid(0) + "::0");
  EXPECT_EQ(gpu.Devices()[5].id, t::FakeUuid(1) + "::1");
  EXPECT_EQ(gpu.Devices()[5].numa_node, 0);
  EXPECT_EQ(gpu.Devices()[31].numa_node, 1);
  // A replica gives its GPU; two replicas of one GPU give it once.
  auto a = gpu.Allocate({t::FakeUuid(1) + "::1", t::FakeUuid(1) + "::3"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->envs["NVIDIA_VISIBLE_DEVICES"], t::FakeUuid(1));
  ASSERT_EQ(a->devices.size(), 2u);
  EXPECT_EQ(a->devices[0].container_path, "/dev/nvidia1");
  // A physical GPU's health reaches all of its replicas.
  EXPECT_THAT(gpu.GpusBehind(t::FakeUuid(7) + "::2"), ElementsAre(t::FakeUuid(7)));
}

TEST(TimeSlicingTest, RenameSelectedDevicesAndKeepTheRest) {
  config::Config cfg;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  cfg.sharing.time_slicing.rename_by_default = true;
  config::SharedResource s = Shared("nvidia.com/gpu", 2);
  s.devices.all = false;
  s.devices.ids = {"1", t::FakeUuid(3)};
  cfg.sharing.time_slicing.resources = {s};
  auto r = Build(t::DgxH100(), cfg, *Nodes(8));
  ASSERT_EQ(r.size(), 2u);
  auto u = [](unsigned i) { return t::FakeUuid(i); };
  EXPECT_THAT(Ids(*r["nvidia.com/gpu"]), ElementsAre(u(0), u(2), u(4), u(5), u(6), u(7)));
  EXPECT_THAT(Ids(*r["nvidia.com/gpu.shared"]),
              ElementsAre(u(1) + "::0", u(1) + "::1", u(3) + "::0", u(3) + "::1"));

  s.devices.ids.clear();
  s.devices.count = 3;
  s.rename = "example.com/vgpu";
  cfg.sharing.time_slicing.resources = {s};
  r = Build(t::DgxH100(), cfg, *Nodes(8));
  EXPECT_EQ(r["example.com/vgpu"]->Devices().size(), 6u);
  EXPECT_EQ(r["nvidia.com/gpu"]->Devices().size(), 5u);
}

TEST(TimeSlicingTest, SelectionErrorsNameTheDevice) {
  config::Config cfg;
  config::SharedResource s = Shared("nvidia.com/gpu", 2);
  s.devices.all = false;
  s.devices.ids = {"9"};
  cfg.sharing.time_slicing.resources = {s};
  EXPECT_THAT(BuildError(t::Blank(2), cfg, *Nodes(2)),
              HasSubstr("sharing.timeSlicing.resources[0]: device \"9\" is not a device of "
                        "resource nvidia.com/gpu on this node (devices by index: 0, 1"));
  s.devices.ids.clear();
  s.devices.count = 3;
  cfg.sharing.time_slicing.resources = {s};
  EXPECT_THAT(BuildError(t::Blank(2), cfg, *Nodes(2)),
              HasSubstr("devices: 3, but resource nvidia.com/gpu has 2 devices on this node"));
}

TEST(TimeSlicingTest, AResourceTheNodeLacksIsSkipped) {
  config::Config cfg;
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/mig-1g.10gb", 2)};
  auto r = Build(t::Blank(2), cfg, *Nodes(2));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r["nvidia.com/gpu"]->Devices().size(), 2u);
}

TEST(TimeSlicingTest, MigDevicesCanBeTimeSliced) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kMixed;
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/mig-1g.10gb", 3)};
  auto r = Build(A100Mig(), cfg, *MigNodes());
  EXPECT_THAT(Ids(*r["nvidia.com/mig-1g.10gb"]),
              ElementsAre("MIG-aaaa::0", "MIG-aaaa::1", "MIG-aaaa::2", "MIG-bbbb::0", "MIG-bbbb::1",
                          "MIG-bbbb::2"));
}

TEST(TimeSlicingTest, FailRequestsGreaterThanOne) {
  config::Config cfg;
  cfg.sharing.time_slicing.fail_requests_greater_than_one = true;
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/gpu", 2)};
  auto r = Build(t::Blank(2), cfg, *Nodes(2));
  const auto& gpu = *r["nvidia.com/gpu"];
  EXPECT_TRUE(gpu.Allocate({t::FakeUuid(0) + "::0"}).ok());
  auto two = gpu.Allocate({t::FakeUuid(0) + "::0", t::FakeUuid(1) + "::0"});
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(two.status().message()),
              HasSubstr("asked for 2 devices of resource nvidia.com/gpu, which is shared by "
                        "time-slicing with failRequestsGreaterThanOne"));
}

// Replicas on 4 GPUs x 4; `taken` are in use. Returns the preferred choice.
std::vector<std::string> Prefer(config::AllocationPolicy policy,
                                const std::vector<std::string>& taken, int size,
                                const std::vector<std::string>& must = {}) {
  config::Config cfg;
  cfg.device_id_strategy = config::DeviceIdStrategy::kIndex;
  cfg.sharing.allocation_policy = policy;
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/gpu", 4)};
  auto r = Build(t::ShortIds(t::Blank(4)), cfg, *Nodes(4));
  std::vector<std::string> available;
  for (const std::string& id : Ids(*r["nvidia.com/gpu"])) {
    if (std::find(taken.begin(), taken.end(), id) == taken.end()) available.push_back(id);
  }
  auto got = r["nvidia.com/gpu"]->PreferredAllocation(available, must, size);
  EXPECT_TRUE(got.ok()) << got.status();
  return got.ok() ? *got : std::vector<std::string>{};
}

TEST(ReplicaPolicyTest, DistributedSpreadsOverTheLeastUsedGpus) {
  using P = config::AllocationPolicy;
  EXPECT_THAT(Prefer(P::kDistributed, {}, 1), ElementsAre("0::0"));
  EXPECT_THAT(Prefer(P::kDistributed, {}, 4), ElementsAre("0::0", "1::0", "2::0", "3::0"));
  // GPUs 0 and 2 are busy: the new replicas go to 1 and 3.
  EXPECT_THAT(Prefer(P::kDistributed, {"0::0", "2::1"}, 2), ElementsAre("1::0", "3::0"));
  EXPECT_THAT(Prefer(P::kDistributed, {}, 2, {"2::3"}), ElementsAre("0::0", "2::3"));
}

TEST(ReplicaPolicyTest, PackedFillsTheMostUsedGpuFirst) {
  using P = config::AllocationPolicy;
  EXPECT_THAT(Prefer(P::kPacked, {}, 3), ElementsAre("0::0", "0::1", "0::2"));
  EXPECT_THAT(Prefer(P::kPacked, {"2::0"}, 2), ElementsAre("2::1", "2::2"));
  EXPECT_THAT(Prefer(P::kPacked, {"2::0", "2::1", "2::2"}, 2), ElementsAre("0::0", "2::3"));
}

TEST(MpsTest, ReplicasCarryLimitsAndTheClientGetsThem) {
  config::Config cfg;
  cfg.sharing.mps.root = "/run/mps";
  cfg.sharing.mps.resources = {Shared("nvidia.com/gpu", 4)};
  nvml::Inventory inv = t::Blank(2);
  for (auto& g : inv.gpus) {
    g.memory_bytes = 80 * kGiB;
    g.cuda_compute_major = 9;
  }
  auto r = Build(inv, cfg, *Nodes(2));
  const auto& gpu = *r["nvidia.com/gpu"];
  ASSERT_EQ(gpu.Devices().size(), 8u);
  auto a = gpu.Allocate({t::FakeUuid(1) + "::2"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->envs["NVIDIA_VISIBLE_DEVICES"], t::FakeUuid(1));
  EXPECT_EQ(a->envs["CUDA_MPS_PIPE_DIRECTORY"], "/run/nvidia-mps");
  EXPECT_EQ(a->envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=20480M");
  EXPECT_EQ(a->envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "25");
  ASSERT_EQ(a->mounts.size(), 2u);
  EXPECT_EQ(a->mounts[0].host_path, "/run/mps/" + t::FakeUuid(1) + "/pipe");
  EXPECT_EQ(a->mounts[0].container_path, "/run/nvidia-mps");
  EXPECT_FALSE(a->mounts[0].read_only);
  EXPECT_EQ(a->mounts[1].host_path, "/run/mps/shm");
  EXPECT_EQ(a->mounts[1].container_path, "/dev/shm");
  // Two replicas of one GPU: twice the limits.
  auto two = gpu.Allocate({t::FakeUuid(0) + "::0", t::FakeUuid(0) + "::1"});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=40960M");
  EXPECT_EQ(two->envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "50");
  // Replicas of two GPUs cannot share one pipe directory.
  auto across = gpu.Allocate({t::FakeUuid(0) + "::0", t::FakeUuid(1) + "::0"});
  ASSERT_FALSE(across.ok());
  EXPECT_THAT(std::string(across.status().message()),
              HasSubstr("are on different GPUs; an MPS client uses one GPU's MPS server"));

  EXPECT_THAT(
      MpsGpus({r["nvidia.com/gpu"]}),
      ElementsAre(
          MpsGpu{t::FakeUuid(0), 0, "nvidia.com/gpu", 4, 20480, 25,
                 "/run/mps/" + t::FakeUuid(0) + "/pipe", "/run/mps/" + t::FakeUuid(0) + "/log"},
          MpsGpu{t::FakeUuid(1), 1, "nvidia.com/gpu", 4, 20480, 25,
                 "/run/mps/" + t::FakeUuid(1) + "/pipe", "/run/mps/" + t::FakeUuid(1) + "/log"}));
}

TEST(MpsTest, ExplicitLimitsAndTheirErrors) {
  nvml::Inventory inv = t::Blank(1);
  inv.gpus[0].memory_bytes = 16 * kGiB;
  inv.gpus[0].cuda_compute_major = 7;
  inv.gpus[0].cuda_compute_minor = 0;
  inv.gpus[0].name = "Tesla V100";
  config::Config cfg;
  config::SharedResource s = Shared("nvidia.com/gpu", 2);
  s.memory_limit_bytes = 4 * kGiB;
  s.active_thread_percentage = 30;
  cfg.sharing.mps.resources = {s};
  auto r = Build(inv, cfg, *Nodes(1));
  auto a = r["nvidia.com/gpu"]->Allocate({t::FakeUuid(0) + "::1"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=4096M");
  EXPECT_EQ(a->envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "30");

  s.memory_limit_bytes = 10 * kGiB;
  cfg.sharing.mps.resources = {s};
  EXPECT_THAT(
      BuildError(inv, cfg, *Nodes(1)),
      HasSubstr("2 replicas of 10240 MiB need 20480 MiB, more than the 16384 MiB of GPU 0"));
  s.memory_limit_bytes = 0;
  s.replicas = 17;
  cfg.sharing.mps.resources = {s};
  EXPECT_THAT(BuildError(inv, cfg, *Nodes(1)),
              HasSubstr("17 replicas of GPU 0 (Tesla V100, compute capability 7.0), but its MPS "
                        "server takes at most 16 clients"));
}

TEST(MpsTest, MigDevicesCannotBeSharedByMps) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kSingle;
  nvml::Inventory inv = A100Mig();
  inv.gpus[1].mig_devices.pop_back();
  inv.gpus[0].mig_enabled = true;
  inv.gpus[0].mig_devices = {nvml::MigDevice{0, "MIG-dddd", 1, 0, "1g.10gb", 10 * kGiB}};
  auto fs = MigNodes();
  fs->AddFile(kMigMinorsPath,
              "gpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n"
              "gpu1/gi1/access 147\ngpu1/gi1/ci0/access 148\n"
              "gpu1/gi2/access 156\ngpu1/gi2/ci0/access 157\n");
  cfg.sharing.mps.resources = {Shared("nvidia.com/gpu", 2)};
  EXPECT_THAT(BuildError(inv, cfg, *fs),
              HasSubstr("sharing.mps.resources[0]: MIG-dddd is a MIG device; MPS cannot share MIG "
                        "devices"));
}

// --- resources.gpus / resources.mig patterns (flags.plugin.useResourcePatterns) ---

TEST(ResourcePatternsTest, GpusByProductAndMigByProfileWithSharingOnTheNewName) {
  nvml::Inventory inv = A100Mig();  // GPU 0 full, GPU 1 in MIG mode
  inv.gpus[0].name = "NVIDIA A100-SXM4-80GB";
  inv.gpus.push_back(inv.gpus[0]);
  inv.gpus[2].index = 2;
  inv.gpus[2].minor = 2;
  inv.gpus[2].uuid = t::FakeUuid(2);
  inv.gpus[2].name = "Tesla T4";
  inv.links.assign(3, std::vector<nvml::Link>(3));
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kMixed;
  cfg.use_resource_patterns = true;
  cfg.gpu_patterns = {{"*A100*", "nvidia.com/a100"}};  // the T4 matches none: nvidia.com/gpu
  cfg.mig_patterns = {{"1g.*", "nvidia.com/mig-small"}};
  cfg.sharing.time_slicing.resources = {Shared("nvidia.com/a100", 2)};
  auto fs = MigNodes();
  fs->AddCharDevice("/dev/nvidia2", 195, 2);
  auto r = Build(inv, cfg, *fs);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_THAT(Ids(*r["nvidia.com/a100"]),
              ElementsAre(t::FakeUuid(0) + "::0", t::FakeUuid(0) + "::1"));
  EXPECT_THAT(Ids(*r["nvidia.com/gpu"]), ElementsAre(t::FakeUuid(2)));
  EXPECT_THAT(Ids(*r["nvidia.com/mig-small"]), ElementsAre("MIG-aaaa", "MIG-bbbb"));
  EXPECT_THAT(Ids(*r["nvidia.com/mig-3g.40gb"]), ElementsAre("MIG-cccc"));

  // Off (the default, as NVIDIA's plugin): the patterns change nothing.
  cfg.use_resource_patterns = false;
  cfg.sharing.time_slicing.resources.clear();
  r = Build(inv, cfg, *fs);
  EXPECT_EQ(r.count("nvidia.com/a100"), 0u);
  EXPECT_EQ(r["nvidia.com/gpu"]->Devices().size(), 2u);
}

}  // namespace
}  // namespace gdp::resources
