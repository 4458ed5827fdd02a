// The sharing block: time-slicing and MPS entries, their device selectors,
// and the validation that names the field and what is accepted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/config/config.h"

namespace gdp::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Errors(const std::string& yaml) {
  absl::StatusOr<Config> c = ParseConfig(yaml);
  EXPECT_FALSE(c.ok()) << "parsed unexpectedly:\n" << yaml;
  return c.ok() ? "" : std::string(c.status().message());
}

Config Parse(const std::string& yaml) {
  absl::StatusOr<Config> c = ParseConfig(yaml);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : Config{};
}

TEST(SharingConfigTest, DefaultsShareNothing) {
  Config c;
  EXPECT_FALSE(c.sharing.Enabled());
  EXPECT_EQ(c.sharing.allocation_policy, AllocationPolicy::kDistributed);
  EXPECT_EQ(c.sharing.mps.root, "/run/nvidia/mps");
  EXPECT_EQ(c.cdi_root, "/var/run/cdi");
}

TEST(SharingConfigTest, DecodesTimeSlicing) {
  Config c = Parse(R"(
version: v1
sharing:
  allocationPolicy: packed
  timeSlicing:
    renameByDefault: true
    failRequestsGreaterThanOne: true
    resources:
    - name: nvidia.com/gpu
      replicas: 4
    - name: nvidia.com/mig-1g.10gb
      rename: example.com/small
      replicas: 7
      devices: [0, "3:1", GPU-abc]
)");
  EXPECT_EQ(c.sharing.allocation_policy, AllocationPolicy::kPacked);
  const TimeSlicingConfig& ts = c.sharing.time_slicing;
  EXPECT_TRUE(ts.rename_by_default);
  EXPECT_TRUE(ts.fail_requests_greater_than_one);
  ASSERT_EQ(ts.resources.size(), 2u);
  EXPECT_EQ(ts.resources[0].name, "nvidia.com/gpu");
  EXPECT_EQ(ts.resources[0].replicas, 4u);
  EXPECT_TRUE(ts.resources[0].devices.all);
  EXPECT_EQ(ts.resources[1].rename, "example.com/small");
  EXPECT_FALSE(ts.resources[1].devices.all);
  EXPECT_THAT(ts.resources[1].devices.ids, ElementsAre("0", "3:1", "GPU-abc"));
  EXPECT_TRUE(c.sharing.Enabled());
}

TEST(SharingConfigTest, DevicesTakeAllACountOrAList) {
  auto devices = [](const std::string& value) {
    return Parse(
               "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
               "    - {name: nvidia.com/gpu, replicas: 2, devices: " +
               value + "}\n")
        .sharing.time_slicing.resources.at(0)
        .devices;
  };
  EXPECT_TRUE(devices("all").all);
  DeviceSelector three = devices("3");
  EXPECT_FALSE(three.all);
  EXPECT_EQ(three.count, 3u);
  EXPECT_THAT(devices("[1, 2]").ids, ElementsAre("1", "2"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 2, devices: some}\n"),
              HasSubstr("sharing.timeSlicing.resources[0].devices (line 5): expected all, a "
                        "device count or a list of device indices and UUIDs, got \"some\""));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 2, devices: []}\n"),
              HasSubstr("an empty list selects no device"));
}

TEST(SharingConfigTest, DecodesMps) {
  Config c = Parse(R"(
version: v1
sharing:
  mps:
    root: /var/run/mps
    controlBinary: /opt/bin/nvidia-cuda-mps-control
    resources:
    - name: nvidia.com/gpu
      replicas: 4
      memoryLimit: 10Gi
      activeThreadPercentage: 25
)");
  const MpsConfig& mps = c.sharing.mps;
  EXPECT_EQ(mps.root, "/var/run/mps");
  EXPECT_EQ(mps.control_binary, "/opt/bin/nvidia-cuda-mps-control");
  ASSERT_EQ(mps.resources.size(), 1u);
  EXPECT_EQ(mps.resources[0].memory_limit_bytes, 10ULL << 30);
  EXPECT_EQ(mps.resources[0].active_thread_percentage, 25u);
}

TEST(SharingConfigTest, ReplicasOutOfRangeNameTheRange) {
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 0}\n"),
              HasSubstr("sharing.timeSlicing.resources[0].replicas (line 5): 0 is out of range 1 "
                        "to 1024"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  mps:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 49}\n"),
              HasSubstr("49 is out of range 1 to 48 (an MPS server takes at most 48 clients per "
                        "GPU)"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu}\n"),
              HasSubstr("sharing.timeSlicing.resources[0] (line 5): replicas is required"));
}

TEST(SharingConfigTest, MpsOnMigIsRefused) {
  EXPECT_THAT(Errors("version: v1\nsharing:\n  mps:\n    resources:\n"
                     "    - {name: nvidia.com/mig-1g.10gb, replicas: 2}\n"),
              HasSubstr("sharing.mps.resources[0].name: \"nvidia.com/mig-1g.10gb\" is a MIG "
                        "device: MPS cannot share MIG devices"));
}

TEST(SharingConfigTest, ConflictingSettingsAreErrors) {
  // The same resource by both modes.
  EXPECT_THAT(Errors(R"(
version: v1
sharing:
  timeSlicing:
    resources: [{name: nvidia.com/gpu, replicas: 2}]
  mps:
    resources: [{name: nvidia.com/gpu, replicas: 2}]
)"),
              HasSubstr("sharing.mps.resources[0].name: \"nvidia.com/gpu\" is already shared by "
                        "sharing.timeSlicing.resources[0]; a resource is shared by time-slicing "
                        "or by MPS, not both"));
  // Twice in one list.
  EXPECT_THAT(Errors(R"(
version: v1
sharing:
  timeSlicing:
    resources: [{name: nvidia.com/gpu, replicas: 2}, {name: nvidia.com/gpu, replicas: 3}]
)"),
              HasSubstr("list each resource once"));
  // Two entries advertised under one name.
  EXPECT_THAT(Errors(R"(
version: v1
sharing:
  timeSlicing:
    resources:
    - {name: nvidia.com/mig-1g.10gb, replicas: 2, rename: example.com/shared}
    - {name: nvidia.com/mig-2g.20gb, replicas: 2, rename: example.com/shared}
)"),
              HasSubstr("give each entry its own rename"));
  // A rename onto a resource another entry shares.
  EXPECT_THAT(Errors(R"(
version: v1
sharing:
  timeSlicing:
    resources:
    - {name: nvidia.com/mig-1g.10gb, replicas: 2, rename: nvidia.com/gpu}
    - {name: nvidia.com/gpu, replicas: 2, rename: example.com/gpu}
)"),
              HasSubstr("a resource that sharing.timeSlicing.resources[1] shares"));
}

TEST(SharingConfigTest, ItemFieldsAreCheckedWithSuggestions) {
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replica: 2}\n"),
              HasSubstr("sharing.timeSlicing.resources[0].replica (line 5): unknown field (did "
                        "you mean replicas?)"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 2, memoryLimit: 1Gi}\n"),
              HasSubstr("memory limits and thread shares are MPS settings"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources: nvidia.com/gpu\n"),
              HasSubstr("sharing.timeSlicing.resources (line 4): expected a list of {name, "
                        "replicas, devices}"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  mps:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 2, memoryLimit: lots}\n"),
              HasSubstr("\"lots\" is not a memory size"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  mps:\n    resources:\n"
                     "    - {name: nvidia.com/gpu, replicas: 2, activeThreadPercentage: 101}\n"),
              HasSubstr("101 is out of range 1 to 100"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                     "    - {name: gpu, replicas: 2}\n"),
              HasSubstr("sharing.timeSlicing.resources[0].name: \"gpu\" is not a valid extended "
                        "resource name"));
  EXPECT_THAT(Errors("version: v1\nsharing:\n  allocationPolicy: spread\n"),
              HasSubstr("\"spread\" is not one of distributed, packed"));
}

TEST(ParseMemorySizeTest, BytesAndQuantities) {
  EXPECT_EQ(*ParseMemorySize("1024"), 1024u);
  EXPECT_EQ(*ParseMemorySize("512Mi"), 512ULL << 20);
  EXPECT_EQ(*ParseMemorySize("10G"), 10000000000ULL);
  EXPECT_FALSE(ParseMemorySize("").ok());
  EXPECT_FALSE(ParseMemorySize("1.5Gi").ok());
  EXPECT_FALSE(ParseMemorySize("Gi").ok());
  EXPECT_FALSE(ParseMemorySize("99999999999Ti").ok());
}

}  // namespace
}  // namespace gdp::config
