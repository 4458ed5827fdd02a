#include "sim/state.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "sim/errno_string.h"

namespace gdp::sim {

namespace {
constexpr uint64_t kMagic = 0x315f4d4953555047ULL;  // "GPUSIM_1"
// 2: memory temperature, PCIe, clock reasons, latency. 3: slots, removed GPUs,
// recovery actions, resets, typed events, layout generation, driver state.
constexpr uint32_t kVersion = 3;

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

struct FileLock {
  FileLock(int fd, int op) : fd_(fd) {
    while (flock(fd_, op) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { flock(fd_, LOCK_UN); }
  int fd_;
};
}  // namespace

struct SharedState::File {
  uint64_t magic;
  uint32_t version;
  uint32_t num_slots;        // slots handed out
  uint32_t futex_word;       // low 32 bits of event_count, changed only with the lock held
  uint32_t driver_unloaded;  // 0: loaded (a fresh state has the driver loaded)
  uint64_t event_count;
  uint64_t layout_generation;
  struct Gpu {
    Telemetry t;
    uint64_t energy_ts_ns;  // when t.energy_mj was last brought up to date
  } gpus[kMaxGpus];
  Event ring[kEventRing];
};

namespace {

void InitSlot(SharedState::File::Gpu* s, const GpuSpec& g) {
  *s = SharedState::File::Gpu{};
  Telemetry& t = s->t;
  t.temp_c = 34;
  t.mem_temp_c = 38;
  t.clocks_event_reasons = 0x1;  // nvmlClocksEventReasonGpuIdle
  t.power_mw = g.idle_power_w * 1000;
  t.sm_clock_mhz = 345;  // idle clocks
  t.mem_clock_mhz = g.max_mem_clock_mhz;
  s->energy_ts_ns = NowNs();
}

void InitFile(SharedState::File* f, const Profile& profile) {
  std::memset(static_cast<void*>(f), 0, sizeof(*f));
  f->magic = kMagic;
  f->version = kVersion;
  for (const GpuSpec& g : profile.gpus) {
    InitSlot(&f->gpus[g.slot], g);
    f->num_slots = std::max(f->num_slots, g.slot + 1);
  }
}
}  // namespace

SharedState::~SharedState() {
  munmap(file_, sizeof(File));
  close(fd_);
}

absl::StatusOr<std::unique_ptr<SharedState>> SharedState::Map(const std::string& path, int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != sizeof(File)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("simulator state ", path, " is not a state file of this gpusim version (size ",
                     st.st_size, ", want ", sizeof(File), "); recreate it with `gpusim root`"));
  }
  void* p = mmap(nullptr, sizeof(File), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("mmap ", path, ": ", ErrnoString(e)));
  }
  auto* f = static_cast<File*>(p);
  if (f->magic != kMagic || f->version != kVersion || f->num_slots > kMaxGpus) {
    munmap(p, sizeof(File));
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "simulator state ", path, " has a bad header; recreate it with `gpusim root`"));
  }
  return std::unique_ptr<SharedState>(new SharedState(path, fd, f));
}

absl::StatusOr<std::unique_ptr<SharedState>> SharedState::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open simulator state ", path, ": ",
                                            ErrnoString(errno),
                                            "; lay out the driver root with `gpusim root`"));
  }
  return Map(path, fd);
}

absl::Status SharedState::Reset(const std::string& path, const Profile& profile) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create simulator state ", path, ": ", ErrnoString(errno)));
  }
  fchmod(fd, 0666);  // the daemon and the injector may run as different users
  {
    FileLock lock(fd, LOCK_EX);
    auto f = std::make_unique<File>();
    InitFile(f.get(), profile);
    if (ftruncate(fd, sizeof(File)) != 0 || pwrite(fd, f.get(), sizeof(File), 0) != sizeof(File)) {
      int e = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("write ", path, ": ", ErrnoString(e)));
    }
  }
  close(fd);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SharedState>> SharedState::OpenOrCreate(const std::string& path,
                                                                       const Profile& profile) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open simulator state ", path, ": ", ErrnoString(errno)));
  }
  {
    FileLock lock(fd, LOCK_EX);
    struct stat st {};
    if (fstat(fd, &st) == 0 && st.st_size == 0) {
      auto f = std::make_unique<File>();
      InitFile(f.get(), profile);
      if (ftruncate(fd, sizeof(File)) != 0 ||
          pwrite(fd, f.get(), sizeof(File), 0) != sizeof(File)) {
        int e = errno;
        close(fd);
        return absl::InternalError(absl::StrCat("write ", path, ": ", ErrnoString(e)));
      }
    }
  }
  auto state = Map(path, fd);
  if (!state.ok()) return state;
  for (const GpuSpec& g : profile.gpus) {
    if (g.slot >= (*state)->num_slots()) {
      return absl::FailedPreconditionError(
          absl::StrCat("simulator state ", path, " has ", (*state)->num_slots(),
                       " GPU slots but profile ", profile.name, " puts GPU ", g.uuid, " in slot ",
                       g.slot, "; recreate the root with `gpusim root`"));
    }
  }
  return state;
}

unsigned SharedState::num_slots() const {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_SH);
  return file_->num_slots;
}

absl::StatusOr<unsigned> SharedState::AllocateSlot(const GpuSpec& gpu) {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_EX);
  if (file_->num_slots >= kMaxGpus) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this root has had ", kMaxGpus,
                     " GPUs, the most one root can have over its life; lay it out afresh with "
                     "`gpusim root`"));
  }
  unsigned slot = file_->num_slots++;
  InitSlot(&file_->gpus[slot], gpu);
  return slot;
}

Telemetry SharedState::Read(unsigned slot) const {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_SH);
  const File::Gpu& s = file_->gpus[slot];
  Telemetry t = s.t;
  uint64_t now = NowNs();
  if (now > s.energy_ts_ns && !t.lost && !t.removed) {
    t.energy_mj += static_cast<uint64_t>(t.power_mw) * (now - s.energy_ts_ns) / 1000000000ULL;
  }
  return t;
}

void SharedState::Update(unsigned slot, const std::function<void(Telemetry&)>& fn) {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_EX);
  File::Gpu& s = file_->gpus[slot];
  uint64_t now = NowNs();
  if (now > s.energy_ts_ns && !s.t.lost && !s.t.removed) {
    s.t.energy_mj += static_cast<uint64_t>(s.t.power_mw) * (now - s.energy_ts_ns) / 1000000000ULL;
  }
  s.energy_ts_ns = now;
  fn(s.t);
}

void SharedState::InjectXid(unsigned slot, unsigned xid) {
  {
    std::lock_guard<std::mutex> g(mu_);
    FileLock lock(fd_, LOCK_EX);
    file_->gpus[slot].t.xid_count++;
    file_->gpus[slot].t.last_xid = xid;
  }
  Post(slot, EventKind::kXid, xid);
}

void SharedState::Post(unsigned slot, EventKind kind, uint64_t data) {
  {
    std::lock_guard<std::mutex> g(mu_);
    FileLock lock(fd_, LOCK_EX);
    uint64_t seq = file_->event_count + 1;
    file_->ring[seq % kEventRing] = Event{seq, slot, kind, data};
    __atomic_store_n(&file_->event_count, seq, __ATOMIC_RELEASE);
    __atomic_store_n(&file_->futex_word, static_cast<uint32_t>(seq), __ATOMIC_RELEASE);
  }
  syscall(SYS_futex, &file_->futex_word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

uint64_t SharedState::LayoutGeneration() const {
  return __atomic_load_n(&file_->layout_generation, __ATOMIC_ACQUIRE);
}

void SharedState::BumpLayoutGeneration() {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_EX);
  __atomic_store_n(&file_->layout_generation, file_->layout_generation + 1, __ATOMIC_RELEASE);
}

bool SharedState::DriverLoaded() const {
  return __atomic_load_n(&file_->driver_unloaded, __ATOMIC_ACQUIRE) == 0;
}

void SharedState::SetDriverLoaded(bool loaded) {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_EX);
  __atomic_store_n(&file_->driver_unloaded, loaded ? 0u : 1u, __ATOMIC_RELEASE);
}

uint64_t SharedState::EventCount() const {
  return __atomic_load_n(&file_->event_count, __ATOMIC_ACQUIRE);
}

bool SharedState::NextEvent(uint64_t after, Event* out) const {
  std::lock_guard<std::mutex> g(mu_);
  FileLock lock(fd_, LOCK_SH);
  uint64_t count = file_->event_count;
  if (count <= after) return false;
  uint64_t oldest = count >= kEventRing ? count - kEventRing + 1 : 1;
  uint64_t seq = after + 1 < oldest ? oldest : after + 1;  // overrun: skip what was dropped
  *out = file_->ring[seq % kEventRing];
  return true;
}

void SharedState::WaitForEvent(uint64_t seen, std::chrono::nanoseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    uint32_t word = __atomic_load_n(&file_->futex_word, __ATOMIC_ACQUIRE);
    if (EventCount() > seen) return;
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    syscall(SYS_futex, &file_->futex_word, FUTEX_WAIT, word, &ts, nullptr, 0);
  }
}

}  // namespace gdp::sim
