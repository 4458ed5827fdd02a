// The CDI spec: one device per advertised device (full GPUs, MIG devices,
// replicas) with host-path device nodes, the control nodes as common edits,
// atomic rewrite only on change, and removal of stale specs of ours.
#include "src/cdi/cdi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::cdi {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace t = resources::testing;

std::vector<std::shared_ptr<const plugin::ResourceBackend>> Resources(const config::Config& cfg,
                                                                      unsigned gpus) {
  FakeFileSystem fs;
  for (unsigned i = 0; i < gpus; ++i) {
    fs.AddCharDevice(JoinRoot(cfg.EffectiveDriverRoot(), "/dev/nvidia" + std::to_string(i)), 195,
                     i);
  }
  fs.AddCharDevice(JoinRoot(cfg.EffectiveDriverRoot(), "/dev/nvidiactl"), 195, 255);
  auto built = resources::BuildResources(t::Blank(gpus), cfg, fs);
  EXPECT_TRUE(built.ok()) << built.status();
  return built.ok() ? *built : std::vector<std::shared_ptr<const plugin::ResourceBackend>>{};
}

TEST(BuildSpecTest, FullGpusWithHostPathsAndCommonControlNodes) {
  config::Config cfg;
  cfg.driver_root = "/run/nvidia/driver";
  cfg.container_driver_root = "/driver-root";
  nlohmann::json spec = nlohmann::json::parse(BuildSpec(Resources(cfg, 2)));
  EXPECT_EQ(spec["cdiVersion"], "0.5.0");
  EXPECT_EQ(spec["kind"], "nvidia.com/gpu");
  ASSERT_EQ(spec["devices"].size(), 2u);
  EXPECT_EQ(spec["devices"][1]["name"], t::FakeUuid(1));
  EXPECT_EQ(spec["devices"][1]["containerEdits"]["deviceNodes"],
            nlohmann::json::parse(R"([{"path": "/dev/nvidia1",
                "hostPath": "/run/nvidia/driver/dev/nvidia1", "permissions": "rw"}])"));
  EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["hostPath"],
            "/run/nvidia/driver/dev/nvidiactl");
}

TEST(BuildSpecTest, TheDriversFilesAreReadOnlyMountsEveryDeviceGets) {
  driver::DriverFiles files;
  files.mounts = {{"/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
                   "/usr/lib/x86_64-linux-gnu/libcuda.so.1"},
                  {"/run/nvidia/driver/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi"}};
  config::Config cfg;
  nlohmann::json spec = nlohmann::json::parse(BuildSpec(Resources(cfg, 1), files));
  EXPECT_EQ(spec["containerEdits"]["mounts"], nlohmann::json::parse(R"([
      {"hostPath": "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
       "containerPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
       "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"]},
      {"hostPath": "/run/nvidia/driver/usr/bin/nvidia-smi", "containerPath": "/usr/bin/nvidia-smi",
       "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"]}])"));
  // No hooks: nothing runs on the host at container start.
  EXPECT_FALSE(spec["containerEdits"].contains("hooks"));
  EXPECT_FALSE(
      nlohmann::json::parse(BuildSpec(Resources(cfg, 1)))["containerEdits"].contains("mounts"));
}

TEST(BuildSpecTest, ReplicasAreDevicesOfTheirOwn) {
  config::Config cfg;
  config::SharedResource s;
  s.name = "nvidia.com/gpu";
  s.replicas = 2;
  cfg.sharing.time_slicing.resources = {s};
  nlohmann::json spec = nlohmann::json::parse(BuildSpec(Resources(cfg, 2)));
  std::vector<std::string> names;
  for (const auto& d : spec["devices"]) names.push_back(d["name"]);
  EXPECT_THAT(names, ElementsAre(t::FakeUuid(0) + "::0", t::FakeUuid(0) + "::1",
                                 t::FakeUuid(1) + "::0", t::FakeUuid(1) + "::1"));
  // The name Allocate hands out is a device of the spec.
  auto a = Resources(cfg, 2)[0]->Allocate({t::FakeUuid(1) + "::1"});
  ASSERT_TRUE(a.ok());
}

TEST(SpecWriterTest, WritesAtomicallyRewritesOnChangeAndRemovesStaleSpecs) {
  FakeFileSystem fs;
  fs.AddFile("/cdi/gpu-device-plugin.old-name.json", "{}");
  fs.AddFile("/cdi/other-vendor.json", "{}");
  SpecWriter w(fs, "/cdi");
  config::Config cfg;
  ASSERT_TRUE(w.Write(Resources(cfg, 2)).ok());
  const std::string path = std::string("/cdi/") + kSpecFile;
  auto text = fs.ReadFile(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, BuildSpec(Resources(cfg, 2)));
  EXPECT_FALSE(fs.Exists("/cdi/gpu-device-plugin.old-name.json"));
  EXPECT_TRUE(fs.Exists("/cdi/other-vendor.json"));

  ASSERT_TRUE(w.Write(Resources(cfg, 3)).ok());
  EXPECT_THAT(*fs.ReadFile(path), HasSubstr(t::FakeUuid(2)));

  ASSERT_TRUE(w.RemoveAll().ok());
  EXPECT_FALSE(fs.Exists(path));
  EXPECT_TRUE(fs.Exists("/cdi/other-vendor.json"));
}

TEST(SpecWriterTest, ErrorsNameThePath) {
  FakeFileSystem fs;
  fs.FailWrites(absl::PermissionDeniedError("read-only file system"));
  SpecWriter w(fs, "/cdi");
  absl::Status s = w.Write(Resources(config::Config{}, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("cannot write the CDI spec /cdi/gpu-device-plugin.nvidia.com-gpu.json: "
                        "read-only file system; is the CDI directory"));
}

}  // namespace
}  // namespace gdp::cdi
