// FindDriverFiles against driver roots laid out like real ones on disk: the
// libraries of the running version by the ld cache (through their soname
// links), firmware, binaries (through symlinks) and sockets that exist, and
// what it says when parts are missing.
#include "src/driver/driver_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/driver/ldcache.h"

namespace gdp::driver {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kVersion[] = "550.54.15";
constexpr char kHost[] = "/run/nvidia/driver";
constexpr char kLib[] = "/usr/lib/x86_64-linux-gnu";

class DriverRoot {
 public:
  DriverRoot() {
    std::string tmpl = (fs::temp_directory_path() / "driver_files_test.XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
  }
  ~DriverRoot() { fs::remove_all(root_); }
  const std::string& path() const { return root_; }

  void File(const std::string& p) {
    fs::create_directories(fs::path(root_ + p).parent_path());
    std::ofstream(root_ + p) << "x";
  }
  void Link(const std::string& p, const std::string& target) {
    fs::create_directories(fs::path(root_ + p).parent_path());
    fs::create_symlink(target, root_ + p);
  }
  void Socket(const std::string& p) {
    fs::create_directories(fs::path(root_ + p).parent_path());
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string full = root_ + p;
    ASSERT_LT(full.size(), sizeof addr.sun_path);
    std::memcpy(addr.sun_path, full.c_str(), full.size() + 1);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << full;
    ::close(s);
  }
  void Cache(const std::vector<LdCacheEntry>& entries) {
    fs::create_directories(root_ + "/etc");
    std::ofstream(root_ + "/etc/ld.so.cache", std::ios::binary) << WriteLdCache(entries);
  }

 private:
  std::string root_;
};

LdCacheEntry Entry(const std::string& soname, int32_t flags = NativeLdCacheFlags()) {
  return {soname, std::string(kLib) + "/" + soname, flags};
}

Mount M(const std::string& file, const std::string& at) { return {std::string(kHost) + file, at}; }
// A library file, or with `link_to` another name of one.
Mount L(const std::string& file, const std::string& at, const std::string& link_to = "") {
  return {std::string(kHost) + file, at, link_to, true};
}

TEST(DriverFilesTest, ARealLayout) {
  DriverRoot r;
  const std::string lib = kLib;
  // Libraries of the running version, reached through their soname links.
  r.File(lib + "/libcuda.so.550.54.15");
  r.Link(lib + "/libcuda.so.1", "libcuda.so.550.54.15");
  r.Link(lib + "/libcuda.so", "libcuda.so.1");
  r.File(lib + "/libnvidia-ml.so.550.54.15");
  r.Link(lib + "/libnvidia-ml.so.1", "libnvidia-ml.so.550.54.15");
  // Not the driver's: another library, a leftover of an older driver, a
  // dangling link, a 32-bit library.
  r.File(lib + "/libz.so.1.2.13");
  r.Link(lib + "/libz.so.1", "libz.so.1.2.13");
  r.File(lib + "/libnvidia-ptxjitcompiler.so.535.104.05");
  r.Link(lib + "/libnvidia-ptxjitcompiler.so.1", "libnvidia-ptxjitcompiler.so.535.104.05");
  r.Link(lib + "/libnvidia-nvvm.so.4", "libnvidia-nvvm.so.550.54.15");
  r.Cache({Entry("libcuda.so.1"),
           Entry("libcuda.so"),
           Entry("libnvidia-ml.so.1"),
           Entry("libz.so.1"),
           Entry("libnvidia-ptxjitcompiler.so.1"),
           Entry("libnvidia-nvvm.so.4"),
           {"libcuda.so.1", "/usr/lib32/libcuda.so.1", 0x0003}});
  r.File("/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin");
  r.File("/lib/firmware/nvidia/550.54.15/gsp_tu10x.bin");
  r.File("/lib/firmware/nvidia/550.54.15/README");
  r.File("/usr/bin/nvidia-smi");
  r.File("/usr/lib/nvidia/nvidia-cuda-mps-control");
  r.Link("/usr/bin/nvidia-cuda-mps-control", "../lib/nvidia/nvidia-cuda-mps-control");
  r.Socket("/run/nvidia-persistenced/socket");
  r.File("/run/nvidia-fabricmanager/socket");  // a file, not a socket: not mounted

  DriverFiles got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, kVersion);
  EXPECT_THAT(got.notes, IsEmpty());
  // Libraries in ld cache order (glibc's: names descending).
  EXPECT_THAT(
      got.mounts,
      ElementsAre(
          L(lib + "/libnvidia-ml.so.550.54.15", lib + "/libnvidia-ml.so.550.54.15"),
          L(lib + "/libnvidia-ml.so.550.54.15", lib + "/libnvidia-ml.so.1",
            lib + "/libnvidia-ml.so.550.54.15"),
          L(lib + "/libcuda.so.550.54.15", lib + "/libcuda.so.550.54.15"),
          L(lib + "/libcuda.so.550.54.15", lib + "/libcuda.so.1", lib + "/libcuda.so.550.54.15"),
          L(lib + "/libcuda.so.550.54.15", lib + "/libcuda.so", lib + "/libcuda.so.550.54.15"),
          M("/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin",
            "/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin"),
          M("/lib/firmware/nvidia/550.54.15/gsp_tu10x.bin",
            "/lib/firmware/nvidia/550.54.15/gsp_tu10x.bin"),
          M("/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi"),
          M("/usr/lib/nvidia/nvidia-cuda-mps-control", "/usr/bin/nvidia-cuda-mps-control"),
          M("/run/nvidia-persistenced/socket", "/run/nvidia-persistenced/socket")));
}

TEST(DriverFilesTest, AHostDriverAtTheRootKeepsItsPaths) {
  DriverRoot r;
  r.File(std::string(kLib) + "/libcuda.so.550.54.15");
  r.Link(std::string(kLib) + "/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15");
  r.Cache({Entry("libcuda.so.1")});
  DriverFiles got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), "/"}, kVersion);
  const std::string file = std::string(kLib) + "/libcuda.so.550.54.15";
  EXPECT_THAT(got.mounts,
              ElementsAre(Mount{file, file, "", true},
                          Mount{file, std::string(kLib) + "/libcuda.so.1", file, true}));
}

TEST(DriverFilesTest, MissingPartsAreNotedNotFatal) {
  DriverRoot r;
  r.File("/usr/bin/nvidia-smi");
  DriverFiles got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, kVersion);
  ASSERT_EQ(got.notes.size(), 1u);
  EXPECT_THAT(got.notes[0], HasSubstr("no ld cache at " + r.path() + "/etc/ld.so.cache"));
  EXPECT_THAT(got.mounts, ElementsAre(M("/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi")));

  // A cache of another driver's libraries, and one that is not a cache.
  r.File(std::string(kLib) + "/libcuda.so.535.104.05");
  r.Link(std::string(kLib) + "/libcuda.so.1", "libcuda.so.535.104.05");
  r.Cache({Entry("libcuda.so.1")});
  got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, kVersion);
  ASSERT_EQ(got.notes.size(), 1u);
  EXPECT_THAT(got.notes[0], HasSubstr("names no library of driver 550.54.15"));
  std::ofstream(r.path() + "/etc/ld.so.cache") << "garbage";
  got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, kVersion);
  ASSERT_EQ(got.notes.size(), 1u);
  EXPECT_THAT(got.notes[0], HasSubstr("not an ld.so.cache"));
  got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, "");
  EXPECT_THAT(got.mounts, IsEmpty());
  EXPECT_THAT(got.notes, ElementsAre(HasSubstr("driver version is unknown")));
}

TEST(DriverFilesTest, LinksDoNotLeaveTheDriverRoot) {
  DriverRoot r;
  // An absolute link is read inside the root, and "../.." stops at its top.
  r.File("/usr/bin/real-smi");
  r.Link("/usr/bin/nvidia-smi", "../../../../../usr/bin/real-smi");
  r.Link("/usr/bin/nvidia-debugdump", "/usr/bin/nvidia-debugdump");  // a loop
  DriverFiles got = FindDriverFiles(PosixFileSystem::Get(), {r.path(), kHost}, kVersion);
  EXPECT_THAT(got.mounts, ElementsAre(M("/usr/bin/real-smi", "/usr/bin/nvidia-smi")));
}

}  // namespace
}  // namespace gdp::driver
