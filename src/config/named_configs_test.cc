#include "src/config/named_configs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gdp::config {
namespace {

using ::testing::HasSubstr;

constexpr char kLabel[] = "nvidia.com/device-plugin.config";
const std::vector<FallbackStrategy> kNamedSingle = {FallbackStrategy::kNamed,
                                                    FallbackStrategy::kSingle};

TEST(NamedConfigsTest, FollowsNvidiasOrder) {
  const std::map<std::string, std::string> two = {{"default", "version: v1\n"},
                                                  {"timeslice4", "version: v1\n# ts\n"}};
  // The label wins.
  auto c = ChooseNamedConfig(two, kLabel, "timeslice4", "", kNamedSingle);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "timeslice4");
  EXPECT_EQ(c->why, "node label nvidia.com/device-plugin.config=timeslice4");
  // No label: the default name, then the fallbacks.
  c = ChooseNamedConfig(two, kLabel, "", "timeslice4", kNamedSingle);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->name, "timeslice4");
  c = ChooseNamedConfig(two, kLabel, "", "", kNamedSingle);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->name, "default");
  const std::map<std::string, std::string> one = {{"only", "version: v1\n"}};
  c = ChooseNamedConfig(one, kLabel, "", "", kNamedSingle);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->name, "only");
  EXPECT_THAT(c->why, HasSubstr("single"));
  c = ChooseNamedConfig({}, kLabel, "", "", {FallbackStrategy::kNamed, FallbackStrategy::kEmpty});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->name, "");
  EXPECT_EQ(c->yaml, "");
}

TEST(NamedConfigsTest, MissingNamesAreErrorsThatSayWhatThereIs) {
  const std::map<std::string, std::string> two = {{"a", "version: v1\n"}, {"b", "version: v1\n"}};
  auto c = ChooseNamedConfig(two, kLabel, "nope", "", kNamedSingle);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("=nope names no config (the configs are: a, b)"));
  EXPECT_THAT(c.status().message(), HasSubstr("keeping the running config"));
  c = ChooseNamedConfig(two, kLabel, "", "c", kNamedSingle);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("default config c"));
  c = ChooseNamedConfig(two, kLabel, "", "", kNamedSingle);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("tried: named, single"));
}

TEST(NamedConfigsTest, FallbackStrategyNames) {
  FallbackStrategy f{};
  for (auto s : {FallbackStrategy::kNamed, FallbackStrategy::kSingle, FallbackStrategy::kEmpty}) {
    ASSERT_TRUE(ParseFallbackStrategy(ToString(s), &f));
    EXPECT_EQ(f, s);
  }
  EXPECT_FALSE(ParseFallbackStrategy("Named", &f));
}

}  // namespace
}  // namespace gdp::config
