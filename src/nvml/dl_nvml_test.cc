#include "src/nvml/dl_nvml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <latch>
#include <thread>

namespace gdp::nvml {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<DlNvml> OpenOrDie(const std::string& path) {
  auto nvml = DlNvml::Open(path);
  EXPECT_TRUE(nvml.ok()) << nvml.status();
  return nvml.ok() ? *std::move(nvml) : nullptr;
}

TEST(DlNvmlTest, OpenFailureCarriesDlerrorAndPath) {
  auto nvml = DlNvml::Open("/nonexistent/libnvidia-ml.so.1");
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nvml.status().message(), HasSubstr("/nonexistent/libnvidia-ml.so.1"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("cannot open shared object file"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("--driver-root"));
}

TEST(DlNvmlTest, OldDriverFallsBackToUnversionedSymbols) {
  auto nvml = OpenOrDie(FAKE_NVML_OLD);
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->Init(), NVML_SUCCESS);
  unsigned count = 0;
  EXPECT_EQ(nvml->DeviceGetCount(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(nvml->Shutdown(), NVML_SUCCESS);
}

TEST(DlNvmlTest, MissingSymbolAnswersFunctionNotFoundAndIsRecordedOnce) {
  auto nvml = OpenOrDie(FAKE_NVML_OLD);
  ASSERT_NE(nvml, nullptr);
  unsigned node = 7;
  nvmlPciInfo_t pci{};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(nvml->DeviceGetNumaNodeId(nullptr, &node), NVML_ERROR_FUNCTION_NOT_FOUND);
    EXPECT_EQ(nvml->DeviceGetPciInfo(nullptr, &pci), NVML_ERROR_FUNCTION_NOT_FOUND);
  }
  EXPECT_EQ(node, 7u);
  // No nvmlErrorString in an old library: the code's name stands in.
  EXPECT_EQ(nvml->ErrorString(NVML_ERROR_GPU_IS_LOST), "NVML_ERROR_GPU_IS_LOST");
  EXPECT_THAT(nvml->MissingSymbols(),
              ElementsAre("nvmlDeviceGetNumaNodeId", "nvmlDeviceGetPciInfo_v3", "nvmlErrorString"));
}

TEST(DlNvmlTest, NewDriverPrefersVersionedSymbols) {
  auto nvml = OpenOrDie(FAKE_NVML_NEW);
  ASSERT_NE(nvml, nullptr);
  // The fake's nvmlInit answers UNKNOWN and nvmlDeviceGetCount says 99.
  EXPECT_EQ(nvml->Init(), NVML_SUCCESS);
  unsigned count = 0;
  EXPECT_EQ(nvml->DeviceGetCount(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 2u);
  // No _v3: _v2 is used, not v1 (which answers UNKNOWN).
  nvmlPciInfo_t pci{};
  ASSERT_EQ(nvml->DeviceGetPciInfo(nullptr, &pci), NVML_SUCCESS);
  EXPECT_STREQ(pci.busId, "00000000:1B:00.0");
  EXPECT_EQ(nvml->ErrorString(NVML_ERROR_GPU_IS_LOST), "fake: GPU is lost");
  EXPECT_TRUE(nvml->MissingSymbols().empty());
}

TEST(DlNvmlTest, ResolvesLazilyAndSafelyFromManyThreads) {
  auto nvml = OpenOrDie(FAKE_NVML_NEW);
  ASSERT_NE(nvml, nullptr);
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<unsigned> counts(kThreads, 0);
  std::vector<nvmlReturn_t> numa(kThreads, NVML_SUCCESS);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();  // all first calls race
        nvml->DeviceGetCount(&counts[t]);
        unsigned node = 0;
        numa[t] = nvml->DeviceGetNumaNodeId(nullptr, &node);
      });
    }
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(counts[t], 2u);
    EXPECT_EQ(numa[t], NVML_ERROR_FUNCTION_NOT_FOUND);
  }
  EXPECT_THAT(nvml->MissingSymbols(), ElementsAre("nvmlDeviceGetNumaNodeId"));
}

class FindNvmlLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-nvml-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string Touch(const std::string& dir) {
    std::filesystem::create_directories(root_ + dir);
    const std::string path = root_ + dir + "/libnvidia-ml.so.1";
    EXPECT_TRUE(fs_.WriteFileAtomic(path, "not really a library").ok());
    return path;
  }
  std::string root_;
  PosixFileSystem fs_;
};

TEST_F(FindNvmlLibraryTest, FindsTheFirstSearchDirectoryUnderTheRoot) {
  const std::string debian = Touch("/usr/lib/x86_64-linux-gnu");
  EXPECT_EQ(FindNvmlLibrary(fs_, root_, "").value(), debian);
  const std::string lib64 = Touch("/usr/lib64");
  EXPECT_EQ(FindNvmlLibrary(fs_, root_ + "/", "").value(), lib64);
}

TEST_F(FindNvmlLibraryTest, ExplicitPathWins) {
  Touch("/usr/lib64");
  const std::string other = Touch("/opt/nvml");
  EXPECT_EQ(FindNvmlLibrary(fs_, root_, other).value(), other);
  EXPECT_EQ(FindNvmlLibrary(fs_, root_, "libnvidia-ml.so.1").value(), "libnvidia-ml.so.1");
  auto missing = FindNvmlLibrary(fs_, root_, root_ + "/nope.so");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr(root_ + "/nope.so"));
}

TEST_F(FindNvmlLibraryTest, NotFoundListsEveryPathAndTheFix) {
  auto r = FindNvmlLibrary(fs_, root_, "");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  for (const std::string& dir : NvmlLibrarySearchDirs()) {
    EXPECT_THAT(r.status().message(), HasSubstr(root_ + dir + "/libnvidia-ml.so.1"));
  }
  EXPECT_THAT(r.status().message(), HasSubstr("driver root mounted at " + root_));
  EXPECT_THAT(r.status().message(), HasSubstr("--driver-root or --nvml-library"));
}

TEST_F(FindNvmlLibraryTest, FoundSymlinkLoads) {
  std::filesystem::create_directories(root_ + "/usr/lib64");
  std::filesystem::create_symlink(FAKE_NVML_NEW, root_ + "/usr/lib64/libnvidia-ml.so.1");
  auto path = FindNvmlLibrary(fs_, root_, "");
  ASSERT_TRUE(path.ok()) << path.status();
  auto nvml = OpenOrDie(*path);
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->library_path(), root_ + "/usr/lib64/libnvidia-ml.so.1");
  EXPECT_EQ(nvml->Init(), NVML_SUCCESS);
}

}  // namespace
}  // namespace gdp::nvml
