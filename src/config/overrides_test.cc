#include "src/config/overrides.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <CLI/CLI.hpp>

#include <map>
#include <set>

#include "src/config/schema.h"

namespace gdp::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(OverrideTableTest, EveryFlagAndVariableNamesOneField) {
  std::set<std::string> paths, flags, envs;
  for (const detail::FieldSpec& spec : detail::Fields()) {
    EXPECT_TRUE(paths.insert(spec.path).second) << spec.path;
    if (spec.nvidia_path != nullptr) {
      EXPECT_TRUE(paths.insert(spec.nvidia_path).second) << spec.nvidia_path;
    }
    if (spec.flag == nullptr) continue;
    EXPECT_NE(spec.env, nullptr) << spec.path;
    for (const std::string& flag : OptionNames(spec.flag, spec.flag_aliases)) {
      EXPECT_TRUE(flags.insert(flag).second) << flag;
      EXPECT_EQ(flag.rfind("--", 0), 0u) << flag;
    }
    for (const std::string& env : OptionNames(spec.env, spec.env_aliases)) {
      EXPECT_TRUE(envs.insert(env).second) << env;
    }
  }
  // Every field but the version, the lists of mappings and the fields of
  // NVIDIA's format it has no flag for can be set from a flag.
  std::set<std::string> file_only;
  for (const detail::FieldSpec& f : detail::Fields()) {
    if (f.flag == nullptr) file_only.insert(f.path);
    if (f.codec.kind == detail::FieldKind::kObjectList) {
      EXPECT_EQ(f.flag, nullptr) << f.path;
    }
  }
  EXPECT_THAT(file_only,
              ElementsAre("flags.gfd.machineTypeFile", "flags.gfd.noTimestamp", "flags.gfd.oneshot",
                          "flags.gfd.outputFile", "flags.gfd.sleepInterval",
                          "flags.useNodeFeatureAPI", "resources.gpus", "resources.mig",
                          "sharing.mps.resources", "sharing.timeSlicing.resources", "version"));
}

TEST(CollectOverridesTest, FlagBeatsEnvAndEmptyEnvIsUnset) {
  std::vector<Override> got = CollectOverrides(
      {{"--mig-strategy", "mixed"}},
      FakeEnv({{"MIG_STRATEGY", "single"}, {"LOG_LEVEL", "debug"}, {"RESOURCE_NAME", ""}}));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].path, "flags.migStrategy");
  EXPECT_EQ(got[0].value, "mixed");
  EXPECT_EQ(got[0].source, "--mig-strategy");
  EXPECT_EQ(got[1].path, "log.level");
  EXPECT_EQ(got[1].value, "debug");
  EXPECT_EQ(got[1].source, "LOG_LEVEL");
  EXPECT_THAT(CollectOverrides({}, FakeEnv({})), IsEmpty());
}

TEST(CollectOverridesTest, ConfigFilePath) {
  EXPECT_EQ(ConfigFilePath({{"--config-file", "/a.yaml"}}, FakeEnv({{"CONFIG_FILE", "/b.yaml"}})),
            "/a.yaml");
  EXPECT_EQ(ConfigFilePath({}, FakeEnv({{"CONFIG_FILE", "/b.yaml"}})), "/b.yaml");
  EXPECT_EQ(ConfigFilePath({}, FakeEnv({})), "");
}

TEST(RegisterFlagsTest, CommandLineToConfig) {
  CLI::App app;
  FlagValues values;
  RegisterFlags(app, &values);
  std::vector<std::string> args = {"--mig-strategy",
                                   "mixed",
                                   "--pass-device-specs=false",
                                   "--fail-on-init-error",
                                   "--disable-health-checks",
                                   "--device-list-strategy=envvar,cdi-annotations",
                                   "--metrics-port",
                                   "0",
                                   "--config-file",
                                   "/etc/gdp/config.yaml"};
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
  app.parse(args);
  EXPECT_EQ(values.at("--mig-strategy"), "mixed");
  EXPECT_EQ(values.at("--pass-device-specs"), "false");
  EXPECT_EQ(values.at("--fail-on-init-error"), "true");
  EXPECT_EQ(ConfigFilePath(values, FakeEnv({})), "/etc/gdp/config.yaml");

  auto config = ParseConfig("version: v1\nflags: {failOnInitError: false, migStrategy: single}\n",
                            CollectOverrides(values, FakeEnv({{"LOG_FORMAT", "json"}})));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mig_strategy, MigStrategy::kMixed);
  EXPECT_TRUE(config->fail_on_init_error);
  EXPECT_FALSE(config->pass_device_specs);
  EXPECT_FALSE(config->health.enabled);
  EXPECT_THAT(config->device_list_strategy,
              ElementsAre(DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiAnnotations));
  EXPECT_EQ(config->metrics_port, 0);
  EXPECT_EQ(config->log_format, "json");
}

TEST(RegisterFlagsTest, BadFlagValueNamesTheFlag) {
  CLI::App app;
  FlagValues values;
  RegisterFlags(app, &values);
  app.parse("--mig-strategy foo --disable-health-checks=perhaps", false);
  auto config = ParseConfig("", CollectOverrides(values, FakeEnv({})));
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "flags.migStrategy (from --mig-strategy): \"foo\" is not one of none, single, mixed\n"
            "health.enabled (from --disable-health-checks): expected a boolean (true or false), "
            "got \"perhaps\"");
}

TEST(CollectOverridesTest, NvidiasFlagAndVariableNamesWork) {
  // Aliases: NVIDIA's names for our settings, and NVIDIA-only settings.
  std::vector<Override> got =
      CollectOverrides({{"--nvidia-driver-root", "/run/nvidia/driver"}},
                       FakeEnv({{"DRIVER_ROOT_CTR_PATH", "/driver-root"},
                                {"NVIDIA_DEV_ROOT", "/"},
                                {"SHARED_DEVICES_ALLOCATION_POLICY", "packed"},
                                {"NVIDIA_CTK_PATH", "/usr/bin/nvidia-ctk"},
                                {"CDI_ANNOTATION_PREFIX", "x.io/"},
                                {"GDRCOPY_ENABLED", "true"}}));
  std::map<std::string, std::string> by_path;
  for (const Override& o : got) by_path[o.path] = o.value + " <- " + o.source;
  EXPECT_EQ(by_path["flags.nvidiaDriverRoot"], "/run/nvidia/driver <- --nvidia-driver-root");
  EXPECT_EQ(by_path["flags.containerDriverRoot"], "/driver-root <- DRIVER_ROOT_CTR_PATH");
  EXPECT_EQ(by_path["flags.nvidiaDevRoot"], "/ <- NVIDIA_DEV_ROOT");
  EXPECT_EQ(by_path["sharing.allocationPolicy"], "packed <- SHARED_DEVICES_ALLOCATION_POLICY");
  EXPECT_EQ(by_path["flags.plugin.nvidiaCTKPath"], "/usr/bin/nvidia-ctk <- NVIDIA_CTK_PATH");
  EXPECT_EQ(by_path["flags.plugin.cdiAnnotationPrefix"], "x.io/ <- CDI_ANNOTATION_PREFIX");
  EXPECT_EQ(by_path["flags.gdrcopyEnabled"], "true <- GDRCOPY_ENABLED");
  absl::StatusOr<Config> c = ParseConfig("", got);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->driver_root, "/run/nvidia/driver");
  EXPECT_EQ(c->container_driver_root, "/driver-root");
  EXPECT_EQ(c->sharing.allocation_policy, AllocationPolicy::kPacked);
  got = CollectOverrides({}, FakeEnv({{"KUBELET_SOCKET", "/var/lib/kubelet/dp/kubelet.sock"}}));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "flags.plugin.pluginDirectory");
  EXPECT_EQ(got[0].value, "/var/lib/kubelet/dp");
  // Our own name wins over NVIDIA's when both are set.
  got = CollectOverrides(
      {}, FakeEnv({{"CONTAINER_DRIVER_ROOT", "/ours"}, {"DRIVER_ROOT_CTR_PATH", "/theirs"}}));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "/ours");
}

TEST(CollectOverridesTest, NvidiasHealthCheckVariables) {
  auto parse = [](std::map<std::string, std::string> env) {
    absl::StatusOr<Config> c = ParseConfig("", CollectOverrides({}, FakeEnv(std::move(env))));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Config{};
  };
  const Config defaults;
  EXPECT_FALSE(parse({{"DP_DISABLE_HEALTHCHECKS", "all"}}).health.enabled);
  EXPECT_FALSE(parse({{"DP_DISABLE_HEALTHCHECKS", "xids"}}).health.enabled);
  // A list of XIDs: ignored on top of the default list.
  Config c = parse({{"DP_DISABLE_HEALTHCHECKS", "109, 999"}});
  EXPECT_TRUE(c.health.enabled);
  EXPECT_THAT(c.health.ignored_xids, testing::Contains(999u));
  EXPECT_THAT(c.health.ignored_xids, testing::Contains(13u));
  // DP_ENABLE_HEALTHCHECKS: these are never ignored; "all": none is.
  c = parse({{"DP_ENABLE_HEALTHCHECKS", "13,31"}});
  EXPECT_THAT(c.health.ignored_xids, testing::Not(testing::Contains(13u)));
  EXPECT_THAT(c.health.ignored_xids, testing::Not(testing::Contains(31u)));
  EXPECT_THAT(c.health.ignored_xids, testing::Contains(43u));
  EXPECT_THAT(parse({{"DP_ENABLE_HEALTHCHECKS", "all"}}).health.ignored_xids, IsEmpty());
  // Our own settings win.
  EXPECT_TRUE(parse({{"DP_DISABLE_HEALTHCHECKS", "all"}, {"DISABLE_HEALTH_CHECKS", "false"}})
                  .health.enabled);
  // A bad value names the variable.
  auto bad = ParseConfig("", CollectOverrides({}, FakeEnv({{"DP_DISABLE_HEALTHCHECKS", "13,x"}})));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("DP_DISABLE_HEALTHCHECKS"));
}

}  // namespace
}  // namespace gdp::config
