// ReleaseCleanFilePages: it drops resident library pages, and it leaves every
// page whose content differs from the file (relocated pointers, written data)
// alone, so the process keeps working.
#include "src/daemon/resident_pages.h"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace gdp::daemon {
namespace {

long StatusKib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

// In a PIE these live in .data.rel.ro and .data: pages the dynamic loader or
// the program wrote, which must survive.
const char* const kRelocated[] = {"alpha", "beta", "gamma"};
int written_data[1024] = {1};

TEST(ReleaseCleanFilePages, DropsLibraryPagesAndKeepsWrittenOnes) {
  for (int i = 0; i < 1024; ++i) written_data[i] = i * 7;
  const long before = StatusKib("RssFile");
  const ReleasedPages released = ReleaseCleanFilePages();
  const long after = StatusKib("RssFile");

  EXPECT_GT(released.mappings, 0);
  EXPECT_GT(released.rss_kib, 0u);
  EXPECT_LT(after, before) << "released " << released.rss_kib << " KiB in " << released.mappings
                           << " mappings";
  EXPECT_STREQ(kRelocated[0], "alpha");
  EXPECT_STREQ(kRelocated[2], "gamma");
  for (int i = 0; i < 1024; ++i) ASSERT_EQ(written_data[i], i * 7) << i;

  // Library code runs again from re-read pages, and a second call is harmless.
  std::string s = std::to_string(12345) + "x";
  EXPECT_EQ(s, "12345x");
  EXPECT_GT(ReleaseCleanFilePages().mappings, 0);
  EXPECT_STREQ(kRelocated[1], "beta");
}

}  // namespace
}  // namespace gdp::daemon
