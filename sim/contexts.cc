#include "sim/contexts.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "sim/errno_string.h"

namespace gdp::sim {

namespace {
constexpr char kMagic[16] = "gpusim-contexts";
constexpr uint32_t kVersion = 1;

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// An OFD lock request on byte `index` of the file.
struct flock LockOf(unsigned index, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = index;
  fl.l_len = 1;
  return fl;
}
}  // namespace

struct Contexts::File {
  struct Entry {
    std::atomic<uint32_t> in_use;
    std::atomic<uint32_t> slot;
    std::atomic<uint64_t> mem_bytes;
    std::atomic<uint32_t> util;
    uint32_t unused;
    std::atomic<int64_t> busy_until_ns;
  };
  char magic[16];
  uint32_t version;
  uint32_t count;
  Entry entries[kMaxContexts];
};

Contexts::~Contexts() {
  munmap(file_, sizeof(File));
  close(fd_);  // drops this process's locks: its entries are free
}

absl::StatusOr<std::unique_ptr<Contexts>> Contexts::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("open ", path, ": ", ErrnoString(errno)));
  }
  fchmod(fd, 0666);  // workloads in containers may run as any user
  // The first opener sizes and stamps it; the others wait for that.
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  struct stat st {};
  fstat(fd, &st);
  const bool fresh = st.st_size < static_cast<off_t>(sizeof(File));
  if (fresh && ftruncate(fd, sizeof(File)) != 0) {
    const int err = errno;
    flock(fd, LOCK_UN);
    close(fd);
    return absl::UnavailableError(absl::StrCat("ftruncate ", path, ": ", ErrnoString(err)));
  }
  void* m = mmap(nullptr, sizeof(File), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    const int err = errno;
    flock(fd, LOCK_UN);
    close(fd);
    return absl::UnavailableError(absl::StrCat("mmap ", path, ": ", ErrnoString(err)));
  }
  auto* file = static_cast<File*>(m);
  if (fresh || std::memcmp(file->magic, kMagic, sizeof kMagic) != 0) {
    std::memset(static_cast<void*>(file), 0, sizeof(File));
    file->version = kVersion;
    file->count = kMaxContexts;
    std::memcpy(file->magic, kMagic, sizeof kMagic);
  }
  flock(fd, LOCK_UN);
  if (file->version != kVersion || file->count != kMaxContexts) {
    munmap(m, sizeof(File));
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a contexts table of another version; lay the root out again"));
  }
  return std::unique_ptr<Contexts>(new Contexts(fd, file));
}

absl::StatusOr<unsigned> Contexts::Claim(unsigned slot) {
  std::lock_guard<std::mutex> lock(mu_);
  for (unsigned i = 0; i < kMaxContexts; ++i) {
    if ((mine_[i / 64] >> (i % 64)) & 1U) continue;
    struct flock fl = LockOf(i, F_WRLCK);
    if (fcntl(fd_, F_OFD_SETLK, &fl) != 0) continue;  // another process's
    File::Entry& e = file_->entries[i];
    e.mem_bytes.store(0, std::memory_order_relaxed);
    e.util.store(0, std::memory_order_relaxed);
    e.busy_until_ns.store(0, std::memory_order_relaxed);
    e.slot.store(slot, std::memory_order_relaxed);
    e.in_use.store(1, std::memory_order_release);
    mine_[i / 64] |= uint64_t{1} << (i % 64);
    return i;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("all ", kMaxContexts, " simulated contexts are in use"));
}

void Contexts::Release(unsigned index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index >= kMaxContexts || !((mine_[index / 64] >> (index % 64)) & 1U)) return;
  File::Entry& e = file_->entries[index];
  e.in_use.store(0, std::memory_order_release);
  e.mem_bytes.store(0, std::memory_order_relaxed);
  e.util.store(0, std::memory_order_relaxed);
  struct flock fl = LockOf(index, F_UNLCK);
  fcntl(fd_, F_OFD_SETLK, &fl);
  mine_[index / 64] &= ~(uint64_t{1} << (index % 64));
}

void Contexts::SetMemory(unsigned index, uint64_t bytes) {
  if (index < kMaxContexts) file_->entries[index].mem_bytes.store(bytes, std::memory_order_relaxed);
}

void Contexts::SetBusy(unsigned index, unsigned util, int64_t until_ns) {
  if (index >= kMaxContexts) return;
  file_->entries[index].util.store(util, std::memory_order_relaxed);
  file_->entries[index].busy_until_ns.store(until_ns, std::memory_order_relaxed);
}

bool Contexts::Live(unsigned index) const {
  if ((mine_[index / 64] >> (index % 64)) & 1U) return true;
  // Another process's entry counts while that process holds its lock.
  struct flock fl = LockOf(index, F_WRLCK);
  return fcntl(fd_, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

ContextUse Contexts::Use(unsigned slot) const {
  std::lock_guard<std::mutex> lock(mu_);
  ContextUse use;
  const int64_t now = NowNs();
  for (unsigned i = 0; i < kMaxContexts; ++i) {
    const File::Entry& e = file_->entries[i];
    if (e.in_use.load(std::memory_order_acquire) == 0 ||
        e.slot.load(std::memory_order_relaxed) != slot || !Live(i)) {
      continue;
    }
    ++use.contexts;
    use.mem_bytes += e.mem_bytes.load(std::memory_order_relaxed);
    if (e.busy_until_ns.load(std::memory_order_relaxed) > now) {
      use.util += e.util.load(std::memory_order_relaxed);
    }
  }
  return use;
}

}  // namespace gdp::sim
