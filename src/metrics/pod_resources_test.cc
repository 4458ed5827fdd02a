#include "src/metrics/pod_resources.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/kubelet_stub/pod_resources_stub.h"

namespace gdp::metrics {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

nvml::Inventory TwoGpusOneWithMig() {
  nvml::Inventory inv;
  nvml::Gpu g0;
  g0.index = 0;
  g0.uuid = "GPU-aaaa";
  nvml::Gpu g1;
  g1.index = 1;
  g1.uuid = "GPU-bbbb";
  g1.mig_enabled = true;
  nvml::MigDevice m;
  m.uuid = "MIG-cccc";
  m.gpu_instance_id = 7;
  g1.mig_devices.push_back(m);
  inv.gpus = {g0, g1};
  return inv;
}

PodRef Ref(const char* ns, const char* pod, const char* c) { return PodRef{ns, pod, c}; }

TEST(AttributeTest, MapsEveryIdFormToItsDevices) {
  const nvml::Inventory inv = TwoGpusOneWithMig();
  struct Case {
    const char* name;
    std::string resource;
    std::string id;
    std::vector<std::string> want;  // devices attributed
  };
  const std::vector<Case> cases = {
      {"full GPU by UUID", "nvidia.com/gpu", "GPU-aaaa", {"GPU-aaaa"}},
      {"replica", "nvidia.com/gpu.shared", "GPU-aaaa::3", {"GPU-aaaa"}},
      {"MIG UUID also marks its parent",
       "nvidia.com/mig-1g.10gb",
       "MIG-cccc",
       {"GPU-bbbb", "MIG-cccc"}},
      {"index strategy", "nvidia.com/gpu", "1", {"GPU-bbbb"}},
      {"MIG index strategy", "nvidia.com/mig-1g.10gb", "1:7", {"GPU-bbbb", "MIG-cccc"}},
      {"index of another vendor's resource", "example.com/fpga", "0", {}},
      {"unknown UUID", "nvidia.com/gpu", "GPU-zzzz", {}},
  };
  for (const Case& c : cases) {
    Attribution a = Attribute({{"ns", "pod", "ctr", c.resource, {c.id}}}, inv);
    std::vector<std::string> got;
    for (const auto& [dev, refs] : a) {
      got.push_back(dev);
      EXPECT_THAT(refs, ElementsAre(Ref("ns", "pod", "ctr"))) << c.name;
    }
    EXPECT_EQ(got, c.want) << c.name;
  }
}

TEST(AttributeTest, SharedGpuListsEachContainerOnce) {
  const nvml::Inventory inv = TwoGpusOneWithMig();
  Attribution a =
      Attribute({{"ns", "a", "c", "nvidia.com/gpu.shared", {"GPU-aaaa::0", "GPU-aaaa::1"}},
                 {"ns", "b", "c", "nvidia.com/gpu.shared", {"GPU-aaaa::2"}}},
                inv);
  EXPECT_THAT(a["GPU-aaaa"], ElementsAre(Ref("ns", "a", "c"), Ref("ns", "b", "c")));
}

}  // namespace
}  // namespace gdp::metrics
