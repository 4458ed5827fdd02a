// The ld.so.cache reader against caches glibc's own ldconfig wrote, and the
// writer against glibc's own reader (ldconfig -p), so neither side checks
// only itself.
#include "src/driver/ldcache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace gdp::driver {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kLdconfig[] = "/sbin/ldconfig";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ldcache_test.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs a shell command and returns its standard output; "" on failure.
std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");  // NOLINT(cert-env33-c): a fixed test command
  if (p == nullptr) return out;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  ::pclose(p);
  return out;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "soname => path" of every native (x86-64 or AArch64) entry `ldconfig -p` prints.
std::set<std::string> LdconfigPrint(const std::string& cache) {
  std::set<std::string> out;
  std::istringstream lines(RunCommand(std::string(kLdconfig) + " -p -C " + cache));
  std::string line;
  while (std::getline(lines, line)) {
    const size_t arrow = line.find(" => "), paren = line.find(" (");
    if (arrow == std::string::npos || paren == std::string::npos) continue;
    const std::string abi = line.substr(paren, arrow - paren);
    if (abi.find("x86-64") == std::string::npos && abi.find("AArch64") == std::string::npos) {
      continue;
    }
    const size_t start = line.find_first_not_of(" \t");
    out.insert(line.substr(start, paren - start) + " => " + line.substr(arrow + 4));
  }
  return out;
}

std::set<std::string> Native(const std::vector<LdCacheEntry>& entries) {
  std::set<std::string> out;
  for (const LdCacheEntry& e : entries) {
    if (e.flags == NativeLdCacheFlags()) out.insert(e.soname + " => " + e.path);
  }
  return out;
}

TEST(LdCacheTest, ReadsWhatGlibcsLdconfigWrites) {
  if (::access(kLdconfig, X_OK) != 0) GTEST_SKIP() << kLdconfig << " is not installed";
  TempDir dir;
  // A library folder with two real shared objects under their sonames.
  const fs::path lib = fs::path(dir.path()) / "lib";
  fs::create_directories(lib);
  // This machine's libraries: ldconfig writes entries for the architecture of what it finds.
#if defined(__aarch64__)
  const fs::path libdir = "/usr/lib/aarch64-linux-gnu";
#else
  const fs::path libdir = "/usr/lib/x86_64-linux-gnu";
#endif
  for (const char* name : {"libz.so.1", "libyaml-cpp.so.0.7"}) {
    const fs::path src = libdir / name;
    if (!fs::exists(src)) GTEST_SKIP() << src << " is not installed";
    fs::copy_file(fs::canonical(src), lib / name);
  }
  std::ofstream(dir.path() + "/ld.so.conf") << lib.string() << "\n";
  const std::string cache = dir.path() + "/ld.so.cache";
  RunCommand(std::string(kLdconfig) + " -X -C " + cache + " -f " + dir.path() + "/ld.so.conf 2>&1");
  absl::StatusOr<std::vector<LdCacheEntry>> entries = ParseLdCache(Read(cache));
  ASSERT_TRUE(entries.ok()) << entries.status();
  const std::set<std::string> ours = Native(*entries);
  EXPECT_EQ(ours, LdconfigPrint(cache));
  EXPECT_TRUE(ours.count("libz.so.1 => " + (lib / "libz.so.1").string())) << cache;
}

TEST(LdCacheTest, GlibcsLdconfigReadsWhatWeWrite) {
  if (::access(kLdconfig, X_OK) != 0) GTEST_SKIP() << kLdconfig << " is not installed";
  std::vector<LdCacheEntry> entries = {
      {"libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", NativeLdCacheFlags()},
      {"libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", NativeLdCacheFlags()},
      {"libcuda.so", "/usr/lib/x86_64-linux-gnu/libcuda.so", NativeLdCacheFlags()},
      {"libnvidia-ptxjitcompiler.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
       NativeLdCacheFlags()},
  };
  TempDir dir;
  const std::string cache = dir.path() + "/ld.so.cache";
  std::ofstream(cache, std::ios::binary) << WriteLdCache(entries);
  EXPECT_EQ(LdconfigPrint(cache), Native(entries));
  absl::StatusOr<std::vector<LdCacheEntry>> back = ParseLdCache(Read(cache));
  ASSERT_TRUE(back.ok()) << back.status();
  // glibc's order: names descending, digits compared as numbers.
  ASSERT_EQ(back->size(), 4u);
  EXPECT_EQ((*back)[0].soname, "libnvidia-ptxjitcompiler.so.1");
  EXPECT_EQ((*back)[1].soname, "libnvidia-ml.so.1");
  EXPECT_EQ((*back)[2].soname, "libcuda.so.1");
  EXPECT_EQ((*back)[3].soname, "libcuda.so");
}

TEST(LdCacheTest, ReadsTheOlderLayoutWithTheCurrentOneAfterIt) {
  const std::string current = WriteLdCache({{"libcuda.so.1", "/lib/libcuda.so.1", 0x0303}});
  std::string old = "ld.so-1.7.0";
  old.push_back('\0');  // padding to 12
  const uint32_t nlibs = 1;
  old.append(reinterpret_cast<const char*>(&nlibs), sizeof nlibs);
  old.append(12, '\0');                  // one old entry
  old.append(8 - old.size() % 8, '\0');  // aligned to 8: 28 -> 32
  absl::StatusOr<std::vector<LdCacheEntry>> got = ParseLdCache(old + current);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].path, "/lib/libcuda.so.1");
}

TEST(LdCacheTest, WhatIsNotACacheSaysWhy) {
  EXPECT_THAT(ParseLdCache("hello").status().message(), HasSubstr("not an ld.so.cache"));
  const std::string good = WriteLdCache({{"libcuda.so.1", "/lib/libcuda.so.1", 0x0303}});
  EXPECT_THAT(ParseLdCache(good.substr(0, 30)).status().message(), HasSubstr("cut short"));
  EXPECT_THAT(ParseLdCache(good.substr(0, 60)).status().message(), HasSubstr("entries need"));
  // A string offset past the end.
  std::string bad = good.substr(0, 48 + 24);
  EXPECT_THAT(ParseLdCache(bad).status().message(), HasSubstr("names a string outside"));
  std::string old_only = "ld.so-1.7.0";
  old_only.append(5, '\0');
  EXPECT_THAT(ParseLdCache(old_only).status().message(), HasSubstr("pre-glibc-2.3"));
}

}  // namespace
}  // namespace gdp::driver
