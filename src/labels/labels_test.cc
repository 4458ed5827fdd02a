#include "src/labels/labels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gdp::labels {
namespace {

using ::testing::Contains;
using ::testing::IsEmpty;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;

constexpr uint64_t kMiB = 1024 * 1024;

nvml::Gpu MakeGpu(unsigned index, const char* name, int major, int minor, uint64_t mib) {
  nvml::Gpu g;
  g.index = index;
  g.uuid = "GPU-" + std::to_string(index);
  g.name = name;
  g.cuda_compute_major = major;
  g.cuda_compute_minor = minor;
  g.memory_bytes = mib * kMiB;
  return g;
}

nvml::Inventory T4x4() {
  nvml::Inventory inv;
  inv.driver_version = "535.183.01";
  inv.cuda_driver_version = 12020;
  for (unsigned i = 0; i < 4; ++i) inv.gpus.push_back(MakeGpu(i, "Tesla T4", 7, 5, 15360));
  return inv;
}

nvml::Inventory H100x8() {
  nvml::Inventory inv;
  inv.driver_version = "550.54.15";
  inv.cuda_driver_version = 12040;
  for (unsigned i = 0; i < 8; ++i) {
    nvml::Gpu g = MakeGpu(i, "NVIDIA H100 80GB HBM3", 9, 0, 81559);
    g.mig_capable = true;
    inv.gpus.push_back(g);
  }
  return inv;
}

// Two A100 40GB with MIG on: GPU 0 as 2x 3g.20gb, GPU 1 as 7x 1g.5gb.
nvml::Inventory A100Mig() {
  nvml::Inventory inv;
  inv.driver_version = "535.104.05";
  inv.cuda_driver_version = 12020;
  for (unsigned i = 0; i < 2; ++i) {
    nvml::Gpu g = MakeGpu(i, "NVIDIA A100-SXM4-40GB", 8, 0, 40960);
    g.mig_capable = true;
    g.mig_enabled = true;
    const bool big = i == 0;
    for (unsigned m = 0; m < (big ? 2u : 7u); ++m) {
      nvml::MigDevice d;
      d.index = m;
      d.uuid = "MIG-" + std::to_string(i) + "-" + std::to_string(m);
      d.profile = big ? "3g.20gb" : "1g.5gb";
      d.memory_bytes = (big ? 19968 : 4864) * kMiB;
      d.multiprocessor_count = big ? 42 : 14;
      d.gpu_instance_slices = big ? 3 : 1;
      d.compute_instance_slices = big ? 3 : 1;
      g.mig_devices.push_back(d);
    }
    inv.gpus.push_back(g);
  }
  return inv;
}

TEST(ComputeLabelsTest, T4NodeHasTheWholeGfdSet) {
  config::Config cfg;
  Labels l = ComputeLabels(T4x4(), cfg, NodeFacts{"PowerEdge R740", {}, "0x030200\n"});
  EXPECT_EQ(l, (Labels{
                   {"nvidia.com/cuda.driver.major", "535"},
                   {"nvidia.com/cuda.driver.minor", "183"},
                   {"nvidia.com/cuda.driver.rev", "01"},
                   {"nvidia.com/cuda.runtime.major", "12"},
                   {"nvidia.com/cuda.runtime.minor", "2"},
                   {"nvidia.com/gpu.mode", "compute"},
                   {"nvidia.com/vgpu.present", "false"},
                   {"nvidia.com/cuda.driver-version.full", "535.183.01"},
                   {"nvidia.com/cuda.driver-version.major", "535"},
                   {"nvidia.com/cuda.driver-version.minor", "183"},
                   {"nvidia.com/cuda.driver-version.revision", "01"},
                   {"nvidia.com/cuda.runtime-version.full", "12.2"},
                   {"nvidia.com/cuda.runtime-version.major", "12"},
                   {"nvidia.com/cuda.runtime-version.minor", "2"},
                   {"nvidia.com/gpu.compute.major", "7"},
                   {"nvidia.com/gpu.compute.minor", "5"},
                   {"nvidia.com/gpu.count", "4"},
                   {"nvidia.com/gpu.family", "turing"},
                   {"nvidia.com/gpu.machine", "PowerEdge-R740"},
                   {"nvidia.com/gpu.memory", "15360"},
                   {"nvidia.com/gpu.product", "Tesla-T4"},
                   {"nvidia.com/gpu.replicas", "1"},
                   {"nvidia.com/gpu.sharing-strategy", "none"},
                   {"nvidia.com/gpu.unhealthy-count", "0"},
                   {"nvidia.com/mig.capable", "false"},
                   {"nvidia.com/mig.strategy", "none"},
                   {"nvidia.com/mps.capable", "false"},
               }));
}

TEST(ComputeLabelsTest, H100NodeWithAnUnhealthyGpu) {
  config::Config cfg;
  Labels l = ComputeLabels(H100x8(), cfg, NodeFacts{"", {"GPU-3", "GPU-not-here"}});
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.count", "8")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.unhealthy-count", "1")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.family", "hopper")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.memory", "81559")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/mig.capable", "true")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/cuda.runtime-version.full", "12.4")));
  // GFD writes unknown, not nothing, when the machine type cannot be read.
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.machine", "unknown")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.mode", "unknown")));
}

// GFD's 25 keys on every node (FACTS-live-node.md section 6); the MIG keys
// come on top with single and mixed.
const char* const kGfdKeys[] = {"cuda.driver-version.full",
                                "cuda.driver-version.major",
                                "cuda.driver-version.minor",
                                "cuda.driver-version.revision",
                                "cuda.driver.major",
                                "cuda.driver.minor",
                                "cuda.driver.rev",
                                "cuda.runtime-version.full",
                                "cuda.runtime-version.major",
                                "cuda.runtime-version.minor",
                                "cuda.runtime.major",
                                "cuda.runtime.minor",
                                "gpu.compute.major",
                                "gpu.compute.minor",
                                "gpu.count",
                                "gpu.family",
                                "gpu.machine",
                                "gpu.memory",
                                "gpu.mode",
                                "gpu.product",
                                "gpu.replicas",
                                "gpu.sharing-strategy",
                                "mig.capable",
                                "mps.capable",
                                "vgpu.present"};

TEST(ComputeLabelsTest, GfdsWholeKeySetOnEveryKindOfNode) {
  struct Case {
    const char* name;
    nvml::Inventory inv;
    config::MigStrategy mig;
    std::vector<std::string> more;  // keys GFD adds for this case
  };
  const std::vector<Case> cases = {
      {"dgx-h100", H100x8(), config::MigStrategy::kNone, {}},
      {"t4x4", T4x4(), config::MigStrategy::kNone, {}},
      {"a100-mig single",
       A100Mig(),
       config::MigStrategy::kSingle,
       {"mig.strategy", "gpu.multiprocessors", "gpu.slices.gi", "gpu.slices.ci"}},
      {"a100-mig mixed",
       A100Mig(),
       config::MigStrategy::kMixed,
       {"mig.strategy", "mig-1g.5gb.count", "mig-1g.5gb.memory", "mig-1g.5gb.multiprocessors",
        "mig-1g.5gb.slices.gi", "mig-1g.5gb.slices.ci", "mig-3g.20gb.count"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    config::Config cfg;
    cfg.mig_strategy = c.mig;
    const Labels l = ComputeLabels(c.inv, cfg, NodeFacts{"", {}, ""});
    EXPECT_EQ(std::size(kGfdKeys), 25u);
    for (const char* key : kGfdKeys) {
      EXPECT_THAT(l, Contains(Key(std::string("nvidia.com/") + key)));
    }
    for (const std::string& key : c.more) EXPECT_THAT(l, Contains(Key("nvidia.com/" + key)));
  }
}

TEST(GpuModeOfTest, FromThePciClass) {
  EXPECT_EQ(GpuModeOf("0x030200\n"), "compute");
  EXPECT_EQ(GpuModeOf("0x030000"), "display");
  EXPECT_EQ(GpuModeOf("0x068000"), "unknown");
  EXPECT_EQ(GpuModeOf(""), "unknown");
}

TEST(ComputeLabelsTest, AVgpuGuestSaysSo) {
  nvml::Inventory inv = T4x4();
  inv.gpus[2].vgpu_guest = true;
  EXPECT_THAT(ComputeLabels(inv, config::Config{}, {}),
              Contains(Pair("nvidia.com/vgpu.present", "true")));
}

TEST(ComputeLabelsTest, MigMixedLabelsPerProfile) {
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kMixed;
  Labels l = ComputeLabels(A100Mig(), cfg, {});
  EXPECT_THAT(l, Contains(Pair("nvidia.com/mig.strategy", "mixed")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.count", "0")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB")));
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"mig-3g.20gb.count", "2"},
           {"mig-3g.20gb.memory", "19968"},
           {"mig-3g.20gb.multiprocessors", "42"},
           {"mig-3g.20gb.slices.gi", "3"},
           {"mig-3g.20gb.slices.ci", "3"},
           {"mig-1g.5gb.count", "7"},
           {"mig-1g.5gb.memory", "4864"},
           {"mig-1g.5gb.multiprocessors", "14"},
           {"mig-1g.5gb.slices.gi", "1"},
       }) {
    EXPECT_THAT(l, Contains(Pair("nvidia.com/" + k, v)));
  }
}

TEST(ComputeLabelsTest, MigSingleDescribesTheMigDevices) {
  nvml::Inventory inv = A100Mig();
  inv.gpus[0].mig_devices = inv.gpus[1].mig_devices;  // one profile everywhere
  config::Config cfg;
  cfg.mig_strategy = config::MigStrategy::kSingle;
  Labels l = ComputeLabels(inv, cfg, {});
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.count", "14")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.memory", "4864")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.multiprocessors", "14")));
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.slices.gi", "1")));
  EXPECT_THAT(l, Not(Contains(Key("nvidia.com/mig-1g.5gb.count"))));
}

TEST(ComputeLabelsTest, MigNoneCountsFullGpus) {
  config::Config cfg;
  Labels l = ComputeLabels(A100Mig(), cfg, {});
  EXPECT_THAT(l, Contains(Pair("nvidia.com/gpu.count", "2")));
  EXPECT_THAT(l, Not(Contains(Key("nvidia.com/mig-1g.5gb.count"))));
}

TEST(ComputeLabelsTest, NoGpusNoLabels) {
  nvml::Inventory inv;
  inv.driver_version = "550.54.15";
  EXPECT_THAT(ComputeLabels(inv, config::Config{}, {}), IsEmpty());
}

TEST(ComputeLabelsTest, UnknownCudaVersionLeavesRuntimeLabelsOut) {
  nvml::Inventory inv = T4x4();
  inv.cuda_driver_version = 0;
  Labels l = ComputeLabels(inv, config::Config{}, {});
  EXPECT_THAT(l, Not(Contains(Key("nvidia.com/cuda.runtime-version.full"))));
  EXPECT_THAT(l, Contains(Key("nvidia.com/cuda.driver-version.full")));
}

TEST(SanitizeLabelValueTest, Table) {
  struct Case {
    std::string in;
    std::string out;
  };
  for (const Case& c : std::vector<Case>{
           {"Tesla T4", "Tesla-T4"},
           {"NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"},
           {"  (weird) name/x ", "weird--name-x"},
           {"", ""},
           {"---", ""},
           {"a_b.c", "a_b.c"},
           {std::string(70, 'x'), std::string(63, 'x')},
       }) {
    EXPECT_EQ(SanitizeLabelValue(c.in), c.out) << c.in;
  }
}

TEST(FamilyOfTest, Table) {
  EXPECT_EQ(FamilyOf(6, 0), "pascal");
  EXPECT_EQ(FamilyOf(7, 0), "volta");
  EXPECT_EQ(FamilyOf(7, 5), "turing");
  EXPECT_EQ(FamilyOf(8, 0), "ampere");
  EXPECT_EQ(FamilyOf(8, 6), "ampere");
  EXPECT_EQ(FamilyOf(8, 9), "ada-lovelace");
  EXPECT_EQ(FamilyOf(9, 0), "hopper");
  EXPECT_EQ(FamilyOf(10, 0), "blackwell");
  EXPECT_EQ(FamilyOf(0, 0), "undefined");
}

TEST(FeatureFileTest, SortedKeyValueLines) {
  EXPECT_EQ(FeatureFile({{"nvidia.com/b", "2"}, {"nvidia.com/a", "1"}}),
            "nvidia.com/a=1\nnvidia.com/b=2\n");
  EXPECT_EQ(FeatureFile({}), "");
}

TEST(SharingOfTest, FollowsTheSharingOfTheGpuResource) {
  Sharing s = SharingOf(config::Config{});
  EXPECT_EQ(s.strategy, "none");
  EXPECT_EQ(s.replicas, 1);
  EXPECT_FALSE(s.mps);

  config::Config ts;
  config::SharedResource mig;
  mig.name = "nvidia.com/mig-1g.10gb";
  mig.replicas = 7;
  config::SharedResource gpu;
  gpu.name = "nvidia.com/gpu";
  gpu.replicas = 4;
  ts.sharing.time_slicing.resources = {mig, gpu};
  s = SharingOf(ts);
  EXPECT_EQ(s.strategy, "time-slicing");
  EXPECT_EQ(s.replicas, 4);
  EXPECT_FALSE(s.mps);

  config::Config mps;
  gpu.replicas = 2;
  mps.sharing.mps.resources = {gpu};
  s = SharingOf(mps);
  EXPECT_EQ(s.strategy, "mps");
  EXPECT_EQ(s.replicas, 2);
  EXPECT_TRUE(s.mps);
}

}  // namespace
}  // namespace gdp::labels
