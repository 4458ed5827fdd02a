// An in-memory FileSystem for tests: a flat map from absolute path to entry.
// Directories exist implicitly as the parents of any added path, so
// AddCharDevice("/run/nvidia/driver/dev/nvidia0", 195, 0) is enough to make
// that tree visible to Stat and ListDir. Thread-safe (one mutex).
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/common/filesystem.h"

namespace gdp {

class FakeFileSystem final : public FileSystem {
 public:
  void AddFile(const std::string& path, std::string content) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[path] = Entry{FileInfo{FileInfo::Type::kRegular, 0, 0}, std::move(content)};
  }
  void AddCharDevice(const std::string& path, unsigned major, unsigned minor) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[path] = Entry{FileInfo{FileInfo::Type::kCharDevice, major, minor}, {}};
  }
  void AddSymlink(const std::string& path, std::string target) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[path] = Entry{FileInfo{FileInfo::Type::kSymlink, 0, 0}, std::move(target)};
  }
  void AddDirectory(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[path] = Entry{FileInfo{FileInfo::Type::kDirectory, 0, 0}, {}};
  }

  // Gives an existing entry a file identity (inode), as if it were replaced
  // by another file when the number changes.
  void SetInode(const std::string& path, uint64_t inode) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.at(path).info.inode = inode;
  }

  // Every later WriteFileAtomic fails with `status` (OkStatus() restores writes).
  void FailWrites(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    write_error_ = std::move(status);
  }

  absl::StatusOr<FileInfo> Stat(const std::string& path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = entries_.find(path); it != entries_.end()) return it->second.info;
    if (IsImplicitDirLocked(path)) return FileInfo{FileInfo::Type::kDirectory, 0, 0};
    return absl::NotFoundError("stat " + path + ": no such file or directory (fake)");
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(path);
    if (it == entries_.end()) return absl::NotFoundError("read " + path + ": not found (fake)");
    if (it->second.info.type != FileInfo::Type::kRegular) {
      return absl::FailedPreconditionError("read " + path + ": not a regular file (fake)");
    }
    return it->second.content;
  }
  absl::Status WriteFileAtomic(const std::string& path, const std::string& content) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!write_error_.ok()) return write_error_;
    entries_[path] = Entry{FileInfo{FileInfo::Type::kRegular, 0, 0}, content};
    return absl::OkStatus();
  }
  absl::Status Remove(const std::string& path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.erase(path) == 0)
      return absl::NotFoundError("remove " + path + ": not found (fake)");
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ReadLink(const std::string& path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(path);
    if (it == entries_.end()) return absl::NotFoundError("readlink " + path + ": not found (fake)");
    if (it->second.info.type != FileInfo::Type::kSymlink) {
      return absl::InvalidArgumentError("readlink " + path + ": not a symlink (fake)");
    }
    return it->second.content;
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string prefix = path.ends_with('/') ? path : path + "/";
    std::set<std::string> names;
    for (const auto& [p, e] : entries_) {
      if (!p.starts_with(prefix)) continue;
      std::string rest = p.substr(prefix.size());
      names.insert(rest.substr(0, rest.find('/')));
    }
    if (names.empty()) {
      auto it = entries_.find(path);
      if (it == entries_.end()) return absl::NotFoundError("list " + path + ": not found (fake)");
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

 private:
  struct Entry {
    FileInfo info;
    std::string content;
  };
  bool IsImplicitDirLocked(const std::string& path) const {
    const std::string prefix = path.ends_with('/') ? path : path + "/";
    auto it = entries_.lower_bound(prefix);
    return it != entries_.end() && it->first.starts_with(prefix);
  }

  mutable std::mutex mu_;
  mutable std::map<std::string, Entry> entries_;
  absl::Status write_error_;
};

}  // namespace gdp
