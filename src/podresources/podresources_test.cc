// GrpcPodResourcesLister against the pod-resources stand-in on a real unix
// socket, and IndexByDevice.
#include "src/podresources/podresources.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/kubelet_stub/pod_resources_stub.h"

namespace gdp::podresources {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class PodResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-pr-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/kubelet.sock";
  }
  void TearDown() override { ::rmdir(dir_.c_str()); }
  std::string dir_;
  std::string socket_;
};

TEST_F(PodResourcesTest, ListsEveryContainersDevices) {
  kubelet_stub::PodResourcesStub stub(socket_);
  ASSERT_TRUE(stub.Start().ok());
  const std::vector<Assignment> want = {
      {"default", "train", "main", "nvidia.com/gpu", {"GPU-a", "GPU-b"}},
      {"default", "train", "main", "nvidia.com/mig-1g.10gb", {"MIG-c"}},
      {"default", "train", "sidecar", "nvidia.com/gpu", {"GPU-d"}},
      {"ml", "infer", "server", "nvidia.com/gpu.shared", {"GPU-e::0", "GPU-e::1"}},
  };
  stub.SetAssignments(want);
  GrpcPodResourcesLister lister(socket_);
  absl::StatusOr<std::vector<Assignment>> got = lister.List();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
  EXPECT_EQ(stub.ListCount(), 1u);

  stub.SetAssignments({});
  got = lister.List();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, IsEmpty());
}

TEST_F(PodResourcesTest, NoKubeletIsUnavailableNamingTheSocket) {
  GrpcPodResourcesLister lister(socket_, std::chrono::milliseconds(500));
  absl::StatusOr<std::vector<Assignment>> got = lister.List();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr(socket_));
  EXPECT_THAT(got.status().message(), HasSubstr("is the kubelet running"));
}

TEST_F(PodResourcesTest, KubeletErrorIsReported) {
  kubelet_stub::PodResourcesStub stub(socket_);
  ASSERT_TRUE(stub.Start().ok());
  stub.SetListError(static_cast<int>(grpc::StatusCode::PERMISSION_DENIED), "go away");
  GrpcPodResourcesLister lister(socket_);
  absl::StatusOr<std::vector<Assignment>> got = lister.List();
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("go away"));
}

TEST(IndexByDeviceTest, GroupsHoldersByResourceAndDevice) {
  const HolderIndex index = IndexByDevice({
      {"ns", "a", "c1", "nvidia.com/gpu", {"GPU-1", "GPU-2"}},
      {"ns", "b", "init", "nvidia.com/gpu", {"GPU-2"}},
      {"ns", "b", "main", "nvidia.com/mig-1g.10gb", {"GPU-2"}},
  });
  ASSERT_EQ(index.size(), 2u);
  EXPECT_THAT(index.at("nvidia.com/gpu").at("GPU-1"), ElementsAre(Holder{"ns", "a", "c1"}));
  EXPECT_THAT(index.at("nvidia.com/gpu").at("GPU-2"),
              ElementsAre(Holder{"ns", "a", "c1"}, Holder{"ns", "b", "init"}));
  EXPECT_THAT(index.at("nvidia.com/mig-1g.10gb").at("GPU-2"),
              ElementsAre(Holder{"ns", "b", "main"}));
}

TEST(ParseAssignmentsTest, ReadsPodResourcesListOutput) {
  auto got = kubelet_stub::ParseAssignments(
      "# comment\n\ndefault/p/c nvidia.com/gpu GPU-1,GPU-2\n  ml/q/d nvidia.com/gpu GPU-3\n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got,
              ElementsAre(Assignment{"default", "p", "c", "nvidia.com/gpu", {"GPU-1", "GPU-2"}},
                          Assignment{"ml", "q", "d", "nvidia.com/gpu", {"GPU-3"}}));
  auto bad = kubelet_stub::ParseAssignments("ok/x/y r a\nbroken line\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 2"));
}

}  // namespace
}  // namespace gdp::podresources
