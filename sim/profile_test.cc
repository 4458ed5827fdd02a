// Tests of profile parsing: the built-in profiles hold the real products'
// values, and bad profiles are rejected with the file and field named.
#include "sim/profile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nvml.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "sim/root.h"

namespace gdp::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProfileTest, EveryBuiltinProfileParses) {
  auto names = BuiltinProfileNames();
  EXPECT_THAT(names, ElementsAre("a100-mig", "dgx-a100", "dgx-h100", "geforce", "h100-mig", "mixed",
                                 "t4x4"));
  for (const auto& name : names) {
    auto p = BuiltinProfile(name);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->name, name);
    EXPECT_FALSE(p->gpus.empty());
  }
}

TEST(ProfileTest, DgxH100MatchesTheRealMachine) {
  auto p = BuiltinProfile("dgx-h100");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->gpus.size(), 8u);
  const unsigned buses[] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};
  for (unsigned i = 0; i < 8; ++i) {
    const GpuSpec& g = p->gpus[i];
    EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(g.architecture, unsigned{NVML_DEVICE_ARCH_HOPPER});
    EXPECT_EQ(g.cc_major, 9);
    EXPECT_EQ(g.cc_minor, 0);
    EXPECT_EQ(g.memory_mib, 81559u);
    EXPECT_EQ(g.reserved_mib, 480u);  // nvidia-smi -q on a real H100, driver 580
    EXPECT_EQ(g.pci_device_id, 0x233010DEu);
    EXPECT_EQ(g.nvlinks, 18u);
    EXPECT_EQ(g.bus, buses[i]);
    EXPECT_EQ(g.numa_node, i < 4 ? 0u : 1u);
    EXPECT_TRUE(g.ecc);
    EXPECT_TRUE(g.mig_capable);
    EXPECT_FALSE(g.mig_enabled);
    EXPECT_EQ(g.uuid.size(), 40u) << g.uuid;
  }
  EXPECT_EQ(p->driver_version, "550.54.15");
  EXPECT_EQ(p->cuda_driver_version, 12040);
  EXPECT_EQ(p->NvmlVersion(), "12.550.54.15");
}

TEST(ProfileTest, OtherProfilesHoldTheirProducts) {
  struct Case {
    std::string profile, name;
    size_t gpus;
    uint64_t memory_mib;
    int cc_major, cc_minor;
    unsigned nvlinks;
    bool ecc, mig_capable;
  };
  const Case cases[] = {
      {"dgx-a100", "NVIDIA A100-SXM4-80GB", 8, 81920, 8, 0, 12, true, true},
      {"t4x4", "Tesla T4", 4, 15360, 7, 5, 0, true, false},
      {"geforce", "NVIDIA GeForce RTX 4090", 2, 24564, 8, 9, 0, false, false},
      {"a100-mig", "NVIDIA A100-SXM4-80GB", 4, 81920, 8, 0, 12, true, true},
      {"h100-mig", "NVIDIA H100 80GB HBM3", 2, 81559, 9, 0, 18, true, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.profile);
    auto p = BuiltinProfile(c.profile);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_EQ(p->gpus.size(), c.gpus);
    for (const auto& g : p->gpus) {
      EXPECT_EQ(g.name, c.name);
      EXPECT_EQ(g.memory_mib, c.memory_mib);
      EXPECT_EQ(g.cc_major, c.cc_major);
      EXPECT_EQ(g.cc_minor, c.cc_minor);
      EXPECT_EQ(g.nvlinks, c.nvlinks);
      EXPECT_EQ(g.ecc, c.ecc);
      EXPECT_EQ(g.mig_capable, c.mig_capable);
    }
  }
}

TEST(ProfileTest, T4x4HasTwoGpusPerNumaNodeAndSwitch) {
  auto p = BuiltinProfile("t4x4");
  ASSERT_TRUE(p.ok());
  for (unsigned i = 0; i < 4; ++i) {
    EXPECT_EQ(p->gpus[i].numa_node, i / 2);
    EXPECT_EQ(p->gpus[i].pcie_switch, static_cast<int>(i / 2));
  }
}

TEST(ProfileTest, MigLayouts) {
  auto a = BuiltinProfile("a100-mig");
  ASSERT_TRUE(a.ok());
  std::set<std::string> seen;
  for (const auto& g : a->gpus) {
    EXPECT_TRUE(g.mig_enabled);
    unsigned slices = 0;
    for (const auto& m : g.mig_devices) {
      seen.insert(m.profile);
      slices += m.slices;
      EXPECT_EQ(m.uuid.rfind("MIG-", 0), 0u);
    }
    EXPECT_LE(slices, 7u);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"1g.10gb", "2g.20gb", "3g.40gb"}));
  auto mixed = BuiltinProfile("mixed");
  ASSERT_TRUE(mixed.ok());
  int with = 0, without = 0;
  for (const auto& g : mixed->gpus) (g.mig_enabled ? with : without)++;
  EXPECT_GT(with, 0);
  EXPECT_GT(without, 0);
}

constexpr char kMinimal[] = R"(
name: tiny
driverVersion: "550.54.15"
cudaDriverVersion: 12040
models:
  t4: {name: Tesla T4, brand: nvidia, architecture: turing, computeCapability: "7.5",
       memoryMiB: 15360, pciDeviceId: 0x1EB810DE, multiprocessors: 40, powerLimitW: 70,
       idlePowerW: 9, maxSmClockMHz: 1590, maxMemClockMHz: 5001}
gpus:
  - {model: t4, busId: "0000:3b:00.0", numaNode: 0}
)";

TEST(ProfileTest, MinimalProfileParses) {
  auto p = ParseProfile(kMinimal, "test.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->gpus[0].pci_device_id, 0x1EB810DEu);
  EXPECT_EQ(p->gpus[0].bus, 0x3bu);
  EXPECT_EQ(p->gpus[0].reserved_mib, 0u);  // optional
  EXPECT_EQ(p->gpus[0].compute_mode, 0u);  // optional: DEFAULT
}

TEST(ProfileTest, ComputeModeByNvidiaSmiName) {
  for (auto [name, mode] : {std::pair{"DEFAULT", 0u}, std::pair{"PROHIBITED", 2u},
                            std::pair{"EXCLUSIVE_PROCESS", 3u}}) {
    std::string yaml = kMinimal;
    yaml.replace(yaml.find("numaNode: 0}"), 12,
                 std::string("numaNode: 0, computeMode: ") + name + "}");
    auto p = ParseProfile(yaml, "test.yaml");
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->gpus[0].compute_mode, mode) << name;
  }
}

TEST(ProfileTest, BadProfilesNameTheFileAndField) {
  struct Case {
    std::string from, to, want;
  };
  const Case cases[] = {
      {"numaNode: 0}", "numaNode: 0", "malformed YAML"},
      {"memoryMiB: 15360", "memoryMiB: lots", "field 'models.t4.memoryMiB'"},
      {"memoryMiB: 15360", "memoryMiB: 15360, reservedMiB: 15360", "field 'models.t4.reservedMiB'"},
      {"memoryMiB: 15360", "memoryMiB: 15360, reservedMiB: -1", "models.t4.reservedMiB"},
      {"architecture: turing", "architecture: fermi", "models.t4.architecture"},
      {"busId: \"0000:3b:00.0\"", "busId: \"3b\"", "gpus[0].busId"},
      {"model: t4,", "model: t5,", "unknown model 't5'"},
      {"numaNode: 0}", "numaNode: 0, colour: red}", "'gpus[0].colour' is not a known field"},
      {"numaNode: 0}", "numaNode: 0, mig: [1g.10gb]}", "not MIG-capable"},
      {"numaNode: 0}", "numaNode: 0, computeMode: SHARED}", "gpus[0].computeMode"},
      {"driverVersion: \"550.54.15\"", "driverVersion: \"new\"", "driverVersion"},
      {"cudaDriverVersion: 12040", "cudaDriverVersion: 12", "cudaDriverVersion"},
      {"name: tiny\n", "", "field 'name' is required"},
  };
  for (const auto& c : cases) {
    std::string yaml = kMinimal;
    auto pos = yaml.find(c.from);
    ASSERT_NE(pos, std::string::npos) << c.from;
    yaml.replace(pos, c.from.size(), c.to);
    auto p = ParseProfile(yaml, "bad.yaml");
    ASSERT_FALSE(p.ok()) << c.want;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("bad.yaml")) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.want)) << p.status();
  }
}

TEST(ProfileTest, UnknownProfileListsTheBuiltins) {
  auto p = LoadProfile("dgx-h200");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("unknown profile 'dgx-h200'"));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("dgx-h100"));
}

TEST(ProfileTest, LoadsFromAPath) {
  char path[] = "/tmp/gpusim-profile-XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, kMinimal, sizeof kMinimal - 1), static_cast<ssize_t>(sizeof kMinimal - 1));
  close(fd);
  auto p = LoadProfile(path);
  unlink(path);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "tiny");
  auto missing = LoadProfile("/nonexistent/p.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/p.yaml"));
}

TEST(RootTest, RootFromLibraryPath) {
  EXPECT_EQ(RootFromLibraryPath("/x/y/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"), "/x/y");
  EXPECT_EQ(RootFromLibraryPath("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"), "/");
  EXPECT_EQ(RootFromLibraryPath("/build/sim/libnvidia-ml.so.1"), "");
}

}  // namespace
}  // namespace gdp::sim
