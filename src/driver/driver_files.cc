#include "src/driver/driver_files.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/driver/ldcache.h"

namespace gdp::driver {
namespace {

constexpr int kMaxLinks = 16;

// "/a/b/../c/./d" -> "/a/c/d", never above "/".
std::string Normalize(const std::string& path) {
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (p == ".") continue;
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(p);
  }
  std::string out;
  for (const std::string& p : parts) absl::StrAppend(&out, "/", p);
  return out.empty() ? "/" : out;
}

std::string Dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string Base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// The file `path` (absolute, inside the driver root) names once its symlinks
// are followed, kept inside the root; "" when it is missing or loops.
std::string Resolve(const FileSystem& fs, const std::string& seen_root, std::string path,
                    FileInfo::Type* type) {
  for (int hops = 0; hops <= kMaxLinks; ++hops) {
    absl::StatusOr<FileInfo> info = fs.Stat(JoinRoot(seen_root, path));
    if (!info.ok()) return "";
    if (info->type != FileInfo::Type::kSymlink) {
      *type = info->type;
      return path;
    }
    absl::StatusOr<std::string> target = fs.ReadLink(JoinRoot(seen_root, path));
    if (!target.ok()) return "";
    path = Normalize(absl::StartsWith(*target, "/") ? *target : Dir(path) + "/" + *target);
  }
  return "";
}

class Collector {
 public:
  Collector(const FileSystem& fs, const DriverRootPaths& root) : fs_(fs), root_(root) {}

  // Mounts `file` (in the root) at `at`; `link_to`, `library`: see Mount.
  void Add(const std::string& file, const std::string& at, const std::string& link_to = "",
           bool library = false) {
    if (!seen_.insert(at).second) return;
    out.mounts.push_back(Mount{JoinRoot(root_.host, file), at, link_to, library});
  }

  void Libraries(const std::string& version) {
    const std::string cache_path = JoinRoot(root_.seen, "/etc/ld.so.cache");
    absl::StatusOr<std::string> bytes = fs_.ReadFile(cache_path);
    if (!bytes.ok()) {
      out.notes.push_back(absl::StrCat("no ld cache at ", cache_path, " (",
                                       bytes.status().message(),
                                       "): containers get no driver library; run ldconfig in "
                                       "the driver root"));
      return;
    }
    absl::StatusOr<std::vector<LdCacheEntry>> entries = ParseLdCache(*bytes);
    if (!entries.ok()) {
      out.notes.push_back(absl::StrCat(cache_path, ": ", entries.status().message(),
                                       "; containers get no driver library"));
      return;
    }
    const std::string suffix = absl::StrCat(".so.", version);
    size_t found = 0;
    for (const LdCacheEntry& e : *entries) {
      if (e.flags != NativeLdCacheFlags() || !absl::StartsWith(e.path, "/")) continue;
      FileInfo::Type type = FileInfo::Type::kOther;
      const std::string file = Resolve(fs_, root_.seen, Normalize(e.path), &type);
      if (file.empty() || type != FileInfo::Type::kRegular || !absl::EndsWith(Base(file), suffix)) {
        continue;
      }
      ++found;
      Add(file, file, "", true);
      if (const std::string name = Normalize(e.path); name != file) {
        Add(file, name, file, true);  // libcuda.so.1: the same file under the cache's name
      }
    }
    if (found == 0) {
      out.notes.push_back(absl::StrCat("the ld cache ", cache_path, " names no library of driver ",
                                       version, " (*", suffix, "); containers get none"));
    }
  }

  void Firmware(const std::string& version) {
    const std::string dir = absl::StrCat("/lib/firmware/nvidia/", version);
    absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(JoinRoot(root_.seen, dir));
    if (!names.ok()) return;  // drivers without GSP firmware have none
    for (const std::string& name : *names) {
      if (absl::StartsWith(name, "gsp") && absl::EndsWith(name, ".bin")) {
        const std::string path = absl::StrCat(dir, "/", name);
        Add(path, path);
      }
    }
  }

  void Binaries() {
    for (const std::string& name : kDriverBinaries) {
      for (const std::string& folder : kBinaryFolders) {
        FileInfo::Type type = FileInfo::Type::kOther;
        const std::string at = absl::StrCat(folder, "/", name);
        const std::string file = Resolve(fs_, root_.seen, at, &type);
        if (file.empty() || type != FileInfo::Type::kRegular) continue;
        Add(file, at);
        break;
      }
    }
  }

  void Sockets() {
    for (const std::string& socket : kDriverSockets) {
      absl::StatusOr<FileInfo> info = fs_.Stat(JoinRoot(root_.seen, socket));
      if (info.ok() && info->type == FileInfo::Type::kOther) Add(socket, socket);
    }
  }

  DriverFiles out;

 private:
  const FileSystem& fs_;
  const DriverRootPaths& root_;
  std::set<std::string> seen_;  // container paths
};

}  // namespace

DriverFiles FindDriverFiles(const FileSystem& fs, const DriverRootPaths& root,
                            const std::string& version) {
  Collector c(fs, root);
  if (version.empty()) {
    c.out.notes.emplace_back("the driver version is unknown: containers get no driver file");
    return c.out;
  }
  c.Libraries(version);
  c.Firmware(version);
  c.Binaries();
  c.Sockets();
  return c.out;
}

}  // namespace gdp::driver
