#include "src/daemon/discovery_child.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "src/nvml/inventory_codec.h"

namespace gdp::daemon {
namespace {

using ::testing::HasSubstr;

// Each test writes a stand-in for `gpu-device-plugin inventory` as a script.
class DiscoveryChildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/discovery-child-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  DiscoveryChildOptions Script(const std::string& body) {
    const std::string path = dir_ + "/inventory.sh";
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
    return DiscoveryChildOptions{path, "/lib/libnvidia-ml.so.1", std::chrono::milliseconds(2000)};
  }

  std::string dir_;
};

TEST_F(DiscoveryChildTest, ReadsTheInventoryTheChildPrints) {
  nvml::Inventory want;
  want.driver_version = "570.86.15";
  nvml::Gpu g;
  g.uuid = "GPU-1";
  g.pci_bus_id = "0000:1b:00.0";
  want.gpus.push_back(g);
  want.links = {{nvml::Link{}}};
  std::ofstream(dir_ + "/doc.json") << nvml::EncodeInventory(want);
  // The child is asked for the library the daemon loaded.
  auto got = DiscoverInChild(
      Script("[ \"$1 $2 $3\" = 'inventory --nvml-library /lib/libnvidia-ml.so.1' ] || exit 9\n"
             "cat '" +
             dir_ + "/doc.json'"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, want);
}

TEST_F(DiscoveryChildTest, AFailingChildSaysHow) {
  auto got = DiscoverInChild(Script("echo '{}'; exit 3"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("exit status 3"));

  got = DiscoverInChild(Script("echo 'not json'"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("not a JSON object"));

  DiscoveryChildOptions missing = Script("");
  missing.exe = dir_ + "/no-such-binary";
  got = DiscoverInChild(missing);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("no-such-binary"));
}

TEST_F(DiscoveryChildTest, AHungChildIsKilledAtTheTimeout) {
  DiscoveryChildOptions o = Script("exec sleep 30");
  o.timeout = std::chrono::milliseconds(200);
  auto got = DiscoverInChild(o);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got.status().message(), HasSubstr("200 ms"));
}

}  // namespace
}  // namespace gdp::daemon
