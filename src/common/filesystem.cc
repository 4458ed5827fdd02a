#include "src/common/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gdp {

std::string ErrnoString(int err) {
  char buf[256];
  // GNU strerror_r: returns either a static string or one written into buf.
  return ::strerror_r(err, buf, sizeof(buf));
}

absl::Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  std::string msg = absl::StrCat(what, " ", path, ": ", ErrnoString(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<FileInfo> PosixFileSystem::Stat(const std::string& path) const {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  FileInfo info;
  info.fs_device = st.st_dev;
  info.inode = st.st_ino;
  if (S_ISREG(st.st_mode))
    info.type = FileInfo::Type::kRegular;
  else if (S_ISDIR(st.st_mode))
    info.type = FileInfo::Type::kDirectory;
  else if (S_ISLNK(st.st_mode))
    info.type = FileInfo::Type::kSymlink;
  else if (S_ISCHR(st.st_mode)) {
    info.type = FileInfo::Type::kCharDevice;
    info.major = major(st.st_rdev);
    info.minor = minor(st.st_rdev);
  }
  return info;
}

absl::StatusOr<std::string> PosixFileSystem::ReadLink(const std::string& path) const {
  std::string target(4096, '\0');
  const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
  if (n < 0) return ErrnoStatus(errno, "readlink", path);
  if (static_cast<size_t>(n) == target.size()) {
    return absl::OutOfRangeError("readlink " + path + ": target longer than 4096 bytes");
  }
  target.resize(static_cast<size_t>(n));
  return target;
}

absl::StatusOr<std::string> PosixFileSystem::ReadFile(const std::string& path) const {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status PosixFileSystem::WriteFileAtomic(const std::string& path,
                                              const std::string& content) const {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", tmp);
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(err, "write", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "sync", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "rename to", path);
  }
  return absl::OkStatus();
}

absl::Status PosixFileSystem::Remove(const std::string& path) const {
  if (::unlink(path.c_str()) != 0) return ErrnoStatus(errno, "remove", path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& path) const {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, "open directory", path);
  std::vector<std::string> names;
  // readdir is safe here: glibc's is thread-safe on a DIR stream this call owns.
  while (const dirent* e = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe)
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

const FileSystem& PosixFileSystem::Get() {
  static const PosixFileSystem* const fs = new PosixFileSystem();
  return *fs;
}

std::string JoinRoot(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  if (path.empty() || path.front() != '/') return r + "/" + path;
  return r + path;
}

}  // namespace gdp
