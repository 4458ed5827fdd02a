// AllocationsJson: the whole document for a small node, and the shape when
// the pod-resources API is away.
#include "src/daemon/allocations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace gdp::daemon {
namespace {

TEST(AllocationsJsonTest, JoinsDevicesWithTheirHolders) {
  const std::vector<ResourceView> resources = {
      {"nvidia.com/gpu", {{"GPU-a", {"GPU-a"}, true}, {"GPU-b", {"GPU-b"}, false}}},
      {"nvidia.com/gpu.shared", {{"GPU-c::0", {"GPU-c"}, true}, {"GPU-c::1", {"GPU-c"}, true}}},
  };
  const std::vector<podresources::Assignment> assignments = {
      {"default", "train", "main", "nvidia.com/gpu", {"GPU-a"}},
      {"ml", "infer", "srv", "nvidia.com/gpu.shared", {"GPU-c::1"}},
      {"ml", "other", "x", "example.com/fpga", {"F-1"}},
  };
  const nlohmann::json got = nlohmann::json::parse(
      AllocationsJson(resources, assignments, "/var/lib/kubelet/pod-resources/kubelet.sock"));
  const nlohmann::json want = nlohmann::json::parse(R"({
    "resources": [
      {"name": "nvidia.com/gpu", "devices": [
        {"id": "GPU-a", "gpus": ["GPU-a"], "health": "Healthy",
         "holders": [{"namespace": "default", "pod": "train", "container": "main"}]},
        {"id": "GPU-b", "gpus": ["GPU-b"], "health": "Unhealthy", "holders": []}]},
      {"name": "nvidia.com/gpu.shared", "devices": [
        {"id": "GPU-c::0", "gpus": ["GPU-c"], "health": "Healthy", "holders": []},
        {"id": "GPU-c::1", "gpus": ["GPU-c"], "health": "Healthy",
         "holders": [{"namespace": "ml", "pod": "infer", "container": "srv"}]}]}],
    "podResources": {"socket": "/var/lib/kubelet/pod-resources/kubelet.sock"}
  })");
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST(AllocationsJsonTest, PodResourcesErrorStillListsDevices) {
  const nlohmann::json got = nlohmann::json::parse(
      AllocationsJson({{"nvidia.com/gpu", {{"GPU-a", {"GPU-a"}, true}}}},
                      absl::UnavailableError("List on /x failed: connection refused"), "/x"));
  EXPECT_EQ(got["podResources"]["error"], "List on /x failed: connection refused");
  EXPECT_EQ(got["resources"][0]["devices"][0]["holders"], nlohmann::json::array());
}

}  // namespace
}  // namespace gdp::daemon
