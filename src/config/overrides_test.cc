#include "src/config/overrides.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <CLI/CLI.hpp>

#include <set>

#include "src/config/schema.h"

namespace gdp::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(OverrideTableTest, EveryEntryIsAFieldWithUniqueNames) {
  std::set<std::string> paths, flags, envs;
  for (const OverrideSpec& spec : OverrideTable()) {
    bool known = false;
    for (const detail::Field& f : detail::Fields())
      known = known || std::string(f.path) == spec.path;
    EXPECT_TRUE(known) << spec.path;
    EXPECT_TRUE(paths.insert(spec.path).second) << spec.path;
    EXPECT_TRUE(flags.insert(spec.flag).second) << spec.flag;
    EXPECT_TRUE(envs.insert(spec.env).second) << spec.env;
    EXPECT_EQ(std::string(spec.flag).rfind("--", 0), 0u) << spec.flag;
  }
  // Every field but the version and the lists of mappings can be set from a flag.
  size_t file_only = 1;
  for (const detail::Field& f : detail::Fields()) {
    file_only += f.kind == detail::FieldKind::kObjectList;
  }
  EXPECT_EQ(paths.size() + file_only, detail::Fields().size());
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

}  // namespace
}  // namespace gdp::config
