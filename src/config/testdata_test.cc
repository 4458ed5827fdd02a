// Loads every file in tests/testdata/config: valid-*.yaml must load,
// invalid-*.yaml must fail with every fragment named on its "# expect:" lines.
// Adding a file adds a case. The fuzz seed corpus must hold a copy of each.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/common/filesystem.h"
#include "src/config/config.h"

namespace gdp::config {
namespace {

const std::string kDir = GDP_CONFIG_TESTDATA_DIR;

std::vector<std::string> Files() {
  auto names = PosixFileSystem::Get().ListDir(kDir);
  std::vector<std::string> files;
  if (!names.ok()) return files;
  for (const std::string& name : *names) {
    if (absl::EndsWith(name, ".yaml")) files.push_back(name);
  }
  return files;
}

class TestdataTest : public testing::TestWithParam<std::string> {};

TEST_P(TestdataTest, LoadsAsExpected) {
  const std::string path = kDir + "/" + GetParam();
  auto text = PosixFileSystem::Get().ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<Config> config = LoadConfig(PosixFileSystem::Get(), path, {});
  if (absl::StartsWith(GetParam(), "valid-")) {
    EXPECT_TRUE(config.ok()) << config.status();
    return;
  }
  ASSERT_TRUE(absl::StartsWith(GetParam(), "invalid-")) << "name must start valid- or invalid-";
  ASSERT_FALSE(config.ok()) << "loaded although invalid";
  const std::string message(config.status().message());
  int expectations = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::ConsumePrefix(&line, "# expect:")) continue;
    ++expectations;
    EXPECT_THAT(message, testing::HasSubstr(std::string(absl::StripAsciiWhitespace(line))));
  }
  EXPECT_GT(expectations, 0) << "an invalid file needs at least one '# expect: <fragment>' line";
  EXPECT_THAT(message, testing::StartsWith("invalid config file " + path + ":\n"));
}

std::string CaseName(const testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(0, info.param.size() - 5);
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Files, TestdataTest, testing::ValuesIn(Files()), CaseName);

TEST(TestdataTest, DirectoryHasBothKinds) {
  int valid = 0, invalid = 0;
  for (const std::string& f : Files()) {
    valid += absl::StartsWith(f, "valid-");
    invalid += absl::StartsWith(f, "invalid-");
  }
  EXPECT_GE(valid, 4);
  EXPECT_GE(invalid, 6);
}

TEST(TestdataTest, FuzzCorpusHoldsEveryFile) {
  for (const std::string& f : Files()) {
    auto want = PosixFileSystem::Get().ReadFile(kDir + "/" + f);
    auto got = PosixFileSystem::Get().ReadFile(kDir + "/../../../fuzz/corpus/config/" + f);
    ASSERT_TRUE(got.ok()) << "copy " << f << " into fuzz/corpus/config/: " << got.status();
    EXPECT_EQ(*got, *want) << f;
  }
}

TEST(LoadConfigTest, MissingFileIsNamed) {
  auto config = LoadConfig(PosixFileSystem::Get(), "/nonexistent/gdp/config.yaml", {});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(),
              testing::HasSubstr("cannot read config file /nonexistent/gdp/config.yaml"));
}

TEST(LoadConfigTest, NoFileMeansDefaultsPlusOverrides) {
  auto config = LoadConfig(PosixFileSystem::Get(), "", {{"log.level", "warn", "LOG_LEVEL"}});
  ASSERT_TRUE(config.ok()) << config.status();
  Config want;
  want.log_level = "warn";
  EXPECT_EQ(*config, want);
}

}  // namespace
}  // namespace gdp::config
