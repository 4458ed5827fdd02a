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

// The driver of a real-shaped root: the library file, its soname (another
// name of it), the lib folder of a second library, and a binary.
DriverEdits Driver(const std::string& hook_path = "") {
  const std::string lib = "/usr/lib/x86_64-linux-gnu";
  const std::string host = "/run/nvidia/driver";
  DriverEdits d;
  d.files.mounts = {{host + lib + "/libcuda.so.550.54.15", lib + "/libcuda.so.550.54.15", "", true},
                    {host + lib + "/libcuda.so.550.54.15", lib + "/libcuda.so.1",
                     lib + "/libcuda.so.550.54.15", true},
                    {host + "/usr/lib64/libnvidia-ml.so.550.54.15",
                     "/usr/lib64/libnvidia-ml.so.550.54.15", "", true},
                    {host + "/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi"}};
  d.hook_path = hook_path;
  return d;
}

// What keeps an NVIDIA runtime in the path from adding GPUs (an image's
// NVIDIA_VISIBLE_DEVICES=all): its "void" in the environment and in the
// volume-mounts list.
const char kVoidMount[] = R"({"hostPath": "/dev/null",
    "containerPath": "/var/run/nvidia-container-devices/void",
    "options": ["ro", "nosuid", "nodev", "bind"]})";

TEST(BuildSpecTest, TheDriversFilesAreReadOnlyMountsEveryDeviceGets) {
  config::Config cfg;
  nlohmann::json spec = nlohmann::json::parse(BuildSpec(Resources(cfg, 1), Driver()));
  const std::string ro = R"("options": ["ro", "nosuid", "nodev", "rbind", "rprivate"])";
  EXPECT_EQ(spec["containerEdits"]["mounts"], nlohmann::json::parse(R"([
      {"hostPath": "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
       "containerPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", )" +
                                                                    ro + R"(},
      {"hostPath": "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
       "containerPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.1", )" +
                                                                    ro + R"(},
      {"hostPath": "/run/nvidia/driver/usr/lib64/libnvidia-ml.so.550.54.15",
       "containerPath": "/usr/lib64/libnvidia-ml.so.550.54.15", )" + ro +
                                                                    R"(},
      {"hostPath": "/run/nvidia/driver/usr/bin/nvidia-smi", "containerPath": "/usr/bin/nvidia-smi",
       )" + ro + "}, " + kVoidMount + "]"));
  EXPECT_EQ(spec["containerEdits"]["env"],
            nlohmann::json::parse(R"(["NVIDIA_VISIBLE_DEVICES=void"])"));
  // No hooks: nothing runs on the host at container start.
  EXPECT_FALSE(spec["containerEdits"].contains("hooks"));
  // Without the driver's files, the void entries alone.
  EXPECT_EQ(nlohmann::json::parse(BuildSpec(Resources(cfg, 1)))["containerEdits"]["mounts"],
            nlohmann::json::parse(std::string("[") + kVoidMount + "]"));
}

TEST(BuildSpecTest, WithAHookBinaryTheLinksAndTheLdCacheAreItsHooks) {
  config::Config cfg;
  nlohmann::json spec =
      nlohmann::json::parse(BuildSpec(Resources(cfg, 1), Driver("/usr/bin/nvidia-cdi-hook")));
  // The soname is no longer a mount: the hook makes it a link to the file.
  for (const auto& m : spec["containerEdits"]["mounts"]) {
    EXPECT_NE(m["containerPath"], "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
  }
  EXPECT_EQ(spec["containerEdits"]["mounts"].size(), 4u);
  EXPECT_EQ(spec["containerEdits"]["hooks"], nlohmann::json::parse(R"([
      {"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook",
       "args": ["nvidia-cdi-hook", "create-symlinks",
                "--link", "libcuda.so.550.54.15::/usr/lib/x86_64-linux-gnu/libcuda.so.1"]},
      {"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook",
       "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu",
                "--folder", "/usr/lib64"]}])"));
  // nvidia-ctk has the same hooks under `hook`.
  spec = nlohmann::json::parse(BuildSpec(Resources(cfg, 1), Driver("/opt/nvidia/nvidia-ctk")));
  EXPECT_EQ(spec["containerEdits"]["hooks"][1]["args"], nlohmann::json::parse(R"(
      ["nvidia-ctk", "hook", "update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu",
       "--folder", "/usr/lib64"])"));
}

TEST(UsableHookTest, OnlyAHookThisProcessSeesIsUsedElseANoteSaysWhy) {
  FakeFileSystem fs;
  fs.AddFile("/usr/bin/nvidia-cdi-hook", "");
  fs.AddSymlink("/usr/bin/nvidia-ctk", "nvidia-ctk.real");
  fs.AddDirectory("/opt/hooks");
  std::vector<std::string> notes;
  EXPECT_EQ(UsableHook(fs, "", &notes), "");
  EXPECT_EQ(UsableHook(fs, "/usr/bin/nvidia-cdi-hook", &notes), "/usr/bin/nvidia-cdi-hook");
  EXPECT_EQ(UsableHook(fs, "/usr/bin/nvidia-ctk", &notes), "/usr/bin/nvidia-ctk");
  EXPECT_TRUE(notes.empty());
  EXPECT_EQ(UsableHook(fs, "/usr/local/bin/nvidia-cdi-hook", &notes), "");
  EXPECT_EQ(UsableHook(fs, "/opt/hooks", &notes), "");
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_THAT(notes[0], HasSubstr("the CDI hook /usr/local/bin/nvidia-cdi-hook "
                                  "(flags.plugin.nvidiaCTKPath) is not a file here"));
  EXPECT_THAT(notes[0], HasSubstr("mounts the library links and runs no hook"));
  EXPECT_THAT(notes[1], HasSubstr("not a regular file"));
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
