// The filesystem seam. Components that look at host paths (device nodes,
// driver libraries, config files, CDI specs) take a FileSystem so tests can
// use a fake tree. PosixFileSystem is stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gdp {

struct FileInfo {
  enum class Type { kRegular, kDirectory, kCharDevice, kSymlink, kOther };
  Type type = Type::kOther;
  unsigned major = 0;  // device numbers, for kCharDevice
  unsigned minor = 0;
  // The file's identity (st_dev, st_ino of the path itself, not a symlink's
  // target): a path that names another file than before was replaced. 0 when
  // unknown.
  uint64_t fs_device = 0;
  uint64_t inode = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // NotFound when the path does not exist.
  virtual absl::StatusOr<FileInfo> Stat(const std::string& path) const = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) const = 0;
  // Writes through a temporary file in the same directory and renames it over
  // the target, so readers see the old or the new content, never a mix.
  virtual absl::Status WriteFileAtomic(const std::string& path,
                                       const std::string& content) const = 0;
  virtual absl::Status Remove(const std::string& path) const = 0;
  // Names of the entries in a directory (no "." or ".."), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) const = 0;
  // The target a symlink names, as written in it (relative or absolute).
  virtual absl::StatusOr<std::string> ReadLink(const std::string& path) const = 0;

  bool Exists(const std::string& path) const { return Stat(path).ok(); }
};

class PosixFileSystem final : public FileSystem {
 public:
  absl::StatusOr<FileInfo> Stat(const std::string& path) const override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) const override;
  absl::Status WriteFileAtomic(const std::string& path, const std::string& content) const override;
  absl::Status Remove(const std::string& path) const override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) const override;
  absl::StatusOr<std::string> ReadLink(const std::string& path) const override;
  // A process-wide instance; never destroyed.
  static const FileSystem& Get();
};

// Joins a root and an absolute path: JoinRoot("/run/nvidia/driver", "/dev/nvidia0")
// is "/run/nvidia/driver/dev/nvidia0"; a root of "/" or "" leaves the path as is.
std::string JoinRoot(const std::string& root, const std::string& path);

// The text for errno value `err` (thread-safe, unlike std::strerror).
std::string ErrnoString(int err);

// Turns errno into a Status that names the operation and path.
absl::Status ErrnoStatus(int err, const std::string& what, const std::string& path);

}  // namespace gdp
