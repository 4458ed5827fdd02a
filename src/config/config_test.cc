#include "src/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>

#include <map>

#include "src/config/schema.h"

namespace gdp::config {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;

// The error text of a parse that must fail.
std::string Errors(const std::string& yaml, const std::vector<Override>& overrides = {}) {
  absl::StatusOr<Config> c = ParseConfig(yaml, overrides);
  EXPECT_FALSE(c.ok()) << "parsed unexpectedly:\n" << yaml;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

Config Parse(const std::string& yaml, const std::vector<Override>& overrides = {}) {
  absl::StatusOr<Config> c = ParseConfig(yaml, overrides);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : Config{};
}

TEST(ParseConfigTest, EmptyDocumentIsAllDefaults) {
  EXPECT_EQ(Parse(""), Config{});
  EXPECT_EQ(Parse("# nothing but a comment\n"), Config{});
  EXPECT_EQ(Parse("version: v1\n"), Config{});
  EXPECT_EQ(Parse("version: v1\nflags:\nhealth:\n"), Config{});
}

TEST(ParseConfigTest, DefaultsAreTheDocumentedOnes) {
  Config c;
  EXPECT_EQ(c.mig_strategy, MigStrategy::kNone);
  EXPECT_TRUE(c.fail_on_init_error);
  EXPECT_EQ(c.driver_root, "/");
  EXPECT_THAT(c.device_list_strategy, ElementsAre(DeviceListStrategy::kEnvvar));
  EXPECT_EQ(c.device_id_strategy, DeviceIdStrategy::kUuid);
  EXPECT_EQ(c.resource_name, "nvidia.com/gpu");
  EXPECT_THAT(c.health.ignored_xids, ElementsAre(13, 31, 43, 45, 68, 109));
  EXPECT_EQ(c.health.recovery_quiet_period, 300s);
  EXPECT_EQ(c.metrics_port, 9101);
  EXPECT_THAT(Validate(c), IsEmpty());
}

TEST(ParseConfigTest, DecodesEveryField) {
  Config c = Parse(R"(
version: v1
flags:
  migStrategy: mixed
  failOnInitError: false
  nvidiaDriverRoot: /run/nvidia/driver
  containerDriverRoot: /driver-root
  nvmlLibrary: /usr/lib64/libnvidia-ml.so.1
  requireMinimumVersions: false
  nodeName: gpu-node-7
  plugin:
    passDeviceSpecs: false
    deviceListStrategy: [volume-mounts, cdi-cri]
    deviceIDStrategy: index
    pluginDirectory: /tmp/dp
    resourceName: example.com/accelerator
health:
  enabled: false
  ignoredXids: [13, 31]
  additionalIgnoredXids: [94]
  criticalXids: [45]
  recoveryQuietPeriod: 1h30m
  probeInterval: 250ms
metrics:
  bindAddress: 127.0.0.1
  port: 0
  sampleInterval: 2s
  podResourcesSocket: /run/pr.sock
  dcgmCompatibility: true
log:
  level: debug
  format: json
)");
  EXPECT_EQ(c.mig_strategy, MigStrategy::kMixed);
  EXPECT_FALSE(c.fail_on_init_error);
  EXPECT_EQ(c.driver_root, "/run/nvidia/driver");
  EXPECT_EQ(c.container_driver_root, "/driver-root");
  EXPECT_EQ(c.EffectiveDriverRoot(), "/driver-root");
  EXPECT_EQ(c.nvml_library, "/usr/lib64/libnvidia-ml.so.1");
  EXPECT_FALSE(c.require_minimum_versions);
  EXPECT_FALSE(c.pass_device_specs);
  EXPECT_THAT(c.device_list_strategy,
              ElementsAre(DeviceListStrategy::kVolumeMounts, DeviceListStrategy::kCdiCri));
  EXPECT_EQ(c.device_id_strategy, DeviceIdStrategy::kIndex);
  EXPECT_EQ(c.plugin_directory, "/tmp/dp");
  EXPECT_EQ(c.resource_name, "example.com/accelerator");
  EXPECT_FALSE(c.health.enabled);
  EXPECT_THAT(c.health.ignored_xids, ElementsAre(13, 31, 94));
  EXPECT_EQ(c.health.recovery_quiet_period, 5400s);
  EXPECT_EQ(c.health.probe_interval, 250ms);
  EXPECT_EQ(c.metrics_bind_address, "127.0.0.1");
  EXPECT_EQ(c.metrics_port, 0);
  EXPECT_EQ(c.metrics_sample_interval, 2000ms);
  EXPECT_EQ(c.metrics_pod_resources_socket, "/run/pr.sock");
  EXPECT_TRUE(c.metrics_dcgm_compatibility);
  EXPECT_EQ(c.node_name, "gpu-node-7");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "json");
}

TEST(ParseConfigTest, DeviceListStrategyTakesAStringOrAList) {
  EXPECT_THAT(Parse("version: v1\nflags: {plugin: {deviceListStrategy: cdi-annotations}}")
                  .device_list_strategy,
              ElementsAre(DeviceListStrategy::kCdiAnnotations));
  EXPECT_THAT(Parse("version: v1\nflags: {plugin: {deviceListStrategy: 'envvar,cdi-cri'}}")
                  .device_list_strategy,
              ElementsAre(DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiCri));
}

TEST(ParseConfigTest, UnknownFieldNamesFullPathAndSuggests) {
  EXPECT_EQ(
      Errors("version: v1\nflags:\n  plugin:\n    deviceIdStrategy: uuid\n"),
      "flags.plugin.deviceIdStrategy (line 4): unknown field (did you mean deviceIDStrategy?)");
  EXPECT_THAT(Errors("version: v1\nflags:\n  migStratgy: none\n"),
              HasSubstr("flags.migStratgy (line 3): unknown field (did you mean migStrategy?)"));
  // The right name in the wrong section.
  EXPECT_THAT(Errors("version: v1\nflags:\n  plugin:\n    migStrategy: none\n"),
              HasSubstr("flags.plugin.migStrategy (line 4): unknown field (did you mean "
                        "flags.migStrategy?)"));
  EXPECT_THAT(Errors("version: v1\ngpus: {}\n"),
              HasSubstr("gpus (line 2): unknown field (did you mean resources.gpus?)"));
  // Nothing close: list what is known.
  EXPECT_THAT(Errors("version: v1\nzzzz: {}\n"),
              HasSubstr("zzzz (line 2): unknown field; known fields: version, flags, resources, "
                        "imex, sharing, health, metrics, log"));
}

TEST(ParseConfigTest, WrongTypesNamePathExpectedTypeAndValue) {
  EXPECT_THAT(Errors("version: v1\nflags: {failOnInitError: maybe}"),
              HasSubstr("flags.failOnInitError (line 2): expected a boolean (true or false), got "
                        "\"maybe\""));
  // A quoted "true" is a string, as in Go's YAML.
  EXPECT_THAT(Errors("version: v1\nflags: {failOnInitError: 'true'}"),
              HasSubstr("got the quoted string \"true\""));
  EXPECT_THAT(Errors("version: v1\nmetrics: {port: nine}"),
              HasSubstr("metrics.port (line 2): expected an integer, got \"nine\""));
  EXPECT_THAT(Errors("version: v1\nmetrics: {port: [1]}"),
              HasSubstr("metrics.port (line 2): expected an integer, got a list"));
  EXPECT_THAT(Errors("version: v1\nhealth: {ignoredXids: 13}"),
              HasSubstr("health.ignoredXids (line 2): expected a list, got \"13\""));
  EXPECT_THAT(Errors("version: v1\nhealth: {ignoredXids: [13, x]}"),
              HasSubstr("health.ignoredXids[1] (line 2): expected an integer, got \"x\""));
  EXPECT_THAT(Errors("version: v1\nflags: [a]"),
              HasSubstr("flags (line 2): expected a mapping of fields, got a list"));
  EXPECT_THAT(Errors("version: v1\nflags: {plugin: {resourceName: {a: b}}}"),
              HasSubstr("flags.plugin.resourceName (line 2): expected a string, got a mapping"));
  // null is unset, as NVIDIA's plugin prints it ("useNodeFeatureAPI": null).
  EXPECT_EQ(Parse("version: v1\nflags: {migStrategy: , useNodeFeatureAPI: null}").mig_strategy,
            MigStrategy::kNone);
  EXPECT_THAT(Errors("- a\n- b\n"), HasSubstr("(document): expected a mapping"));
}

TEST(ParseConfigTest, EnumErrorsListAcceptedValues) {
  EXPECT_THAT(Errors("version: v1\nflags: {migStrategy: foo}"),
              HasSubstr("flags.migStrategy (line 2): \"foo\" is not one of none, single, mixed"));
  EXPECT_THAT(Errors("version: v1\nflags: {plugin: {deviceListStrategy: [envvar, cdi]}}"),
              HasSubstr("flags.plugin.deviceListStrategy[1] (line 2): \"cdi\" is not one of "
                        "envvar, volume-mounts, cdi-annotations, cdi-cri"));
  EXPECT_THAT(Errors("version: v1\nlog: {level: verbose, format: xml}"),
              HasSubstr("log.level (line 2): \"verbose\" is not one of debug, info, warn, error"));
}

TEST(ParseConfigTest, VersionIsRequiredInANonEmptyDocument) {
  EXPECT_EQ(Errors("flags: {migStrategy: none}"),
            "version: required; add \"version: v1\" at the top of the file");
  EXPECT_EQ(Errors("version: v2"),
            "version (line 1): \"v2\" is not supported; this plugin reads version v1");
}

TEST(ParseConfigTest, ReportsEveryProblemAtOnce) {
  std::string errors = Errors(R"(
version: v1
flags:
  migStrategy: foo
  failOnInitError: 3
  nvidiaDriverRoot: relative/path
  plugin:
    resourceName: gpu
metrics:
  port: 70000
  colour: blue
)");
  EXPECT_THAT(errors, HasSubstr("flags.migStrategy (line 4)"));
  EXPECT_THAT(errors, HasSubstr("flags.failOnInitError (line 5)"));
  EXPECT_THAT(
      errors,
      HasSubstr("flags.nvidiaDriverRoot (line 6): \"relative/path\" must be an absolute path"));
  EXPECT_THAT(
      errors,
      HasSubstr(
          "flags.plugin.resourceName (line 8): \"gpu\" is not a valid extended resource name"));
  EXPECT_THAT(errors, HasSubstr("metrics.port (line 10): 70000 is out of range 0 to 65535"));
  EXPECT_THAT(errors, HasSubstr("metrics.colour (line 11): unknown field"));
  EXPECT_EQ(std::count(errors.begin(), errors.end(), '\n'), 5) << errors;
}

TEST(ParseConfigTest, DuplicateKeysAreErrors) {
  EXPECT_THAT(Errors("version: v1\nlog:\n  level: info\n  level: debug\n"),
              HasSubstr("log.level (line 4): duplicate key"));
}

TEST(ParseConfigTest, SyntaxErrorNamesTheLine) {
  EXPECT_THAT(Errors("version: v1\nflags: {migStrategy: none\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(Errors("version: v1\nflags:\n  - a\n b: c\n"), HasSubstr("(line "));
}

// Found by fuzz_config: yaml-cpp 0.7's LoadAll never returns on a document
// that starts with ',', and Load takes it for an empty document.
TEST(ParseConfigTest, StrayCommaAtDocumentStartIsAnError) {
  EXPECT_THAT(Errors(","), HasSubstr("(document) (line 1, column 1): not valid YAML"));
  EXPECT_THAT(Errors("# comment\n,version: v1\n"), HasSubstr("(line 2, column 1): not valid YAML"));
  EXPECT_THAT(Errors("version: v1\n---\n,\n"), HasSubstr("not valid YAML"));
}

TEST(ParseConfigTest, OneDocumentOnly) {
  EXPECT_EQ(Parse("---\nversion: v1\nlog: {level: warn}\n...\n").log_level, "warn");
  EXPECT_EQ(Parse("---\n---\nversion: v1\nlog: {level: warn}\n").log_level, "warn");
  EXPECT_THAT(Errors("version: v1\n---\nversion: v1\n"),
              HasSubstr("(document): the file holds 2 YAML documents"));
}

TEST(ParseConfigTest, XidListsMerge) {
  EXPECT_THAT(Parse("version: v1\nhealth: {additionalIgnoredXids: [94, 13]}").health.ignored_xids,
              ElementsAre(13, 31, 43, 45, 68, 94, 109));
  EXPECT_THAT(Parse("version: v1\nhealth: {criticalXids: [43, 79]}").health.ignored_xids,
              ElementsAre(13, 31, 45, 68, 109));
  EXPECT_THAT(Parse("version: v1\nhealth: {ignoredXids: []}").health.ignored_xids, IsEmpty());
  EXPECT_THAT(Parse("version: v1\nhealth: {ignoredXids: [48, 48]}").health.ignored_xids,
              ElementsAre(48));
  EXPECT_THAT(Errors("version: v1\nhealth: {additionalIgnoredXids: [79], criticalXids: [79]}"),
              HasSubstr("health.criticalXids: XID 79 is also in health.additionalIgnoredXids"));
  EXPECT_THAT(Errors("version: v1\nhealth: {ignoredXids: [0, 13, 1000, -4]}"),
              AllOf(HasSubstr("health.ignoredXids[0] (line 2): 0 is out of range 1 to 999"),
                    HasSubstr("health.ignoredXids[2] (line 2): 1000 is out of range 1 to 999"),
                    HasSubstr("health.ignoredXids[3] (line 2): -4 is out of range 1 to 999")));
}

TEST(ParseConfigTest, Durations) {
  EXPECT_EQ(Parse("version: v1\nhealth: {recoveryQuietPeriod: 0}").health.recovery_quiet_period,
            0s);
  EXPECT_EQ(Parse("version: v1\nhealth: {recoveryQuietPeriod: 30s}").health.recovery_quiet_period,
            30s);
  EXPECT_EQ(Parse("version: v1\nhealth: {probeInterval: 1.5s}").health.probe_interval, 1500ms);
  EXPECT_THAT(Errors("version: v1\nhealth: {recoveryQuietPeriod: 300}"),
              HasSubstr("health.recoveryQuietPeriod (line 2): \"300\" has no unit"));
  EXPECT_THAT(Errors("version: v1\nhealth: {recoveryQuietPeriod: 1500ms}"),
              HasSubstr("must be a whole number of seconds"));
  EXPECT_THAT(Errors("version: v1\nhealth: {recoveryQuietPeriod: -5m}"),
              HasSubstr("health.recoveryQuietPeriod (line 2): -5m is negative"));
  EXPECT_THAT(Errors("version: v1\nhealth: {probeInterval: 0}"),
              HasSubstr("health.probeInterval (line 2): 0 must be positive"));
  EXPECT_THAT(Errors("version: v1\nhealth: {probeInterval: 5 minutes}"), HasSubstr("unknown unit"));
}

TEST(ParseDurationTest, GoSyntax) {
  struct Case {
    const char* text;
    std::optional<std::chrono::nanoseconds> want;
  };
  const Case cases[] = {
      {"0", 0ns},
      {"1ns", 1ns},
      {"2us", 2us},
      {"3µs", 3us},
      {"4ms", 4ms},
      {"5s", 5s},
      {"6m", 6min},
      {"7h", 7h},
      {"1h30m", 90min},
      {"1.5h", 90min},
      {".5s", 500ms},
      {"-2s", -2s},
      {"+2s", 2s},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"10", std::nullopt},
      {"5d", std::nullopt},
      {"1..5s", std::nullopt},
      {"3000000h", std::nullopt},
      {"99999999999999999999s", std::nullopt},
      {"-", std::nullopt},
  };
  for (const Case& c : cases) {
    auto got = detail::ParseDuration(c.text);
    if (c.want) {
      ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
      EXPECT_EQ(*got, *c.want) << c.text;
    } else {
      EXPECT_FALSE(got.ok()) << c.text << " parsed as " << got->count() << "ns";
    }
  }
  EXPECT_EQ(detail::FormatDuration(90min + 250ms), "1h30m250ms");
  EXPECT_EQ(detail::FormatDuration(0s), "0");
}

TEST(ResourceNameTest, ExtendedResourceNames) {
  struct Case {
    std::string name;
    bool valid;
  };
  const Case cases[] = {
      {"nvidia.com/gpu", true},
      {"nvidia.com/mig-1g.10gb", true},
      {"example.com/A_b.c", true},
      {"gpu", false},
      {"/gpu", false},
      {"nvidia.com/", false},
      {"Nvidia.com/gpu", false},
      {"kubernetes.io/gpu", false},
      {"node.kubernetes.io/gpu", false},
      {"requests.nvidia.com/gpu", false},
      {"nvidia.com/-gpu", false},
      {"nvidia.com/gpu/x", false},
      {"nvidia..com/gpu", false},
      {"nvidia.com/" + std::string(63, 'a'), true},
      {"nvidia.com/" + std::string(64, 'a'), false},
      {std::string(64, 'a') + ".com/gpu", false},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_EQ(detail::IsValidExtendedResourceName(c.name, &why), c.valid) << c.name << ": " << why;
    if (!c.valid) {
      EXPECT_THAT(why, Not(IsEmpty())) << c.name;
    }
  }
}

TEST(ValidateTest, MetricsTlsNeedsBothFilesAsAbsolutePaths) {
  const Config c =
      Parse("version: v1\nmetrics:\n  tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key}\n");
  EXPECT_EQ(c.metrics_tls_cert_file, "/tls/tls.crt");
  EXPECT_EQ(c.metrics_tls_key_file, "/tls/tls.key");
  EXPECT_THAT(Errors("version: v1\nmetrics:\n  tls: {certFile: /tls/tls.crt}\n"),
              HasSubstr("metrics.tls: certFile and keyFile go together"));
  EXPECT_THAT(Errors("version: v1\nmetrics:\n  tls: {certFile: tls.crt, keyFile: /k}\n"),
              HasSubstr("metrics.tls.certFile (line 3): \"tls.crt\" must be an absolute path"));
}

TEST(ValidateTest, MetricsAuthNeedsTlsAndAPositiveTtl) {
  const Config c = Parse(
      "version: v1\nmetrics:\n  tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key}\n"
      "  auth: {enabled: true, cacheTtl: 30s}\n");
  EXPECT_TRUE(c.metrics_auth_enabled);
  EXPECT_EQ(c.metrics_auth_cache_ttl, std::chrono::seconds(30));
  EXPECT_EQ(Config{}.metrics_auth_cache_ttl, std::chrono::seconds(120));
  EXPECT_THAT(Errors("version: v1\nmetrics:\n  auth: {enabled: true}\n"),
              HasSubstr("metrics.auth.enabled (line 3): needs metrics.tls.certFile and keyFile"));
  EXPECT_THAT(Errors("version: v1\nmetrics:\n  auth: {cacheTtl: 0s}\n"),
              HasSubstr("metrics.auth.cacheTtl (line 3): must be at least 1s"));
}

TEST(ValidateTest, NamesEveryBadField) {
  Config c;
  c.driver_root = "";
  c.container_driver_root = "rel";
  c.nvml_library = "libnvidia-ml.so.1";
  c.plugin_directory = "dp";
  c.device_list_strategy = {DeviceListStrategy::kEnvvar, DeviceListStrategy::kEnvvar};
  c.resource_name = "kubernetes.io/gpu";
  c.health.ignored_xids = {0, 13, 13};
  c.health.probe_interval = -1ms;
  c.metrics_port = -1;
  c.metrics_bind_address = "not an address";
  c.log_level = "loud";
  c.log_format = "xml";
  c.version = "v0";
  std::vector<std::string> problems = Validate(c);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  for (const char* field :
       {"version:", "flags.nvidiaDriverRoot:", "flags.containerDriverRoot:", "flags.nvmlLibrary:",
        "flags.plugin.pluginDirectory:", "flags.plugin.deviceListStrategy: envvar is listed twice",
        "flags.plugin.resourceName:", "health.ignoredXids: XID 0 is out of range",
        "health.ignoredXids: XID 13 is listed twice", "health.probeInterval:", "metrics.port:",
        "metrics.bindAddress:", "log.level:", "log.format:"}) {
    EXPECT_THAT(all, HasSubstr(field));
  }
  EXPECT_EQ(problems.size(), 14u) << all;

  c = Config{};
  c.device_list_strategy.clear();
  EXPECT_THAT(Validate(c),
              ElementsAre(HasSubstr("flags.plugin.deviceListStrategy: must name at least one")));
  c = Config{};
  for (const char* addr :
       {"0.0.0.0", "::", "127.0.0.1", "fe80::1", "localhost", "node-1.example"}) {
    c.metrics_bind_address = addr;
    EXPECT_THAT(Validate(c), IsEmpty()) << addr;
  }
}

TEST(OverrideTest, OverridesWinOverTheFileAndNameTheirSource) {
  const std::string file = "version: v1\nflags: {migStrategy: single}\n";
  EXPECT_EQ(Parse(file, {{"flags.migStrategy", "mixed", "--mig-strategy"}}).mig_strategy,
            MigStrategy::kMixed);
  EXPECT_EQ(Errors(file, {{"flags.migStrategy", "foo", "--mig-strategy"}}),
            "flags.migStrategy (from --mig-strategy): \"foo\" is not one of none, single, mixed");
  EXPECT_EQ(Errors("", {{"metrics.port", "x", "METRICS_PORT"}}),
            "metrics.port (from METRICS_PORT): expected an integer, got \"x\"");
  // Validation problems name the source too.
  EXPECT_EQ(Errors("", {{"flags.nvidiaDriverRoot", "run/nvidia", "--driver-root"}}),
            "flags.nvidiaDriverRoot (from --driver-root): \"run/nvidia\" must be an absolute path");
  // Overrides apply without a file too, and replace a broken file value.
  EXPECT_EQ(Parse("version: v1\nmetrics: {port: x}", {{"metrics.port", "1234", "--metrics-port"}})
                .metrics_port,
            1234);
}

TEST(OverrideTest, ListsAreCommaSeparatedAndBooleansLenient) {
  Config c =
      Parse("", {{"flags.plugin.deviceListStrategy", "envvar, cdi-cri", "--device-list-strategy"},
                 {"health.ignoredXids", "48,63", "HEALTH_IGNORED_XIDS"},
                 {"flags.failOnInitError", "0", "FAIL_ON_INIT_ERROR"},
                 {"health.enabled", "true", "--disable-health-checks", true}});
  EXPECT_THAT(c.device_list_strategy,
              ElementsAre(DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiCri));
  EXPECT_THAT(c.health.ignored_xids, ElementsAre(48, 63));
  EXPECT_FALSE(c.fail_on_init_error);
  EXPECT_FALSE(c.health.enabled);
  EXPECT_THAT(Parse("", {{"health.ignoredXids", "", "--health-ignored-xids"}}).health.ignored_xids,
              IsEmpty());
  EXPECT_EQ(Errors("", {{"health.ignoredXids", "13,x", "--health-ignored-xids"}}),
            "health.ignoredXids[1] (from --health-ignored-xids): expected an integer, got \"x\"");
  EXPECT_EQ(
      Errors("", {{"flags.plugin.deviceListStrategy", "", "DEVICE_LIST_STRATEGY"}}),
      "flags.plugin.deviceListStrategy (from DEVICE_LIST_STRATEGY): must name at least one of "
      "envvar, volume-mounts, cdi-annotations, cdi-cri");
  // A flag value is text, not YAML: no surprise parsing of ':' or '#'.
  EXPECT_EQ(Parse("", {{"flags.nvmlLibrary", "/a #b: c", "--nvml-library"}}).nvml_library,
            "/a #b: c");
  EXPECT_THAT(Errors("", {{"flags.bogus", "1", "--bogus"}}),
              HasSubstr("flags.bogus: (from --bogus) no such setting"));
}

TEST(SchemaTest, SectionsAndKeys) {
  EXPECT_THAT(detail::ChildKeys(""), ElementsAre("version", "flags", "resources", "imex", "sharing",
                                                 "health", "metrics", "log", "labels"));
  EXPECT_THAT(detail::ChildKeys("metrics"),
              ElementsAre("bindAddress", "port", "sampleInterval", "podResourcesSocket",
                          "dcgmCompatibility", "tls", "auth"));
  EXPECT_THAT(detail::ChildKeys("metrics.tls"), ElementsAre("certFile", "keyFile"));
  EXPECT_THAT(detail::ChildKeys("metrics.auth"), ElementsAre("enabled", "cacheTtl"));
  EXPECT_TRUE(detail::IsSection("metrics.tls"));
  EXPECT_TRUE(detail::IsSection("flags.plugin"));
  EXPECT_FALSE(detail::IsSection("flags.migStrategy"));
  EXPECT_EQ(detail::EditDistance("deviceIdStrategy", "deviceIDStrategy"), 0u);
  EXPECT_EQ(detail::EditDistance("kitten", "sitting"), 3u);
}

// Every row's flag reads back the default its docs show: the codec that
// decodes a field and the one that shows it agree.
TEST(SchemaTest, EveryFlagReadsBackItsShownDefault) {
  const Config defaults;
  for (const detail::FieldSpec& f : detail::Fields()) {
    if (f.flag == nullptr || f.not_acted_on != nullptr) continue;
    std::string text = f.codec.show(defaults);
    if (!text.empty() && text.front() == '[') {
      text = text.substr(1, text.size() - 2);
      text.erase(std::remove(text.begin(), text.end(), ' '), text.end());
    }
    if (f.negate) text = text == "true" ? "false" : "true";
    absl::StatusOr<Config> got = ParseConfig("", {{f.path, text, f.flag, f.negate}});
    ASSERT_TRUE(got.ok()) << f.path << " = " << text << ": " << got.status();
    EXPECT_EQ(*got, defaults) << f.path << " = " << text;
  }
}

// docs/configuration.md's field table is the schema's, as
// `gpu-device-plugin config-fields` prints it (hack/gen-config-docs.sh writes it).
TEST(SchemaTest, TheDocsFieldTableIsTheSchemas) {
  std::ifstream in(std::string(GDP_DOCS_DIR) + "/configuration.md");
  ASSERT_TRUE(in) << GDP_DOCS_DIR << "/configuration.md";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- fields: begin -->\n", end = "<!-- fields: end -->";
  const size_t a = doc.find(begin), b = doc.find(end);
  ASSERT_NE(a, std::string::npos) << "no " << begin << " in docs/configuration.md";
  ASSERT_NE(b, std::string::npos) << "no " << end << " in docs/configuration.md";
  EXPECT_EQ(doc.substr(a + begin.size(), b - a - begin.size()), detail::FieldsMarkdown())
      << "docs/configuration.md's field table differs from the schema; run hack/gen-config-docs.sh";
}

TEST(LabelsConfigTest, DefaultsFileAndOverrides) {
  Config defaults;
  EXPECT_TRUE(defaults.labels.enabled);
  EXPECT_TRUE(defaults.labels.events);
  EXPECT_EQ(defaults.node_name, "");
  EXPECT_EQ(defaults.labels.resync_interval, std::chrono::seconds(300));

  auto c = ParseConfig(
      "version: v1\nflags:\n  nodeName: n1\nlabels:\n  enabled: false\n  kubeconfig: /k\n"
      "  nfdFeatureFile: /f\n  events: false\n  resyncInterval: 90s\n",
      {Override{"flags.nodeName", "node-b", "NODE_NAME"},
       Override{"labels.enabled", "true", "--node-labels"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->labels.enabled);
  EXPECT_EQ(c->node_name, "node-b");
  EXPECT_EQ(c->labels.kubeconfig, "/k");
  EXPECT_EQ(c->labels.nfd_feature_file, "/f");
  EXPECT_FALSE(c->labels.events);
  EXPECT_EQ(c->labels.resync_interval, std::chrono::seconds(90));
}

TEST(LabelsConfigTest, ValidateNamesEachBadField) {
  Config c;
  c.node_name = "bad name";
  c.labels.kubeconfig = "rel";
  c.labels.nfd_feature_file = "rel2";
  c.labels.resync_interval = std::chrono::seconds(0);
  std::vector<std::string> problems = Validate(c);
  EXPECT_THAT(problems, ElementsAre(HasSubstr("flags.nodeName: \"bad name\" is not a node name"),
                                    HasSubstr("labels.kubeconfig: \"rel\" must be an absolute"),
                                    HasSubstr("labels.nfdFeatureFile: \"rel2\" must be"),
                                    HasSubstr("labels.resyncInterval: 0 must be at least 1s")));
}

// --- NVIDIA's config format (k8s-device-plugin v0.20) ---

// The JSON NVIDIA's plugin prints at start ("Running with config"), every
// field filled in: users paste it back as their config file.
constexpr char kNvidiaStartupDump[] = R"({
  "version": "v1",
  "flags": {
    "migStrategy": "single",
    "failOnInitError": true,
    "mpsRoot": "/run/nvidia/mps",
    "nvidiaDriverRoot": "/run/nvidia/driver",
    "nvidiaDevRoot": "/",
    "gdrcopyEnabled": false,
    "gdsEnabled": false,
    "mofedEnabled": false,
    "useNodeFeatureAPI": null,
    "deviceDiscoveryStrategy": "auto",
    "plugin": {
      "passDeviceSpecs": false,
      "deviceListStrategy": ["envvar"],
      "deviceIDStrategy": "uuid",
      "cdiAnnotationPrefix": "cdi.k8s.io/",
      "nvidiaCTKPath": "/usr/bin/nvidia-ctk",
      "containerDriverRoot": "/driver-root",
      "sharedDevicesAllocationPolicy": "packed"
    },
    "gfd": {
      "oneshot": false,
      "noTimestamp": false,
      "sleepInterval": "1m0s",
      "outputFile": "/etc/kubernetes/node-feature-discovery/features.d/gfd",
      "machineTypeFile": "/sys/class/dmi/id/product_name"
    }
  },
  "resources": {"gpus": [{"pattern": "*", "name": "nvidia.com/gpu"}]},
  "sharing": {"timeSlicing": {}},
  "imex": {}
})";

TEST(NvidiaFormatTest, TheStartupDumpLoadsWithNvidiasMeaning) {
  const Config c = Parse(kNvidiaStartupDump);
  EXPECT_EQ(c.mig_strategy, MigStrategy::kSingle);
  EXPECT_TRUE(c.fail_on_init_error);
  EXPECT_EQ(c.sharing.mps.root, "/run/nvidia/mps");
  EXPECT_EQ(c.driver_root, "/run/nvidia/driver");
  EXPECT_EQ(c.dev_root, "/");
  EXPECT_EQ(c.EffectiveDevRoot(), "/");
  EXPECT_EQ(c.container_driver_root, "/driver-root");
  EXPECT_EQ(c.EffectiveDriverRoot(), "/driver-root");
  EXPECT_FALSE(c.pass_device_specs);
  EXPECT_THAT(c.device_list_strategy, ElementsAre(DeviceListStrategy::kEnvvar));
  EXPECT_EQ(c.device_id_strategy, DeviceIdStrategy::kUuid);
  EXPECT_EQ(c.cdi_annotation_prefix, "cdi.k8s.io/");
  EXPECT_EQ(c.nvidia_cdi_hook_path, "/usr/bin/nvidia-ctk");
  EXPECT_EQ(c.sharing.allocation_policy, AllocationPolicy::kPacked);
  EXPECT_THAT(c.sharing.time_slicing.resources, IsEmpty());
  // Accepted, not acted on, each with its reason (false switches ask for nothing).
  std::vector<std::string> fields;
  for (const std::string& n : c.not_acted_on) fields.push_back(n.substr(0, n.find(':')));
  EXPECT_THAT(fields, ElementsAre("flags.gfd.sleepInterval", "flags.gfd.outputFile",
                                  "flags.gfd.machineTypeFile", "resources.gpus"));
  EXPECT_THAT(c.not_acted_on.back(), HasSubstr("as NVIDIA's plugin ignores them"));
}

TEST(NvidiaFormatTest, DocumentsUsersWriteLoadToTheExpectedConfig) {
  struct Case {
    const char* name;
    std::string yaml;
    std::function<void(const Config&)> check;
  };
  const std::vector<Case> cases = {
      {"README: MIG mixed, CDI",
       "version: v1\nflags:\n  migStrategy: mixed\n  failOnInitError: false\n"
       "  plugin:\n    deviceListStrategy: [cdi-annotations, cdi-cri]\n"
       "    cdiAnnotationPrefix: nvidia.cdi.k8s.io/\n",
       [](const Config& c) {
         EXPECT_EQ(c.mig_strategy, MigStrategy::kMixed);
         EXPECT_FALSE(c.fail_on_init_error);
         EXPECT_THAT(c.device_list_strategy,
                     ElementsAre(DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri));
         EXPECT_EQ(c.cdi_annotation_prefix, "nvidia.cdi.k8s.io/");
       }},
      {"deviceListStrategy as a string",
       "version: v1\nflags:\n  plugin:\n    deviceListStrategy: volume-mounts\n",
       [](const Config& c) {
         EXPECT_THAT(c.device_list_strategy, ElementsAre(DeviceListStrategy::kVolumeMounts));
       }},
      {"time-slicing",
       "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: false\n"
       "    failRequestsGreaterThanOne: false\n    resources:\n    - name: nvidia.com/gpu\n"
       "      replicas: 10\n",
       [](const Config& c) {
         ASSERT_EQ(c.sharing.time_slicing.resources.size(), 1u);
         EXPECT_EQ(c.sharing.time_slicing.resources[0].replicas, 10);
       }},
      {"MPS with NVIDIA's mpsRoot",
       "version: v1\nflags:\n  mpsRoot: /run/nvidia/mps\nsharing:\n  mps:\n    resources:\n"
       "    - name: nvidia.com/gpu\n      replicas: 4\n",
       [](const Config& c) {
         EXPECT_EQ(c.sharing.mps.root, "/run/nvidia/mps");
         ASSERT_EQ(c.sharing.mps.resources.size(), 1u);
       }},
      {"resources patterns, GPUs and MIG",
       "version: v1\nresources:\n  gpus:\n  - pattern: '*A100*'\n    name: a100\n"
       "  mig:\n  - pattern: 1g.10gb\n    name: mig-small\n",
       [](const Config& c) {
         EXPECT_EQ(c.resource_name, "nvidia.com/gpu");  // ignored, as NVIDIA's plugin does
         ASSERT_EQ(c.not_acted_on.size(), 2u);
         EXPECT_THAT(c.not_acted_on[1], HasSubstr("resources.mig: per-model resource names"));
       }},
      {"device extras and IMEX asked for",
       "version: v1\nflags:\n  gdrcopyEnabled: true\n  gdsEnabled: true\n  mofedEnabled: true\n"
       "imex:\n  channelIDs: [0, 3]\n  required: true\n",
       [](const Config& c) {
         EXPECT_TRUE(c.gdrcopy_enabled);
         EXPECT_TRUE(c.gds_enabled);
         EXPECT_TRUE(c.mofed_enabled);
         EXPECT_THAT(c.imex_channel_ids, ElementsAre(0u, 3u));
         EXPECT_TRUE(c.imex_required);
         EXPECT_THAT(c.not_acted_on, IsEmpty());
       }},
      {"ours and NVIDIA's place agree",
       "version: v1\nflags:\n  containerDriverRoot: /d\n  plugin:\n    containerDriverRoot: /d\n",
       [](const Config& c) { EXPECT_EQ(c.container_driver_root, "/d"); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Config> got = ParseConfig(c.yaml, {});
    ASSERT_TRUE(got.ok()) << got.status();
    c.check(*got);
  }
}

TEST(NvidiaFormatTest, FallbacksApplyOnlyWhereNothingElseSays) {
  const std::vector<Override> nvidia = {
      {"flags.containerDriverRoot", "/driver-root", "nvidia-device-plugin's default", false, true},
      {"flags.plugin.passDeviceSpecs", "false", "nvidia-device-plugin's default", false, true}};
  Config c = Parse("", nvidia);
  EXPECT_EQ(c.container_driver_root, "/driver-root");
  EXPECT_FALSE(c.pass_device_specs);
  // The file wins, at our place or at NVIDIA's.
  c = Parse(
      "version: v1\nflags:\n  plugin:\n    passDeviceSpecs: true\n"
      "    containerDriverRoot: /theirs\n",
      nvidia);
  EXPECT_TRUE(c.pass_device_specs);
  EXPECT_EQ(c.container_driver_root, "/theirs");
  // So does a real override, whatever the order.
  std::vector<Override> both = nvidia;
  both.insert(both.begin(), Override{"flags.plugin.passDeviceSpecs", "true", "PASS_DEVICE_SPECS"});
  EXPECT_TRUE(Parse("", both).pass_device_specs);
}

TEST(NvidiaFormatTest, ResourcePatternsActOnlyWhenAskedAndNameProblems) {
  const std::string patterns =
      "resources:\n  gpus:\n  - pattern: '*A100*'\n    name: a100\n"
      "  mig:\n  - pattern: 1g.10gb\n    name: example.com/mig-small\n";
  Config c = Parse("version: v1\n" + patterns);
  EXPECT_FALSE(c.use_resource_patterns);
  EXPECT_THAT(c.gpu_patterns, ElementsAre(ResourcePattern{"*A100*", "nvidia.com/a100"}));
  EXPECT_THAT(c.mig_patterns, ElementsAre(ResourcePattern{"1g.10gb", "example.com/mig-small"}));
  EXPECT_THAT(c.not_acted_on[0], HasSubstr("flags.plugin.useResourcePatterns: true acts on them"));
  c = Parse("version: v1\nflags:\n  plugin:\n    useResourcePatterns: true\n" + patterns);
  EXPECT_TRUE(c.use_resource_patterns);
  EXPECT_THAT(c.not_acted_on, IsEmpty());
  EXPECT_THAT(Errors("version: v1\nflags: {plugin: {useResourcePatterns: true}}\nresources:\n"
                     "  gpus: [{pattern: '*', name: 'Bad Name'}]\n"
                     "  mig: [{pattern: '*', name: nvidia.com/gpu}]\n"),
              AllOf(HasSubstr("resources.gpus[0].name: \"nvidia.com/Bad Name\" is not a valid "
                              "extended resource name"),
                    HasSubstr("resources.mig[0].name: \"nvidia.com/gpu\" is the full GPUs' "
                              "resource")));
  EXPECT_THAT(Errors("version: v1\nflags: {plugin: {useResourcePatterns: true}}\nresources:\n"
                     "  gpus: [{pattern: '*', name: x}]\n  mig: [{pattern: '*', name: x}]\n"),
              HasSubstr("resources.mig[0].name: \"nvidia.com/x\" is also resources.gpus[0]'s"));
}

TEST(NvidiaFormatTest, ErrorsStillNameTheField) {
  EXPECT_THAT(Errors("version: v1\nflags:\n  containerDriverRoot: /a\n  plugin:\n"
                     "    containerDriverRoot: /b\n"),
              HasSubstr("flags.plugin.containerDriverRoot (line 5): sets flags.containerDriverRoot "
                        "(NVIDIA's place for it), which flags.containerDriverRoot (line 3) sets "
                        "to another value; keep one"));
  EXPECT_THAT(Errors("version: v1\nflags:\n  deviceDiscoveryStrategy: tegra\n"),
              HasSubstr("flags.deviceDiscoveryStrategy (line 3): tegra is not supported"));
  EXPECT_THAT(Errors("version: v1\nflags:\n  deviceDiscoveryStrategy: magic\n"),
              HasSubstr("\"magic\" is not one of auto, nvml, tegra"));
  EXPECT_THAT(Errors("version: v1\nflags:\n  gfd:\n    oneshoot: true\n"),
              HasSubstr("flags.gfd.oneshoot (line 4): unknown field (did you mean oneshot?)"));
  EXPECT_THAT(Errors("version: v1\nresources:\n  gpus:\n  - name: a\n"),
              HasSubstr("resources.gpus[0] (line 4): expected {pattern, name}"));
  EXPECT_THAT(Errors("version: v1\nflags:\n  plugin:\n    cdiAnnotationPrefix: CDI\n"),
              HasSubstr("flags.plugin.cdiAnnotationPrefix (line 4): \"CDI\" is not an annotation "
                        "key prefix"));
  EXPECT_THAT(Errors("version: v1\nimex:\n  channelIDs: [5000]\n"),
              HasSubstr("imex.channelIDs[0] (line 3)"));
  EXPECT_THAT(Errors("version: v1\nimex:\n  required: true\n"),
              HasSubstr("imex.required: is true, but imex.channelIDs names no channel"));
}

}  // namespace
}  // namespace gdp::config
