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

TEST(ProfileTest, GpusAreInPciBusOrderWithMinorsAndSlotsAsListed) {
  std::string yaml = kMinimal;
  yaml += "  - {model: t4, busId: \"0000:1a:00.0\", numaNode: 0}\n";
  auto p = ParseProfile(yaml, "test.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->gpus.size(), 2u);
  EXPECT_EQ(p->gpus[0].bus, 0x1au);  // listed second, first on the bus
  EXPECT_EQ(p->gpus[0].minor, 1u);
  EXPECT_EQ(p->gpus[0].slot, 1u);
  EXPECT_EQ(p->gpus[1].bus, 0x3bu);
  EXPECT_EQ(p->gpus[1].minor, 0u);
  EXPECT_EQ(p->gpus[1].slot, 0u);
  EXPECT_EQ(p->gpus[0].model, "t4");
}

TEST(ProfileTest, LayoutRoundTripsEveryBuiltinProfile) {
  for (const auto& name : BuiltinProfileNames()) {
    SCOPED_TRACE(name);
    auto base = ProfileText(name);
    ASSERT_TRUE(base.ok()) << base.status();
    auto p = ParseProfile(*base, name);
    ASSERT_TRUE(p.ok()) << p.status();
    // Identities that differ from the derived ones must survive.
    p->gpus[0].serial = "1000000000042";
    p->gpus[0].minor = 40;
    p->gpus[0].slot = 41;
    p->gpus[0].uuid = RandomUuid("GPU");
    if (p->gpus[0].mig_capable) {
      p->gpus[0].mig_enabled = true;
      p->gpus[0].mig_devices.clear();  // MIG on, no devices
    }
    if (p->gpus.back().mig_enabled && !p->gpus.back().mig_devices.empty()) {
      p->gpus.back().mig_devices[0].uuid = RandomUuid("MIG");
    }
    auto q = ApplyLayout(*base, LayoutYaml(*p), "layout");
    ASSERT_TRUE(q.ok()) << q.status() << "\n" << LayoutYaml(*p);
    ASSERT_EQ(q->gpus.size(), p->gpus.size());
    for (size_t i = 0; i < p->gpus.size(); ++i) {
      const GpuSpec &a = p->gpus[i], &b = q->gpus[i];
      EXPECT_EQ(b.uuid, a.uuid);
      EXPECT_EQ(b.serial, a.serial);
      EXPECT_EQ(b.minor, a.minor);
      EXPECT_EQ(b.slot, a.slot);
      EXPECT_EQ(BusIdString(b), BusIdString(a));
      EXPECT_EQ(b.numa_node, a.numa_node);
      EXPECT_EQ(b.pcie_switch, a.pcie_switch);
      EXPECT_EQ(b.compute_mode, a.compute_mode);
      EXPECT_EQ(b.name, a.name);
      EXPECT_EQ(b.nvswitch_bus_ids, a.nvswitch_bus_ids);
      EXPECT_EQ(b.mig_enabled, a.mig_enabled);
      ASSERT_EQ(b.mig_devices.size(), a.mig_devices.size());
      for (size_t j = 0; j < a.mig_devices.size(); ++j) {
        EXPECT_EQ(b.mig_devices[j].uuid, a.mig_devices[j].uuid);
        EXPECT_EQ(b.mig_devices[j].profile, a.mig_devices[j].profile);
        EXPECT_EQ(b.mig_devices[j].gpu_instance_id, j + 1);
      }
    }
    EXPECT_EQ(q->driver_version, p->driver_version);
  }
  // A layout may leave a node without GPUs; a profile may not.
  auto base = ProfileText("t4x4");
  ASSERT_TRUE(base.ok());
  auto empty = ApplyLayout(*base, "gpus: []\n", "layout");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->gpus.empty());
  auto bad = ApplyLayout(*base, "gpus: []\nextra: 1\n", "layout");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'extra' is not a known field"));
}

TEST(ProfileTest, PciGpuIdIsTheDriversEncoding) {
  GpuSpec g;
  g.domain = 0x10002;
  g.bus = 0x3b;
  g.device = 0x1;
  EXPECT_EQ(PciGpuId(g), 0x00023b01u);
  EXPECT_EQ(BusIdString(g), "10002:3b:01.0");
}

TEST(ProfileTest, BadLayoutFieldsNameTheField) {
  constexpr char kMigModel[] = R"(
name: tiny
driverVersion: "550.54.15"
cudaDriverVersion: 12040
models:
  h: {name: H, brand: nvidia, architecture: hopper, computeCapability: "9.0",
      memoryMiB: 81559, pciDeviceId: 0x233010DE, multiprocessors: 132, powerLimitW: 700,
      idlePowerW: 72, maxSmClockMHz: 1980, maxMemClockMHz: 2619,
      mig: {maxDevices: 7, profiles: {1g.10gb: {slices: 1, multiprocessors: 16, memoryMiB: 9984},
            1g.20gb: {slices: 1, multiprocessors: 26, memoryMiB: 20096},
            7g.80gb: {slices: 7, multiprocessors: 132, memoryMiB: 80896}}}}
gpus:
  - {model: h, busId: "0000:18:00.0", numaNode: 0}
  - {model: h, busId: "0000:2a:00.0", numaNode: 0}
)";
  ASSERT_TRUE(ParseProfile(kMigModel, "ok.yaml").ok());
  struct Case {
    std::string from, to, want;
  };
  const Case cases[] = {
      {"busId: \"0000:2a:00.0\", numaNode: 0}", "busId: \"0000:2a:00.0\", numaNode: 0, minor: 0}",
       "repeats another GPU's minor or stateSlot"},
      {"busId: \"0000:2a:00.0\", numaNode: 0}",
       "busId: \"0000:2a:00.0\", numaNode: 0, stateSlot: 0}",
       "repeats another GPU's minor or stateSlot"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, stateSlot: 64}\n  - {model: h, busId: \"0000:2a", "gpus[0].stateSlot"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, minor: 254}\n  - {model: h, busId: \"0000:2a", "gpus[0].minor"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, mig: [{profile: 1g.10gb, uuid: GPU-x}]}\n  - {model: h, busId: \"0000:2a",
       "gpus[0].mig[0].uuid' must start with MIG-"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, mig: [{profile: 1g.10gb, colour: red}]}\n  - {model: h, busId: \"0000:2a",
       "gpus[0].mig[0].colour' is not a known field"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, mig: [{profile: 1g.10gb, uuid: MIG-a}, {profile: 1g.10gb, uuid: MIG-a}]}\n"
       "  - {model: h, busId: \"0000:2a",
       "repeats another MIG device's uuid"},
      {"numaNode: 0}\n  - {model: h, busId: \"0000:2a",
       "numaNode: 0, mig: [1g.20gb, 1g.20gb, 1g.20gb, 1g.20gb, 1g.20gb]}\n  - {model: h, "
       "busId: \"0000:2a",
       "uses 5 slices and 100480 MiB in 5 instances; the H has 7 slices, 80896 MiB for MIG"},
      {"1g.10gb: {slices: 1", "1g.10gb: {slices: 8", "models.h.mig.profiles.1g.10gb.slices"},
  };
  for (const auto& c : cases) {
    std::string yaml = kMigModel;
    auto pos = yaml.find(c.from);
    ASSERT_NE(pos, std::string::npos) << c.from;
    yaml.replace(pos, c.from.size(), c.to);
    auto p = ParseProfile(yaml, "bad.yaml");
    ASSERT_FALSE(p.ok()) << c.want;
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
