#include "src/daemon/held_devices.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_join.h"

namespace gdp::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A resource whose device IDs are the GPU UUIDs behind them.
class FakeBackend final : public plugin::ResourceBackend {
 public:
  FakeBackend(std::string name, std::vector<std::string> ids) : name_(std::move(name)) {
    for (auto& id : ids) devices_.push_back(plugin::Device{std::move(id)});
  }
  const std::string& ResourceName() const override { return name_; }
  const std::vector<plugin::Device>& Devices() const override { return devices_; }
  absl::StatusOr<plugin::ContainerAllocation> Allocate(
      const std::vector<std::string>& ids) const override {
    plugin::ContainerAllocation a;
    a.envs["VISIBLE"] = absl::StrJoin(ids, ",");
    return a;
  }
  absl::StatusOr<std::vector<std::string>> PreferredAllocation(
      const std::vector<std::string>& available, const std::vector<std::string>&,
      int size) const override {
    if (size > static_cast<int>(available.size())) {
      return absl::InvalidArgumentError("not enough devices");
    }
    return std::vector<std::string>(available.begin(), available.begin() + size);
  }
  std::vector<std::string> GpusBehind(const std::string& id) const override { return {id}; }

 private:
  std::string name_;
  std::vector<plugin::Device> devices_;
};

std::shared_ptr<const plugin::ResourceBackend> Gpus(std::vector<std::string> ids) {
  return std::make_shared<FakeBackend>("nvidia.com/gpu", std::move(ids));
}

podresources::HolderIndex Held(const std::string& resource, const std::string& id) {
  podresources::HolderIndex index;
  index[resource][id].push_back(podresources::Holder{"default", "trainer", "main"});
  return index;
}

std::vector<std::pair<std::string, bool>> List(const plugin::ResourceBackend& b) {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& d : b.Devices()) out.emplace_back(d.id, d.healthy);
  return out;
}

TEST(HeldDevicesTest, NothingGoneMeansTheBackendsAsTheyAre) {
  const Advertised previous = {{"nvidia.com/gpu", {{"GPU-a", {"GPU-a"}}}}};
  auto next = Gpus({"GPU-a", "GPU-b"});
  const podresources::HolderIndex none;
  HeldResult r = KeepHeldDevices({next}, previous, none);
  ASSERT_EQ(r.backends.size(), 1u);
  EXPECT_EQ(r.backends[0], next) << "not wrapped";
  EXPECT_TRUE(r.held.empty());
  EXPECT_EQ(r.advertised.at("nvidia.com/gpu").size(), 2u);
}

TEST(HeldDevicesTest, ARemovedDeviceAPodHoldsStaysUnhealthyAndIsNeverHandedOut) {
  const Advertised previous = {
      {"nvidia.com/gpu", {{"GPU-a", {"GPU-a"}}, {"GPU-b", {"GPU-b"}}, {"GPU-c", {"GPU-c"}}}}};
  const auto holders = Held("nvidia.com/gpu", "GPU-b");
  HeldResult r = KeepHeldDevices({Gpus({"GPU-a"})}, previous, holders);
  ASSERT_EQ(r.backends.size(), 1u);
  const auto& b = *r.backends[0];
  EXPECT_THAT(List(b), ElementsAre(std::pair<std::string, bool>{"GPU-a", true},
                                   std::pair<std::string, bool>{"GPU-b", false}))
      << "GPU-c, held by nobody, is gone";
  ASSERT_EQ(r.held.at("nvidia.com/gpu").size(), 1u);
  EXPECT_EQ(r.held.at("nvidia.com/gpu")[0].holder, "default/trainer/main");
  EXPECT_EQ(b.GpusBehind("GPU-b"), (std::vector<std::string>{"GPU-b"}));

  auto refused = b.Allocate({"GPU-a", "GPU-b"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("GPU-b"));
  EXPECT_THAT(refused.status().message(), HasSubstr("default/trainer/main"));
  EXPECT_TRUE(b.Allocate({"GPU-a"}).ok());

  // A stale available list naming the held device does not fail the request.
  auto preferred = b.PreferredAllocation({"GPU-b", "GPU-a"}, {}, 1);
  ASSERT_TRUE(preferred.ok()) << preferred.status();
  EXPECT_THAT(*preferred, ElementsAre("GPU-a"));
  EXPECT_FALSE(b.PreferredAllocation({"GPU-a", "GPU-b"}, {"GPU-b"}, 1).ok());

  // Next round: released, so it goes away.
  const podresources::HolderIndex none;
  HeldResult later = KeepHeldDevices({Gpus({"GPU-a"})}, r.advertised, none);
  EXPECT_THAT(List(*later.backends[0]), ElementsAre(std::pair<std::string, bool>{"GPU-a", true}));
  EXPECT_TRUE(later.held.empty());
}

TEST(HeldDevicesTest, TheSameDeviceBackReplacesTheHeldEntry) {
  const Advertised previous = {{"nvidia.com/gpu", {{"GPU-a", {"GPU-a"}}}}};
  const auto holders = Held("nvidia.com/gpu", "GPU-a");
  HeldResult gone = KeepHeldDevices({}, previous, holders);
  ASSERT_EQ(gone.backends.size(), 1u) << "a resource with only held devices stays";
  EXPECT_THAT(List(*gone.backends[0]), ElementsAre(std::pair<std::string, bool>{"GPU-a", false}));
  EXPECT_FALSE(gone.backends[0]->Allocate({"GPU-a"}).ok());
  EXPECT_FALSE(gone.backends[0]->PreferredAllocation({}, {}, 1).ok());

  HeldResult back = KeepHeldDevices({Gpus({"GPU-a"})}, gone.advertised, holders);
  EXPECT_THAT(List(*back.backends[0]), ElementsAre(std::pair<std::string, bool>{"GPU-a", true}));
  EXPECT_TRUE(back.held.empty());
}

TEST(HeldDevicesTest, AGoneResourceNobodyHoldsIsDropped) {
  const Advertised previous = {{"nvidia.com/mig-1g.10gb", {{"MIG-x", {"GPU-a"}}}}};
  const podresources::HolderIndex none;
  HeldResult r = KeepHeldDevices({Gpus({"GPU-a"})}, previous, none);
  ASSERT_EQ(r.backends.size(), 1u);
  EXPECT_EQ(r.backends[0]->ResourceName(), "nvidia.com/gpu");
  EXPECT_EQ(r.advertised.count("nvidia.com/mig-1g.10gb"), 0u);
}

}  // namespace
}  // namespace gdp::daemon
