#include "sim/user_space.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sim/root.h"
#include "src/driver/ldcache.h"

namespace gdp::sim {
namespace fs = std::filesystem;

namespace {

constexpr char kLibDir[] = "/usr/lib/x86_64-linux-gnu";
constexpr char kSoname[] = "libnvidia-ml.so.1";
// GSP firmware files of the real driver (stand-ins here, never loaded).
constexpr const char* kFirmware[] = {"gsp_ga10x.bin", "gsp_tu10x.bin"};

absl::Status Fail(const std::string& what, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat(what, ": ", ec.message()));
}

absl::Status WriteAtomically(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return Fail("cannot create the folder of " + path, ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << bytes;
    if (!out.flush()) return absl::InternalError("cannot write " + tmp);
  }
  fs::rename(tmp, path, ec);
  return ec ? Fail("cannot rename " + tmp, ec) : absl::OkStatus();
}

std::string VersionedLibraryName(const std::string& version) {
  return absl::StrCat("libnvidia-ml.so.", version);
}

}  // namespace

absl::Status LayDriverUserSpace(const std::string& root, const std::string& version,
                                const std::string& nvidia_smi) {
  const std::string dir = root + kLibDir;
  const std::string link = absl::StrCat(dir, "/", kSoname);
  const std::string versioned = VersionedLibraryName(version);
  std::error_code ec;
  // The library, as a file at the soname (fresh from LayoutRoot) or through the link.
  fs::path file = link;
  if (fs::is_symlink(link, ec)) file = fs::path(dir) / fs::read_symlink(link, ec);
  if (ec || !fs::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat("the simulator library is not at ", link,
                                            "; lay out the root with `gpusim root`"));
  }
  if (file.filename() != versioned) {
    fs::rename(file, fs::path(dir) / versioned, ec);
    if (ec) return Fail(absl::StrCat("cannot rename ", file.string(), " to ", versioned), ec);
  }
  // The soname link, replaced atomically.
  fs::remove(link + ".tmp", ec);
  fs::create_symlink(versioned, link + ".tmp", ec);
  if (!ec) fs::rename(link + ".tmp", link, ec);
  if (ec) return Fail("cannot link " + link, ec);
  // Another version's library files go.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, "libnvidia-ml.so.") && name != kSoname && name != versioned) {
      fs::remove(entry.path(), ec);
    }
  }
  // The ld cache: what ldconfig would list for the driver's library.
  const std::string cache = driver::WriteLdCache(
      {{kSoname, absl::StrCat(kLibDir, "/", kSoname), driver::NativeLdCacheFlags()}});
  if (absl::Status s = WriteAtomically(root + "/etc/ld.so.cache", cache); !s.ok()) return s;
  // The firmware folder of this version only.
  const fs::path firmware = fs::path(root) / "lib/firmware/nvidia";
  for (const auto& entry : fs::directory_iterator(firmware, ec)) {
    if (entry.path().filename() != version) fs::remove_all(entry.path(), ec);
  }
  for (const char* name : kFirmware) {
    const std::string path = (firmware / version / name).string();
    if (absl::Status s = WriteAtomically(
            path, absl::StrCat("gpusim: a stand-in for ", name, " of driver ", version, "\n"));
        !s.ok()) {
      return s;
    }
  }
  if (!nvidia_smi.empty()) {
    const std::string bin = root + "/usr/bin/nvidia-smi";
    fs::create_directories(fs::path(bin).parent_path(), ec);
    if (!ec) fs::copy_file(nvidia_smi, bin + ".tmp", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(bin + ".tmp", bin, ec);
    if (ec) return Fail("cannot install " + bin, ec);
  }
  return absl::OkStatus();
}

}  // namespace gdp::sim
