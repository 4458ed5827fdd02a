#include "src/common/filesystem.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

namespace gdp {
namespace {

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-fs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& name : fs_.ListDir(dir_).value_or(std::vector<std::string>{})) {
      ::unlink((dir_ + "/" + name).c_str());
    }
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
  PosixFileSystem fs_;
};

TEST_F(PosixFileSystemTest, WritesAtomicallyAndReadsBack) {
  const std::string path = dir_ + "/a.json";
  ASSERT_TRUE(fs_.WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(fs_.WriteFileAtomic(path, "two").ok());
  EXPECT_EQ(fs_.ReadFile(path).value(), "two");
  EXPECT_EQ(fs_.ListDir(dir_).value(), std::vector<std::string>{"a.json"});
  auto info = fs_.Stat(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type, FileInfo::Type::kRegular);
}

TEST_F(PosixFileSystemTest, MissingPathsAreNotFoundAndNamed) {
  auto r = fs_.ReadFile(dir_ + "/missing");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  EXPECT_NE(r.status().message().find(dir_ + "/missing"), std::string::npos);
  EXPECT_FALSE(fs_.Exists(dir_ + "/missing"));
}

TEST_F(PosixFileSystemTest, StatReportsCharacterDevices) {
  auto info = fs_.Stat("/dev/null");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type, FileInfo::Type::kCharDevice);
  EXPECT_EQ(info->major, 1u);
  EXPECT_EQ(info->minor, 3u);
}

TEST(JoinRootTest, Joins) {
  EXPECT_EQ(JoinRoot("/", "/dev/nvidia0"), "/dev/nvidia0");
  EXPECT_EQ(JoinRoot("", "/dev/nvidia0"), "/dev/nvidia0");
  EXPECT_EQ(JoinRoot("/run/nvidia/driver/", "/dev/nvidia0"), "/run/nvidia/driver/dev/nvidia0");
  EXPECT_EQ(JoinRoot("/r", "lib"), "/r/lib");
}

}  // namespace
}  // namespace gdp
