// The simulator's NVML entry points: a drop-in libnvidia-ml.so.1.
//
// Every exported function has the C signature nvml.h declares and returns an
// nvmlReturn_t; no exception crosses the C ABI. The library's lifetime is
// reference-counted like real NVML's: the first nvmlInit starts a session
// (a Generation): it takes the driver lock shared (root.h, DriverLockPath;
// `gpusim driver stop` fails with EBUSY while any session holds it), loads the
// root's layout and maps the shared state; the matching last nvmlShutdown ends
// it. Generations are kept for the life of the process, so a stale handle is
// rejected (NVML_ERROR_INVALID_ARGUMENT), never dereferenced as freed memory.
//
// Within a session the set of full GPUs is the one seen at init (a GPU added
// later is not seen; one removed answers NVML_ERROR_GPU_IS_LOST), while MIG
// state is live: every call compares the state's layout generation with the
// session's snapshot (one atomic load) and, when it moved, re-reads the layout
// and builds a new Snapshot: MIG mode and devices per GPU and the set of valid
// handles. A MIG device that was destroyed drops out of that set, so its
// handle answers INVALID_ARGUMENT; handles are never freed.
//
// Check order, as the real library: initialised, handle valid, pointers
// non-NULL, then the GPU's health (a lost or removed GPU answers
// NVML_ERROR_GPU_IS_LOST).
//
// Thread-safety: all entry points are thread-safe. The global state is guarded
// by g_mu; a call holds shared_ptrs to the current Generation and Snapshot,
// which are immutable apart from the Generation's SharedState (which locks
// itself) and its handle arena (guarded by g_mu).
#include <dlfcn.h>
#include <fcntl.h>
#include <nvml.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "sim/contexts.h"
#include "sim/profile.h"
#include "sim/root.h"
#include "sim/root_finder.h"
#include "sim/state.h"

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

// The opaque handle types nvml.h forward-declares. Immutable once made. A MIG
// device is one GPU instance with one compute instance spanning it: its GPU
// and compute instance handles live inside its device handle, and are valid
// exactly while it is.
struct nvmlGpuInstance_st {
  const nvmlDevice_st* mig = nullptr;
};
struct nvmlComputeInstance_st {
  const nvmlDevice_st* mig = nullptr;
};

struct nvmlDevice_st {
  unsigned gpu = 0;                              // index in the session
  unsigned slot = 0;                             // state slot of the physical GPU
  unsigned minor = 0;                            // of the physical GPU
  const gdp::sim::GpuSpec* spec = nullptr;       // the physical GPU, as at session start
  const gdp::sim::MigDeviceSpec* mig = nullptr;  // null for a full GPU; else &own_mig
  gdp::sim::MigDeviceSpec own_mig;
  nvmlDevice_st* parent = nullptr;  // the full GPU of a MIG device
  nvmlGpuInstance_st gi;            // of a MIG device
  nvmlComputeInstance_st ci;        // of a MIG device
};

struct nvmlEventSet_st {
  std::mutex mu;
  std::map<const nvmlDevice_st*, unsigned long long> registered;  // guarded by mu
  uint64_t seen = 0;                                              // guarded by mu
};

struct nvmlSystemEventSet_st {
  std::mutex mu;
  unsigned long long types = 0;  // guarded by mu
  uint64_t seen = 0;             // guarded by mu
};

namespace {
using gdp::sim::EventKind;
using gdp::sim::GpuSpec;
using gdp::sim::Profile;
using gdp::sim::SharedState;

constexpr unsigned long long kMiB = 1024ULL * 1024ULL;

// The event types nvmlDeviceGetSupportedEventTypes lists for a GPU. A real H100
// 80GB HBM3 (driver 580, ECC on, MIG capable) answers 0xff9f: every type
// nvml.h defines (nvmlEventTypeAll), the "Kepler only" clock event included,
// so the driver lists generic events regardless of architecture. The rest is
// derived from what each type is about: the ECC types (and the DRAM
// retirement and poison types, which belong to Ampere's row remapping and
// error containment) need ECC, the MIG configuration event a MIG-capable GPU.
// XIDs, MIG configuration changes and recovery actions are generated; the
// others can merely be registered.
// Branches before R570 know none of the types R570 added (recovery action, GPU
// unavailable, SBE storm, DRAM retirement, poison).
unsigned long long SupportedEvents(const GpuSpec& g, bool change_events, bool r570_types) {
  unsigned long long types = nvmlEventTypePState | nvmlEventTypeXidCriticalError |
                             nvmlEventTypeClock | nvmlEventTypePowerSourceChange;
  if (r570_types) types |= nvmlEventTypeGpuUnavailableError | nvmlEventTypeGpuRecoveryAction;
  if (g.ecc) {
    types |= nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError;
    if (r570_types) types |= nvmlEventTypeSingleBitEccErrorStorm;
    if (r570_types && g.architecture >= NVML_DEVICE_ARCH_AMPERE) {
      types |= nvmlEventTypeDramRetirementEvent | nvmlEventTypeDramRetirementFailure |
               nvmlEventTypeNonFatalPoisonError | nvmlEventTypeFatalPoisonError;
    }
  }
  if (g.mig_capable && change_events) types |= nvmlEventMigConfigChange;
  return types;
}

// What a session sees of the live layout at one layout generation.
struct Snapshot {
  uint64_t generation = 0;
  std::unordered_set<const nvmlDevice_st*> valid;  // the GPUs and the live MIG devices
  struct Mig {
    bool enabled = false;
    std::vector<const nvmlDevice_st*> devices;  // in the layout's order
  };
  std::vector<Mig> mig;  // by session index
};

// One session: first nvmlInit to last nvmlShutdown.
struct Generation {
  Profile profile;  // as at session start: the session's GPUs and versions
  std::string root;
  std::unique_ptr<SharedState> state;
  std::vector<std::unique_ptr<nvmlDevice_st>> gpus;  // by session index
  std::vector<int> index_of_slot;                    // state slot -> session index, or -1
  // Every MIG handle made in this session, by MIG UUID; guarded by g_mu.
  std::vector<std::unique_ptr<nvmlDevice_st>> mig_arena;
  std::map<std::string, const nvmlDevice_st*> mig_by_uuid;
  std::shared_ptr<const Snapshot> snap;  // guarded by g_mu
  bool change_events = true;             // RootConfig::change_events, read at init
  // The driver branch's NVML has the recovery action field and R570's event types
  // (DriverBranch::recovery_action; the simulator's newest behaviour without a branch).
  bool recovery_action = true;
  // What workloads (the simulated libcuda) hold; nullptr when it cannot be opened.
  std::unique_ptr<gdp::sim::Contexts> contexts;
};

std::mutex g_mu;
int g_refcount = 0;                                      // guarded by g_mu
std::shared_ptr<Generation> g_current;                   // guarded by g_mu
std::vector<std::shared_ptr<Generation>> g_generations;  // guarded by g_mu; never shrinks
std::set<nvmlEventSet_st*> g_event_sets;                 // guarded by g_mu
std::set<nvmlSystemEventSet_st*> g_system_event_sets;    // guarded by g_mu
int g_driver_lock_fd = -1;  // guarded by g_mu; open (LOCK_SH) while a session is
// Handed the root over by the nvidia-persistenced stand-in (in a container):
// the session shows only the GPUs this process may use.
bool g_handed_root = false;  // guarded by g_mu

// The driver root (sim/root_finder.h). Needs g_mu.
std::string FindRoot() {
  const gdp::sim::FoundRoot found = gdp::sim::FindDriverRoot(reinterpret_cast<void*>(&FindRoot));
  g_handed_root = found.handed;
  return found.path;
}

void Complain(const std::string& what) {
  std::fprintf(stderr, "gpusim libnvidia-ml: %s\n", what.c_str());
}

void Flock(int fd, int op) {
  while (flock(fd, op) != 0 && errno == EINTR) {
  }
}

// Holds the root's layout lock shared, when the root has one (roots laid out
// before it existed have none: nothing to order then).
class LayoutReadLock {
 public:
  explicit LayoutReadLock(const std::string& root)
      : fd_(open(gdp::sim::LayoutLockPath(root).c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ >= 0) Flock(fd_, LOCK_SH);
  }
  ~LayoutReadLock() {
    if (fd_ >= 0) close(fd_);
  }
  LayoutReadLock(const LayoutReadLock&) = delete;
  LayoutReadLock& operator=(const LayoutReadLock&) = delete;

 private:
  int fd_;
};

// The session's view of `layout` (the root's current GPU list): per session
// GPU its MIG mode and devices, found by the GPU's state slot. A GPU no longer
// in the layout (removed) keeps its last MIG view; it answers GPU_IS_LOST.
// MIG handles are reused by MIG UUID and made for new devices. Needs g_mu (or
// a Generation no other thread sees yet).
std::shared_ptr<const Snapshot> BuildSnapshot(Generation* gen, const Profile& layout,
                                              uint64_t generation) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->mig.resize(gen->gpus.size());
  for (const auto& g : gen->gpus) snap->valid.insert(g.get());
  std::vector<const GpuSpec*> by_index(gen->gpus.size(), nullptr);
  for (const GpuSpec& g : layout.gpus) {
    if (g.slot < gen->index_of_slot.size() && gen->index_of_slot[g.slot] >= 0) {
      by_index[static_cast<size_t>(gen->index_of_slot[g.slot])] = &g;
    }
  }
  for (size_t i = 0; i < gen->gpus.size(); ++i) {
    const GpuSpec* g = by_index[i];
    if (g == nullptr) {  // removed: keep what it had
      if (gen->snap) snap->mig[i] = gen->snap->mig[i];
    } else {
      snap->mig[i].enabled = g->mig_enabled;
      for (const auto& m : g->mig_devices) {
        auto it = gen->mig_by_uuid.find(m.uuid);
        const nvmlDevice_st* h = nullptr;
        if (it != gen->mig_by_uuid.end()) {
          h = it->second;
        } else {
          auto d = std::make_unique<nvmlDevice_st>();
          nvmlDevice_st* parent = gen->gpus[i].get();
          d->gpu = parent->gpu;
          d->slot = parent->slot;
          d->minor = parent->minor;
          d->spec = parent->spec;
          d->own_mig = m;
          d->mig = &d->own_mig;
          d->gi.mig = d.get();
          d->ci.mig = d.get();
          d->parent = parent;
          h = d.get();
          gen->mig_by_uuid[m.uuid] = h;
          gen->mig_arena.push_back(std::move(d));
        }
        snap->mig[i].devices.push_back(h);
      }
    }
    for (const nvmlDevice_st* m : snap->mig[i].devices) snap->valid.insert(m);
  }
  return snap;
}

// Brings the session's snapshot up to the state's layout generation. Needs g_mu.
void Refresh(Generation* gen) {
  uint64_t generation;
  absl::StatusOr<Profile> layout;
  {
    LayoutReadLock lock(gen->root);
    generation = gen->state->LayoutGeneration();
    layout = gdp::sim::LoadRootProfile(gen->root);
  }
  if (!layout.ok()) {
    // Keep the last view; do not re-read until the layout moves again.
    Complain(std::string("cannot re-read the GPU layout: ") +
             std::string(layout.status().message()));
    auto snap = std::make_shared<Snapshot>(*gen->snap);
    snap->generation = generation;
    gen->snap = std::move(snap);
    return;
  }
  gen->snap = BuildSnapshot(gen, *layout, generation);
}

nvmlReturn_t Load(const std::string& root, std::shared_ptr<Generation>* out) {
  auto gen = std::make_shared<Generation>();
  gen->root = root;
  uint64_t generation;
  {
    LayoutReadLock lock(root);
    auto profile = gdp::sim::LoadRootProfile(root);
    if (!profile.ok()) {
      Complain(std::string(profile.status().message()));
      return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    gen->profile = std::move(*profile);
    // Handed the root over (in a container), the session has the GPUs this
    // process may use, numbered from 0, as the real driver gives a container.
    if (g_handed_root) {
      auto& gpus = gen->profile.gpus;
      gpus.erase(
          std::remove_if(gpus.begin(), gpus.end(),
                         [](const GpuSpec& g) { return !gdp::sim::UsableInThisProcess(g.minor); }),
          gpus.end());
    }
    if (auto config = gdp::sim::ReadConfig(root); config.ok()) {
      gen->change_events = config->change_events;
      if (const auto* branch = gdp::sim::FindDriverBranch(config->driver_branch)) {
        gen->recovery_action = branch->recovery_action;
      }
    }
    auto state = SharedState::OpenOrCreate(gdp::sim::StatePath(root), gen->profile);
    if (!state.ok()) {
      Complain(std::string(state.status().message()));
      return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    gen->state = std::move(*state);
    if (auto contexts = gdp::sim::Contexts::Open(gdp::sim::ContextsPath(root)); contexts.ok()) {
      gen->contexts = std::move(*contexts);
    }
    generation = gen->state->LayoutGeneration();
  }
  if (!gen->state->DriverLoaded()) {
    Complain(
        "the NVIDIA kernel module is not loaded (`gpusim driver stop`); `gpusim driver start` "
        "loads it");
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  gen->index_of_slot.assign(gdp::sim::kMaxGpus, -1);
  for (unsigned i = 0; i < gen->profile.gpus.size(); ++i) {
    const GpuSpec& g = gen->profile.gpus[i];
    auto d = std::make_unique<nvmlDevice_st>();
    d->gpu = i;
    d->slot = g.slot;
    d->minor = g.minor;
    d->spec = &g;
    gen->index_of_slot[g.slot] = static_cast<int>(i);
    gen->gpus.push_back(std::move(d));
  }
  gen->snap = BuildSnapshot(gen.get(), gen->profile, generation);
  *out = std::move(gen);
  return NVML_SUCCESS;
}

nvmlReturn_t DoInit() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_refcount == 0) {
    const std::string root = FindRoot();
    if (root.empty()) {
      Complain(std::string("cannot find the driver root: the library is not installed as <root>/") +
               gdp::sim::kLibraryRelPath + " and $" + gdp::sim::kRootEnv + " is not set");
      return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    // Hold the driver as a real process holds its device files: first the
    // lock (so `gpusim driver stop` cannot finish under us), then check that
    // the driver is loaded. A root without the lock file predates it.
    int lock_fd = open(gdp::sim::DriverLockPath(root).c_str(), O_RDONLY | O_CLOEXEC);
    if (lock_fd >= 0) Flock(lock_fd, LOCK_SH);
    std::shared_ptr<Generation> gen;
    nvmlReturn_t r;
    try {
      r = Load(root, &gen);
    } catch (const std::exception& e) {
      Complain(std::string("initialisation failed: ") + e.what());
      r = NVML_ERROR_UNKNOWN;
    }
    if (r != NVML_SUCCESS) {
      if (lock_fd >= 0) close(lock_fd);
      return r;
    }
    g_driver_lock_fd = lock_fd;
    g_current = gen;
    g_generations.push_back(gen);
  }
  ++g_refcount;
  return NVML_SUCCESS;
}

// The per-call context: the session and its view of the layout for this call.
struct Ctx {
  std::shared_ptr<Generation> gen;
  std::shared_ptr<const Snapshot> snap;

  // Resolves a device handle: one of this session's live ones, else INVALID_ARGUMENT
  // (a handle of an earlier session, or of a MIG device since destroyed).
  nvmlReturn_t Device(nvmlDevice_t h, const nvmlDevice_st** d) const {
    if (h == nullptr || !snap->valid.count(h)) return NVML_ERROR_INVALID_ARGUMENT;
    *d = h;
    return NVML_SUCCESS;
  }
  bool Lost(const nvmlDevice_st* d) const {
    auto t = gen->state->Read(d->slot);
    return t.lost || t.removed;
  }
  // The latency `gpusim set nvml-latency-ms=N` asked for, so benchmarks can
  // show what slow NVML calls cost.
  void Delay(const nvmlDevice_st* d) const {
    if (unsigned ms = gen->state->Read(d->slot).latency_ms; ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }
  const Snapshot::Mig& MigOf(const nvmlDevice_st* d) const { return snap->mig[d->gpu]; }
  // The MIG device behind a GPU or compute instance handle, if it is live.
  nvmlReturn_t Instance(const void* h, const nvmlDevice_st* mig, const nvmlDevice_st** d) const {
    if (h == nullptr || mig == nullptr || !snap->valid.count(mig)) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    *d = mig;
    return NVML_SUCCESS;
  }
};

// Needs g_mu.
void EnterLocked(Ctx* c) {
  Generation& gen = *g_current;
  if (gen.state->LayoutGeneration() != gen.snap->generation) Refresh(&gen);
  c->gen = g_current;
  c->snap = gen.snap;
}

nvmlReturn_t Enter(Ctx* c) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_refcount == 0 || !g_current) return NVML_ERROR_UNINITIALIZED;
  EnterLocked(c);
  return NVML_SUCCESS;
}

nvmlReturn_t CopyString(const std::string& s, char* dst, unsigned int length) {
  if (dst == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (length < s.size() + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(dst, s.c_str(), s.size() + 1);
  return NVML_SUCCESS;
}

void FillPci(unsigned domain, unsigned bus, unsigned dev, uint32_t device_id, uint32_t subsys,
             nvmlPciInfo_t* pci) {
  std::memset(pci, 0, sizeof(*pci));
  pci->domain = domain;
  pci->bus = bus;
  pci->device = dev;
  pci->pciDeviceId = device_id;
  pci->pciSubSystemId = subsys;
  std::snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
                domain & 0xffff, bus, dev);
  std::snprintf(pci->busId, sizeof pci->busId, NVML_DEVICE_PCI_BUS_ID_FMT, domain, bus, dev);
}

}  // namespace

// Resolve ctx and a device handle, then check the out-pointers, then health.
#define SIM_ENTER(ctx) \
  Ctx ctx;             \
  if (nvmlReturn_t r_ = Enter(&(ctx)); r_ != NVML_SUCCESS) return r_
#define SIM_DEVICE(ctx, handle, d)                                                       \
  SIM_ENTER(ctx);                                                                        \
  const nvmlDevice_st* d = nullptr; /* NOLINT(bugprone-macro-parentheses): declares d */ \
  if (nvmlReturn_t r_ = (ctx).Device(handle, &(d)); r_ != NVML_SUCCESS) return r_;       \
  (ctx).Delay(d)
#define SIM_NONNULL(...)                                     \
  do {                                                       \
    const void* ptrs_[] = {__VA_ARGS__};                     \
    for (const void* p_ : ptrs_)                             \
      if (p_ == nullptr) return NVML_ERROR_INVALID_ARGUMENT; \
  } while (0)
#define SIM_ALIVE(ctx, d) \
  if ((ctx).Lost(d)) return NVML_ERROR_GPU_IS_LOST

// ---------------------------------------------------------------- lifetime

SIM_EXPORT nvmlReturn_t nvmlInit_v2(void) { return DoInit(); }
SIM_EXPORT nvmlReturn_t nvmlInit(void) { return DoInit(); }
SIM_EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
  if ((flags & ~(NVML_INIT_FLAG_NO_GPUS | NVML_INIT_FLAG_NO_ATTACH)) != 0) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  return DoInit();
}

SIM_EXPORT nvmlReturn_t nvmlShutdown(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (--g_refcount == 0) {
    g_current.reset();
    if (g_driver_lock_fd >= 0) close(g_driver_lock_fd);  // releases the driver
    g_driver_lock_fd = -1;
  }
  return NVML_SUCCESS;
}

SIM_EXPORT const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED:
      return "Already Initialized";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER:
      return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_IRQ_ISSUE:
      return "Interrupt request issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND:
      return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM:
      return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED:
      return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM:
      return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
      return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE:
      return "In use by another client";
    case NVML_ERROR_MEMORY:
      return "Insufficient Memory";
    case NVML_ERROR_NO_DATA:
      return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED:
      return "Not supported when ECC is enabled";
    case NVML_ERROR_INSUFFICIENT_RESOURCES:
      return "Insufficient resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED:
      return "Frequency not supported";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Version mismatch in argument";
    case NVML_ERROR_DEPRECATED:
      return "Deprecated";
    case NVML_ERROR_NOT_READY:
      return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND:
      return "GPU not found";
    case NVML_ERROR_INVALID_STATE:
      return "Invalid state";
    case NVML_ERROR_RESET_TYPE_NOT_SUPPORTED:
      return "Reset type not supported";
    case NVML_ERROR_UNKNOWN:
      return "Unknown Error";
  }
  return "Unknown Error";
}

// ---------------------------------------------------------------- system

SIM_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  SIM_ENTER(c);
  return CopyString(c.gen->profile.driver_version, version, length);
}

SIM_EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char* version, unsigned int length) {
  SIM_ENTER(c);
  return CopyString(c.gen->profile.NvmlVersion(), version, length);
}

SIM_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int* cudaDriverVersion) {
  SIM_ENTER(c);
  SIM_NONNULL(cudaDriverVersion);
  *cudaDriverVersion = c.gen->profile.cuda_driver_version;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int* cudaDriverVersion) {
  return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

// ---------------------------------------------------------------- enumeration

SIM_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  SIM_ENTER(c);
  SIM_NONNULL(count);
  *count = static_cast<unsigned>(c.gen->gpus.size());
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int* count) {
  return nvmlDeviceGetCount_v2(count);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  SIM_ENTER(c);
  SIM_NONNULL(device);
  if (index >= c.gen->gpus.size()) return NVML_ERROR_INVALID_ARGUMENT;
  *device = c.gen->gpus[index].get();
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) {
  return nvmlDeviceGetHandleByIndex_v2(index, device);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  SIM_ENTER(c);
  SIM_NONNULL(uuid, device);
  for (size_t i = 0; i < c.gen->gpus.size(); ++i) {
    if (c.gen->gpus[i]->spec->uuid == uuid) {
      *device = c.gen->gpus[i].get();
      return NVML_SUCCESS;
    }
    for (const nvmlDevice_st* m : c.snap->mig[i].devices) {
      if (m->mig->uuid == uuid) {
        *device = const_cast<nvmlDevice_t>(m);
        return NVML_SUCCESS;
      }
    }
  }
  return NVML_ERROR_NOT_FOUND;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char* pciBusId,
                                                         nvmlDevice_t* device) {
  SIM_ENTER(c);
  SIM_NONNULL(pciBusId, device);
  unsigned domain = 0, bus = 0, dev = 0, fn = 0;
  char tail = 0;
  int n = std::sscanf(pciBusId, "%x:%x:%x.%x%c", &domain, &bus, &dev, &fn, &tail);
  if (n != 4) {
    domain = 0;
    n = std::sscanf(pciBusId, "%x:%x.%x%c", &bus, &dev, &fn, &tail);
    if (n != 3) return NVML_ERROR_INVALID_ARGUMENT;
  }
  for (const auto& g : c.gen->gpus) {
    if (g->spec->domain == domain && g->spec->bus == bus && g->spec->device == dev && fn == 0) {
      *device = g.get();
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_NOT_FOUND;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char* pciBusId, nvmlDevice_t* device) {
  return nvmlDeviceGetHandleByPciBusId_v2(pciBusId, device);
}

// ---------------------------------------------------------------- identity

SIM_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(index);
  if (d->mig != nullptr) return NVML_ERROR_NOT_SUPPORTED;
  *index = d->gpu;  // answered even for a lost GPU: the index is the driver's, not the GPU's
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(uuid);
  SIM_ALIVE(c, d);
  return CopyString(d->mig ? d->mig->uuid : d->spec->uuid, uuid, length);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(name);
  SIM_ALIVE(c, d);
  std::string s = d->spec->name;
  if (d->mig) s += " MIG " + d->mig->profile;
  return CopyString(s, name, length);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char* serial,
                                            unsigned int length) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(serial);
  SIM_ALIVE(c, d);
  if (d->spec->brand == "geforce") return NVML_ERROR_NOT_SUPPORTED;
  return CopyString(d->spec->serial, serial, length);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t* type) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(type);
  SIM_ALIVE(c, d);
  static const std::map<std::string, nvmlBrandType_t> kBrands = {
      {"nvidia", NVML_BRAND_NVIDIA},   {"tesla", NVML_BRAND_TESLA},
      {"geforce", NVML_BRAND_GEFORCE}, {"quadro", NVML_BRAND_QUADRO},
      {"titan", NVML_BRAND_TITAN},     {"nvidia_rtx", NVML_BRAND_NVIDIA_RTX}};
  auto it = kBrands.find(d->spec->brand);
  *type = it == kBrands.end() ? NVML_BRAND_UNKNOWN : it->second;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(minor);
  SIM_ALIVE(c, d);
  if (d->mig != nullptr) return NVML_ERROR_NOT_SUPPORTED;
  *minor = d->minor;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device,
                                                  nvmlDeviceArchitecture_t* arch) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(arch);
  SIM_ALIVE(c, d);
  *arch = d->spec->architecture;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int* major,
                                                           int* minor) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(major, minor);
  SIM_ALIVE(c, d);
  *major = d->spec->cc_major;
  *minor = d->spec->cc_minor;
  return NVML_SUCCESS;
}

// ---------------------------------------------------------------- memory, PCI, NUMA

namespace {
// Memory as nvmlMemory_v2_t splits it: total = reserved + used + free, where
// reserved is what the driver sets aside (the profile's reservedMiB) and used
// what is allocated (`gpusim set mem-used=`). MIG devices reserve nothing here.
struct MemorySplit {
  unsigned long long total = 0, reserved = 0, used = 0;
  unsigned long long Free() const { return total - reserved - used; }
};

MemorySplit MemoryOf(const Ctx& c, const nvmlDevice_st* d) {
  MemorySplit m;
  if (d->mig) {
    m.total = d->mig->memory_mib * kMiB;
    return m;
  }
  m.total = d->spec->memory_mib * kMiB;
  m.reserved = std::min<unsigned long long>(d->spec->reserved_mib * kMiB, m.total);
  uint64_t used = c.gen->state->Read(d->slot).mem_used_bytes;
  if (c.gen->contexts) used += c.gen->contexts->Use(d->slot).mem_bytes;
  m.used = std::min<unsigned long long>(used, m.total - m.reserved);
  return m;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(memory);
  SIM_ALIVE(c, d);
  // v1 has no reserved field: "used" is reserved plus allocated, as in NVML.
  const MemorySplit m = MemoryOf(c, d);
  memory->total = m.total;
  memory->used = m.reserved + m.used;
  memory->free = m.Free();
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(memory);
  if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  SIM_ALIVE(c, d);
  const MemorySplit m = MemoryOf(c, d);
  memory->total = m.total;
  memory->reserved = m.reserved;
  memory->used = m.used;
  memory->free = m.Free();
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t* bar1) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(bar1);
  SIM_ALIVE(c, d);
  if (d->spec->bar1_mib == 0) return NVML_ERROR_NOT_SUPPORTED;
  bar1->bar1Total = d->spec->bar1_mib * kMiB;
  bar1->bar1Used = 2 * kMiB;
  bar1->bar1Free = bar1->bar1Total - bar1->bar1Used;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(pci);
  SIM_ALIVE(c, d);
  const GpuSpec& g = *d->spec;
  FillPci(g.domain, g.bus, g.device, g.pci_device_id, g.pci_subsystem_id, pci);
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return nvmlDeviceGetPciInfo_v3(device, pci);
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return nvmlDeviceGetPciInfo_v3(device, pci);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(node);
  SIM_ALIVE(c, d);
  *node = d->spec->numa_node;
  return NVML_SUCCESS;
}

// The simulated GPUs are bare metal, as on the nodes the profiles describe.
SIM_EXPORT nvmlReturn_t nvmlDeviceGetVirtualizationMode(nvmlDevice_t device,
                                                        nvmlGpuVirtualizationMode_t* mode) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(mode);
  SIM_ALIVE(c, d);
  *mode = NVML_GPU_VIRTUALIZATION_MODE_NONE;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t* mode) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(mode);
  SIM_ALIVE(c, d);
  *mode = static_cast<nvmlComputeMode_t>(d->spec->compute_mode);
  return NVML_SUCCESS;
}

namespace {
// The simulated host has kCpusPerNode logical CPUs per NUMA node, node n
// holding CPUs [n*kCpusPerNode, (n+1)*kCpusPerNode).
constexpr unsigned kCpusPerNode = 32;
constexpr unsigned kBitsPerWord = sizeof(unsigned long) * 8;

nvmlReturn_t SetBits(unsigned first, unsigned count, unsigned int size, unsigned long* set) {
  if (size == 0) return NVML_ERROR_INVALID_ARGUMENT;
  std::memset(set, 0, size * sizeof(unsigned long));
  for (unsigned b = first; b < first + count; ++b) {
    if (b / kBitsPerWord < size) set[b / kBitsPerWord] |= 1UL << (b % kBitsPerWord);
  }
  return NVML_SUCCESS;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned int size,
                                                 unsigned long* set) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(set);
  SIM_ALIVE(c, d);
  return SetBits(d->spec->numa_node * kCpusPerNode, kCpusPerNode, size, set);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetCpuAffinityWithinScope(nvmlDevice_t device, unsigned int size,
                                                            unsigned long* set,
                                                            nvmlAffinityScope_t scope) {
  if (scope != NVML_AFFINITY_SCOPE_NODE && scope != NVML_AFFINITY_SCOPE_SOCKET) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  return nvmlDeviceGetCpuAffinity(device, size, set);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMemoryAffinity(nvmlDevice_t device, unsigned int size,
                                                    unsigned long* set, nvmlAffinityScope_t scope) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(set);
  if (scope != NVML_AFFINITY_SCOPE_NODE && scope != NVML_AFFINITY_SCOPE_SOCKET) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  SIM_ALIVE(c, d);
  return SetBits(d->spec->numa_node, 1, size, set);
}

// ---------------------------------------------------------------- topology, NVLink

SIM_EXPORT nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1,
                                                            nvmlDevice_t device2,
                                                            nvmlGpuTopologyLevel_t* pathInfo) {
  SIM_ENTER(c);
  const nvmlDevice_st *da = nullptr, *db = nullptr;
  if (c.Device(device1, &da) != NVML_SUCCESS || c.Device(device2, &db) != NVML_SUCCESS) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  SIM_NONNULL(pathInfo);
  if (da->mig || db->mig) return NVML_ERROR_NOT_SUPPORTED;
  SIM_ALIVE(c, da);
  SIM_ALIVE(c, db);
  const GpuSpec &x = *da->spec, &y = *db->spec;
  if (da == db) {
    *pathInfo = NVML_TOPOLOGY_INTERNAL;
  } else if (x.pcie_switch >= 0 && x.pcie_switch == y.pcie_switch) {
    *pathInfo = NVML_TOPOLOGY_SINGLE;
  } else if (x.numa_node == y.numa_node) {
    *pathInfo = NVML_TOPOLOGY_NODE;
  } else {
    *pathInfo = NVML_TOPOLOGY_SYSTEM;
  }
  return NVML_SUCCESS;
}

namespace {
nvmlReturn_t CheckLink(const nvmlDevice_st* d, unsigned link) {
  if (d->mig) return NVML_ERROR_NOT_SUPPORTED;
  if (d->spec->nvlinks == 0) return NVML_ERROR_NOT_SUPPORTED;
  if (link >= NVML_NVLINK_MAX_LINKS) return NVML_ERROR_INVALID_ARGUMENT;
  return NVML_SUCCESS;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                                 nvmlEnableState_t* active) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(active);
  SIM_ALIVE(c, d);
  if (nvmlReturn_t r = CheckLink(d, link); r != NVML_SUCCESS) return r;
  *active = link < d->spec->nvlinks ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkVersion(nvmlDevice_t device, unsigned int link,
                                                   unsigned int* version) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(version);
  SIM_ALIVE(c, d);
  if (nvmlReturn_t r = CheckLink(d, link); r != NVML_SUCCESS) return r;
  if (link >= d->spec->nvlinks) return NVML_ERROR_NOT_SUPPORTED;
  *version = d->spec->nvlink_version;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkCapability(nvmlDevice_t device, unsigned int link,
                                                      nvmlNvLinkCapability_t capability,
                                                      unsigned int* result) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(result);
  SIM_ALIVE(c, d);
  if (nvmlReturn_t r = CheckLink(d, link); r != NVML_SUCCESS) return r;
  if (capability >= NVML_NVLINK_CAP_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  bool active = link < d->spec->nvlinks;
  // An NVSwitch system: peer-to-peer and atomics yes; SLI bridge and NVLink
  // to a CPU (IBM NPU) no.
  switch (capability) {
    case NVML_NVLINK_CAP_P2P_SUPPORTED:
    case NVML_NVLINK_CAP_P2P_ATOMICS:
    case NVML_NVLINK_CAP_VALID:
      *result = active ? 1 : 0;
      break;
    default:
      *result = 0;
  }
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link,
                                                            nvmlPciInfo_t* pci) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(pci);
  SIM_ALIVE(c, d);
  if (nvmlReturn_t r = CheckLink(d, link); r != NVML_SUCCESS) return r;
  if (link >= d->spec->nvlinks) return NVML_ERROR_NOT_SUPPORTED;
  const auto& sw = d->spec->nvswitch_bus_ids;
  unsigned domain = 0, bus = 0, dev = 0;
  std::sscanf(sw[link % sw.size()].c_str(), "%x:%x:%x", &domain, &bus, &dev);
  // NVSwitch PCI ids: third generation (A100 systems) 0x1AF1, fourth (H100) 0x22A3.
  uint32_t id = d->spec->architecture == NVML_DEVICE_ARCH_HOPPER ? 0x22A310DE : 0x1AF110DE;
  FillPci(domain, bus, dev, id, 0, pci);
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link,
                                                         nvmlPciInfo_t* pci) {
  return nvmlDeviceGetNvLinkRemotePciInfo_v2(device, link, pci);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link,
                                                            nvmlIntNvLinkDeviceType_t* type) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(type);
  SIM_ALIVE(c, d);
  if (nvmlReturn_t r = CheckLink(d, link); r != NVML_SUCCESS) return r;
  if (link >= d->spec->nvlinks) return NVML_ERROR_NOT_SUPPORTED;
  *type = NVML_NVLINK_DEVICE_TYPE_SWITCH;
  return NVML_SUCCESS;
}

// ---------------------------------------------------------------- MIG

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int* current,
                                             unsigned int* pending) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(current, pending);
  SIM_ALIVE(c, d);
  if (d->mig || !d->spec->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
  *current = *pending = c.MigOf(d).enabled ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int* count) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(count);
  SIM_ALIVE(c, d);
  if (d->mig) return NVML_ERROR_NOT_SUPPORTED;
  // nvml.h: "Returns zero if MIG is not supported or enabled." A real H100
  // with MIG disabled answers NVML_SUCCESS and 0.
  *count = d->spec->mig_capable && c.MigOf(d).enabled ? d->spec->max_mig_devices : 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                            nvmlDevice_t* mig) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(mig);
  SIM_ALIVE(c, d);
  if (d->mig || !d->spec->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
  if (index >= d->spec->max_mig_devices) return NVML_ERROR_INVALID_ARGUMENT;
  const auto& migs = c.MigOf(d).devices;
  if (index >= migs.size()) return NVML_ERROR_NOT_FOUND;
  *mig = const_cast<nvmlDevice_t>(migs[index]);
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device,
                                                    unsigned int* isMigDevice) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(isMigDevice);
  *isMigDevice = d->mig != nullptr ? 1 : 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int* id) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(id);
  SIM_ALIVE(c, d);
  if (!d->mig) return NVML_ERROR_NOT_SUPPORTED;
  *id = d->mig->gpu_instance_id;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int* id) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(id);
  SIM_ALIVE(c, d);
  if (!d->mig) return NVML_ERROR_NOT_SUPPORTED;
  *id = d->mig->compute_instance_id;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig,
                                                                     nvmlDevice_t* device) {
  SIM_DEVICE(c, mig, d);
  SIM_NONNULL(device);
  if (!d->mig) return NVML_ERROR_INVALID_ARGUMENT;
  *device = d->parent;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device,
                                                   nvmlDeviceAttributes_t* attributes) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(attributes);
  SIM_ALIVE(c, d);
  std::memset(attributes, 0, sizeof(*attributes));
  const GpuSpec& g = *d->spec;
  if (d->mig) {
    // Engines are split between GPU instances by slices, as the hardware does.
    unsigned s = d->mig->slices;
    attributes->multiprocessorCount = d->mig->multiprocessors;
    attributes->sharedCopyEngineCount = std::max(1u, g.copy_engines * s / 7);
    attributes->sharedDecoderCount = g.decoders * s / 7;
    attributes->sharedEncoderCount = g.encoders * s / 7;
    attributes->sharedJpegCount = g.jpeg * s / 7;
    attributes->sharedOfaCount = s == 7 ? g.ofa : 0;
    attributes->gpuInstanceSliceCount = s;
    attributes->computeInstanceSliceCount = s;
    attributes->memorySizeMB = d->mig->memory_mib;
  } else {
    attributes->multiprocessorCount = g.multiprocessors;
    attributes->sharedCopyEngineCount = g.copy_engines;
    attributes->sharedDecoderCount = g.decoders;
    attributes->sharedEncoderCount = g.encoders;
    attributes->sharedJpegCount = g.jpeg;
    attributes->sharedOfaCount = g.ofa;
    attributes->gpuInstanceSliceCount = g.mig_capable ? 7 : 0;
    attributes->computeInstanceSliceCount = g.mig_capable ? 7 : 0;
    attributes->memorySizeMB = g.memory_mib;
  }
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t* a) {
  return nvmlDeviceGetAttributes_v2(device, a);
}

// ---------------------------------------------------------------- MIG instances (go-nvlib)

namespace {
// NVML's GPU instance profile id for one of a model's MIG profiles: by compute
// slices, and for a one-slice profile with more memory than the smallest one
// (1g.20gb beside 1g.10gb) the REV2 id. -1 when it has none.
int GiProfileId(const GpuSpec& g, const std::string& name) {
  auto it = g.mig_profiles.find(name);
  if (it == g.mig_profiles.end()) return -1;
  const gdp::sim::MigProfile& p = it->second;
  switch (p.slices) {
    case 1:
      for (const auto& [other, q] : g.mig_profiles) {
        if (q.slices == 1 && q.memory_mib < p.memory_mib)
          return NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2;
      }
      return NVML_GPU_INSTANCE_PROFILE_1_SLICE;
    case 2:
      return NVML_GPU_INSTANCE_PROFILE_2_SLICE;
    case 3:
      return NVML_GPU_INSTANCE_PROFILE_3_SLICE;
    case 4:
      return NVML_GPU_INSTANCE_PROFILE_4_SLICE;
    case 6:
      return NVML_GPU_INSTANCE_PROFILE_6_SLICE;
    case 7:
      return NVML_GPU_INSTANCE_PROFILE_7_SLICE;
    default:
      return -1;
  }
}

// Compute instance profile ids by compute slices; -1 for none.
int CiProfileId(unsigned slices) {
  switch (slices) {
    case 1:
      return NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE;
    case 2:
      return NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE;
    case 3:
      return NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE;
    case 4:
      return NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE;
    case 6:
      return NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE;
    case 7:
      return NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE;
    default:
      return -1;
  }
}

// Everything a GPU instance profile info struct holds, whatever its version.
struct GiProfile {
  std::string name;  // "1g.10gb"
  unsigned id = 0, slices = 0, instances = 0, sms = 0, copy = 0, dec = 0, enc = 0, jpeg = 0,
           ofa = 0;
  unsigned long long memory_mib = 0;
};

// The model's profile with NVML profile id `profile`; NOT_SUPPORTED when the
// model has none, INVALID_ARGUMENT past the ids nvml.h defines.
nvmlReturn_t FindGiProfile(const GpuSpec& g, unsigned profile, GiProfile* out) {
  if (profile >= NVML_GPU_INSTANCE_PROFILE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  uint64_t budget = 0;
  for (const auto& [name, p] : g.mig_profiles) budget = std::max(budget, p.memory_mib);
  for (const auto& [name, p] : g.mig_profiles) {
    if (GiProfileId(g, name) != static_cast<int>(profile)) continue;
    out->name = name;
    out->id = profile;
    out->slices = p.slices;
    out->instances =
        std::min<unsigned>(std::min(7 / p.slices, g.max_mig_devices),
                           p.memory_mib > 0 ? static_cast<unsigned>(budget / p.memory_mib) : 0);
    out->sms = p.multiprocessors;
    out->copy = std::max(1u, g.copy_engines * p.slices / 7);
    out->dec = g.decoders * p.slices / 7;
    out->enc = g.encoders * p.slices / 7;
    out->jpeg = g.jpeg * p.slices / 7;
    out->ofa = p.slices == 7 ? g.ofa : 0;
    out->memory_mib = p.memory_mib;
    return NVML_SUCCESS;
  }
  return NVML_ERROR_NOT_SUPPORTED;
}

// A compute instance profile of a GPU instance of `gi_slices` slices.
struct CiProfile {
  unsigned id = 0, slices = 0, instances = 0, sms = 0;
};
nvmlReturn_t FindCiProfile(const nvmlDevice_st* m, unsigned profile, CiProfile* out) {
  if (profile >= NVML_COMPUTE_INSTANCE_PROFILE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  const unsigned s = m->mig->slices;
  for (unsigned c : {1u, 2u, 3u, 4u, 6u, 7u}) {
    if (CiProfileId(c) != static_cast<int>(profile)) continue;
    if (c > s || (s == 4 && c == 3)) return NVML_ERROR_NOT_SUPPORTED;
    out->id = profile;
    out->slices = c;
    out->instances = s / c;
    out->sms = m->mig->multiprocessors * c / s;
    return NVML_SUCCESS;
  }
  return NVML_ERROR_NOT_SUPPORTED;
}

// Where a MIG device's GPU instance starts: the slices of those before it.
unsigned PlacementStart(const Ctx& c, const nvmlDevice_st* m) {
  unsigned start = 0;
  for (const nvmlDevice_st* other : c.MigOf(m).devices) {
    if (other == m) break;
    start += other->mig->slices;
  }
  return start;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device,
                                                            unsigned int profile,
                                                            nvmlGpuInstanceProfileInfo_t* info) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(info);
  if (d->mig) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_ALIVE(c, d);
  if (!d->spec->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
  GiProfile p;
  if (nvmlReturn_t r = FindGiProfile(*d->spec, profile, &p); r != NVML_SUCCESS) return r;
  std::memset(info, 0, sizeof(*info));
  info->id = p.id;
  info->isP2pSupported = 0;
  info->sliceCount = p.slices;
  info->instanceCount = p.instances;
  info->multiprocessorCount = p.sms;
  info->copyEngineCount = p.copy;
  info->decoderCount = p.dec;
  info->encoderCount = p.enc;
  info->jpegCount = p.jpeg;
  info->ofaCount = p.ofa;
  info->memorySizeMB = p.memory_mib;
  return NVML_SUCCESS;
}

// Fills the v2 or v3 layout of the profile info: both have these fields (v3
// adds capabilities, left 0); the caller's version is kept, the rest cleared.
template <typename Info>
void FillGiProfileInfo(const GiProfile& p, const std::string& name, Info* info) {
  const unsigned version = info->version;
  std::memset(info, 0, sizeof(*info));
  info->version = version;
  info->id = p.id;
  info->sliceCount = p.slices;
  info->instanceCount = p.instances;
  info->multiprocessorCount = p.sms;
  info->copyEngineCount = p.copy;
  info->decoderCount = p.dec;
  info->encoderCount = p.enc;
  info->jpegCount = p.jpeg;
  info->ofaCount = p.ofa;
  info->memorySizeMB = p.memory_mib;
  std::snprintf(info->name, sizeof info->name, "%s", name.c_str());
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(
    nvmlDevice_t device, unsigned int profile, nvmlGpuInstanceProfileInfo_v2_t* info) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(info);
  if (d->mig) return NVML_ERROR_INVALID_ARGUMENT;
  if (info->version != nvmlGpuInstanceProfileInfo_v2 &&
      info->version != nvmlGpuInstanceProfileInfo_v3) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  SIM_ALIVE(c, d);
  // nvml.h: NOT_SUPPORTED unless MIG mode is enabled.
  if (!d->spec->mig_capable || !c.MigOf(d).enabled) return NVML_ERROR_NOT_SUPPORTED;
  GiProfile p;
  if (nvmlReturn_t r = FindGiProfile(*d->spec, profile, &p); r != NVML_SUCCESS) return r;
  const std::string name = "MIG " + p.name;
  if (info->version == nvmlGpuInstanceProfileInfo_v2) {
    FillGiProfileInfo(p, name, info);
  } else {
    FillGiProfileInfo(p, name, reinterpret_cast<nvmlGpuInstanceProfileInfo_v3_t*>(info));
  }
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t device, unsigned int profileId,
                                                  nvmlGpuInstance_t* gpuInstances,
                                                  unsigned int* count) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(gpuInstances, count);
  if (d->mig || profileId >= NVML_GPU_INSTANCE_PROFILE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_ALIVE(c, d);
  if (!d->spec->mig_capable || !c.MigOf(d).enabled) return NVML_ERROR_NOT_SUPPORTED;
  unsigned n = 0;
  for (const nvmlDevice_st* m : c.MigOf(d).devices) {
    if (GiProfileId(*d->spec, m->mig->profile) == static_cast<int>(profileId)) {
      gpuInstances[n++] = const_cast<nvmlGpuInstance_t>(&m->gi);
    }
  }
  *count = n;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t device, unsigned int id,
                                                     nvmlGpuInstance_t* gpuInstance) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(gpuInstance);
  if (d->mig) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_ALIVE(c, d);
  if (!d->spec->mig_capable || !c.MigOf(d).enabled) return NVML_ERROR_NOT_SUPPORTED;
  for (const nvmlDevice_st* m : c.MigOf(d).devices) {
    if (m->mig->gpu_instance_id == id) {
      *gpuInstance = const_cast<nvmlGpuInstance_t>(&m->gi);
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_NOT_FOUND;
}

SIM_EXPORT nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance,
                                               nvmlGpuInstanceInfo_t* info) {
  SIM_ENTER(c);
  const nvmlDevice_st* m = nullptr;
  if (nvmlReturn_t r = c.Instance(gpuInstance, gpuInstance ? gpuInstance->mig : nullptr, &m);
      r != NVML_SUCCESS) {
    return r;
  }
  SIM_NONNULL(info);
  SIM_ALIVE(c, m);
  std::memset(info, 0, sizeof(*info));
  info->device = m->parent;
  info->id = m->mig->gpu_instance_id;
  info->profileId = static_cast<unsigned>(GiProfileId(*m->spec, m->mig->profile));
  info->placement.start = PlacementStart(c, m);
  info->placement.size = m->mig->slices;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile,
    nvmlComputeInstanceProfileInfo_t* info) {
  SIM_ENTER(c);
  const nvmlDevice_st* m = nullptr;
  if (nvmlReturn_t r = c.Instance(gpuInstance, gpuInstance ? gpuInstance->mig : nullptr, &m);
      r != NVML_SUCCESS) {
    return r;
  }
  SIM_NONNULL(info);
  if (engProfile >= NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_ALIVE(c, m);
  CiProfile p;
  if (nvmlReturn_t r = FindCiProfile(m, profile, &p); r != NVML_SUCCESS) return r;
  std::memset(info, 0, sizeof(*info));
  info->id = p.id;
  info->sliceCount = p.slices;
  info->instanceCount = p.instances;
  info->multiprocessorCount = p.sms;
  const GpuSpec& g = *m->spec;
  const unsigned s = m->mig->slices;
  info->sharedCopyEngineCount = std::max(1u, g.copy_engines * s / 7);
  info->sharedDecoderCount = g.decoders * s / 7;
  info->sharedEncoderCount = g.encoders * s / 7;
  info->sharedJpegCount = g.jpeg * s / 7;
  info->sharedOfaCount = s == 7 ? g.ofa : 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfoV(
    nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile,
    nvmlComputeInstanceProfileInfo_v2_t* info) {
  if (info == nullptr)
    return nvmlGpuInstanceGetComputeInstanceProfileInfo(gpuInstance, profile, engProfile, nullptr);
  if (info->version != nvmlComputeInstanceProfileInfo_v2 &&
      info->version != nvmlComputeInstanceProfileInfo_v3) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  nvmlComputeInstanceProfileInfo_t v1{};
  nvmlReturn_t r =
      nvmlGpuInstanceGetComputeInstanceProfileInfo(gpuInstance, profile, engProfile, &v1);
  if (r != NVML_SUCCESS) return r;
  const nvmlDevice_st* m = gpuInstance->mig;
  const std::string name = v1.sliceCount == m->mig->slices
                               ? "MIG " + m->mig->profile
                               : "MIG " + std::to_string(v1.sliceCount) + "c." + m->mig->profile;
  // v3 is v2 with `capabilities` after the name.
  const unsigned version = info->version;
  if (version == nvmlComputeInstanceProfileInfo_v3) {
    std::memset(info, 0, sizeof(nvmlComputeInstanceProfileInfo_v3_t));
  } else {
    std::memset(info, 0, sizeof(*info));
  }
  info->version = version;
  info->id = v1.id;
  info->sliceCount = v1.sliceCount;
  info->instanceCount = v1.instanceCount;
  info->multiprocessorCount = v1.multiprocessorCount;
  info->sharedCopyEngineCount = v1.sharedCopyEngineCount;
  info->sharedDecoderCount = v1.sharedDecoderCount;
  info->sharedEncoderCount = v1.sharedEncoderCount;
  info->sharedJpegCount = v1.sharedJpegCount;
  info->sharedOfaCount = v1.sharedOfaCount;
  std::snprintf(info->name, sizeof info->name, "%s", name.c_str());
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceById(
    nvmlGpuInstance_t gpuInstance, unsigned int id, nvmlComputeInstance_t* computeInstance) {
  SIM_ENTER(c);
  const nvmlDevice_st* m = nullptr;
  if (nvmlReturn_t r = c.Instance(gpuInstance, gpuInstance ? gpuInstance->mig : nullptr, &m);
      r != NVML_SUCCESS) {
    return r;
  }
  SIM_NONNULL(computeInstance);
  SIM_ALIVE(c, m);
  if (id != m->mig->compute_instance_id) return NVML_ERROR_NOT_FOUND;
  *computeInstance = const_cast<nvmlComputeInstance_t>(&m->ci);
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlComputeInstanceGetInfo_v2(nvmlComputeInstance_t computeInstance,
                                                      nvmlComputeInstanceInfo_t* info) {
  SIM_ENTER(c);
  const nvmlDevice_st* m = nullptr;
  if (nvmlReturn_t r =
          c.Instance(computeInstance, computeInstance ? computeInstance->mig : nullptr, &m);
      r != NVML_SUCCESS) {
    return r;
  }
  SIM_NONNULL(info);
  SIM_ALIVE(c, m);
  std::memset(info, 0, sizeof(*info));
  info->device = m->parent;
  info->gpuInstance = const_cast<nvmlGpuInstance_t>(&m->gi);
  info->id = m->mig->compute_instance_id;
  info->profileId = static_cast<unsigned>(CiProfileId(m->mig->slices));
  info->placement.start = 0;
  info->placement.size = m->mig->slices;
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlComputeInstanceGetInfo(nvmlComputeInstance_t computeInstance,
                                                   nvmlComputeInstanceInfo_t* info) {
  return nvmlComputeInstanceGetInfo_v2(computeInstance, info);
}

// No NVLink fabric (Fabric Manager, IMEX) is simulated: every GPU answers as
// one that does not take part in one.
SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfo(nvmlDevice_t device,
                                                   nvmlGpuFabricInfo_t* gpuFabricInfo) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(gpuFabricInfo);
  SIM_ALIVE(c, d);
  return NVML_ERROR_NOT_SUPPORTED;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t device,
                                                    nvmlGpuFabricInfoV_t* gpuFabricInfo) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(gpuFabricInfo);
  SIM_ALIVE(c, d);
  return NVML_ERROR_NOT_SUPPORTED;
}

// Neither HMM nor ATS: the simulated host mirrors no CPU page tables.
SIM_EXPORT nvmlReturn_t nvmlDeviceGetAddressingMode(nvmlDevice_t device,
                                                    nvmlDeviceAddressingMode_t* mode) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(mode);
  if (mode->version != nvmlDeviceAddressingMode_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  SIM_ALIVE(c, d);
  if (d->mig || d->spec->architecture < NVML_DEVICE_ARCH_TURING) return NVML_ERROR_NOT_SUPPORTED;
  mode->value = NVML_DEVICE_ADDRESSING_MODE_NONE;
  return NVML_SUCCESS;
}

// ---------------------------------------------------------------- events

SIM_EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device,
                                                         unsigned long long* types) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(types);
  SIM_ALIVE(c, d);
  *types = SupportedEvents(*d->spec, c.gen->change_events, c.gen->recovery_action);
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t* set) {
  SIM_ENTER(c);
  SIM_NONNULL(set);
  auto* s = new nvmlEventSet_st;
  s->seen = c.gen->state->EventCount();  // only events from now on
  std::lock_guard<std::mutex> lock(g_mu);
  g_event_sets.insert(s);
  *set = s;
  return NVML_SUCCESS;
}

namespace {
bool LiveSet(nvmlEventSet_t set) {
  std::lock_guard<std::mutex> lock(g_mu);
  return set != nullptr && g_event_sets.count(set) > 0;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                                 nvmlEventSet_t set) {
  SIM_DEVICE(c, device, d);
  if (!LiveSet(set)) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_ALIVE(c, d);
  const unsigned long long supported =
      SupportedEvents(*d->spec, c.gen->change_events, c.gen->recovery_action);
  if ((types & ~supported) != 0) return NVML_ERROR_NOT_SUPPORTED;
  std::lock_guard<std::mutex> lock(set->mu);
  set->registered[d] |= types;
  return NVML_SUCCESS;
}

namespace {
// The device event type an event of the shared state is, 0 for system events.
unsigned long long DeviceEventType(EventKind kind) {
  switch (kind) {
    case EventKind::kXid:
      return nvmlEventTypeXidCriticalError;
    case EventKind::kMigConfigChange:
      return nvmlEventMigConfigChange;
    case EventKind::kRecoveryAction:
      return nvmlEventTypeGpuRecoveryAction;
    default:
      return 0;
  }
}

// The current view of the layout for a call that runs long (a wait).
std::shared_ptr<const Snapshot> CurrentSnapshot(Ctx* c) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_current == c->gen) EnterLocked(c);
  return c->snap;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t* data,
                                            unsigned int timeoutms) {
  SIM_ENTER(c);
  if (!LiveSet(set)) return NVML_ERROR_INVALID_ARGUMENT;
  SIM_NONNULL(data);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutms);
  const SharedState& state = *c.gen->state;
  for (;;) {
    uint64_t seen;
    {
      std::shared_ptr<const Snapshot> snap = CurrentSnapshot(&c);
      std::lock_guard<std::mutex> lock(set->mu);
      gdp::sim::Event ev;
      while (state.NextEvent(set->seen, &ev)) {
        set->seen = ev.seq;
        const unsigned long long type = DeviceEventType(ev.kind);
        if (type == 0 || ev.slot >= c.gen->index_of_slot.size()) continue;
        const int index = c.gen->index_of_slot[ev.slot];
        if (index < 0) continue;  // a GPU this session does not have
        // A registration on the GPU, or on one of its live MIG devices, receives it.
        const nvmlDevice_st* target = nullptr;
        const nvmlDevice_st* gpu = c.gen->gpus[static_cast<size_t>(index)].get();
        auto it = set->registered.find(gpu);
        if (it != set->registered.end() && (it->second & type)) {
          target = gpu;
        } else {
          for (const nvmlDevice_st* m : snap->mig[static_cast<size_t>(index)].devices) {
            auto mi = set->registered.find(m);
            if (mi != set->registered.end() && (mi->second & type)) {
              target = m;
              break;
            }
          }
        }
        if (target == nullptr) continue;
        // nvml.h: eventData holds the XID for XID events and is 0 for any other;
        // the instance ids are valid only for an XID attributable to a MIG device.
        const bool xid = ev.kind == EventKind::kXid;
        data->device = const_cast<nvmlDevice_t>(target);
        data->eventType = type;
        data->eventData = xid ? ev.data : 0;
        data->gpuInstanceId = xid && target->mig ? target->mig->gpu_instance_id : 0xFFFFFFFFu;
        data->computeInstanceId =
            xid && target->mig ? target->mig->compute_instance_id : 0xFFFFFFFFu;
        return NVML_SUCCESS;
      }
      seen = set->seen;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return NVML_ERROR_TIMEOUT;
    state.WaitForEvent(seen, deadline - now);
  }
}
SIM_EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t* data,
                                         unsigned int timeoutms) {
  return nvmlEventSetWait_v2(set, data, timeoutms);
}

SIM_EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  SIM_ENTER(c);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (set == nullptr || g_event_sets.erase(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
  }
  delete set;
  return NVML_SUCCESS;
}

// ---------------------------------------------------------------- system events

namespace {
constexpr unsigned long long kSystemEventTypes =
    nvmlSystemEventTypeGpuDriverUnbind | nvmlSystemEventTypeGpuDriverBind;

bool LiveSystemSet(nvmlSystemEventSet_t set) {
  std::lock_guard<std::mutex> lock(g_mu);
  return set != nullptr && g_system_event_sets.count(set) > 0;
}
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlSystemEventSetCreate(nvmlSystemEventSetCreateRequest_t* request) {
  SIM_ENTER(c);
  SIM_NONNULL(request);
  if (request->version != nvmlSystemEventSetCreateRequest_v1) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  if (!c.gen->change_events) return NVML_ERROR_NOT_SUPPORTED;  // an older driver branch
  auto* s = new nvmlSystemEventSet_st;
  s->seen = c.gen->state->EventCount();  // only events from now on
  std::lock_guard<std::mutex> lock(g_mu);
  g_system_event_sets.insert(s);
  request->set = s;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlSystemRegisterEvents(nvmlSystemRegisterEventRequest_t* request) {
  SIM_ENTER(c);
  SIM_NONNULL(request);
  if (request->version != nvmlSystemRegisterEventRequest_v1) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  if (!LiveSystemSet(request->set)) return NVML_ERROR_INVALID_ARGUMENT;
  // nvml.h: on NOT_SUPPORTED none of the requested types is registered.
  if ((request->eventTypes & ~kSystemEventTypes) != 0) return NVML_ERROR_NOT_SUPPORTED;
  std::lock_guard<std::mutex> lock(request->set->mu);
  request->set->types |= request->eventTypes;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlSystemEventSetWait(nvmlSystemEventSetWaitRequest_t* request) {
  SIM_ENTER(c);
  SIM_NONNULL(request);
  if (request->version != nvmlSystemEventSetWaitRequest_v1) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  nvmlSystemEventSet_t set = request->set;
  if (!LiveSystemSet(set)) return NVML_ERROR_INVALID_ARGUMENT;
  if (request->dataSize == 0 || request->data == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  request->numEvent = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(request->timeoutms);
  const SharedState& state = *c.gen->state;
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(set->mu);
      gdp::sim::Event ev;
      // Up to dataSize events; more stay queued for the next call (nvml.h:
      // numEvent == dataSize means there may be more).
      while (request->numEvent < request->dataSize && state.NextEvent(set->seen, &ev)) {
        set->seen = ev.seq;
        unsigned long long type =
            ev.kind == EventKind::kDriverBind     ? nvmlSystemEventTypeGpuDriverBind
            : ev.kind == EventKind::kDriverUnbind ? nvmlSystemEventTypeGpuDriverUnbind
                                                  : 0;
        if ((type & set->types) == 0) continue;
        nvmlSystemEventData_v1_t& out = request->data[request->numEvent++];
        out.eventType = type;
        out.gpuId = static_cast<unsigned>(ev.data);
      }
      if (request->numEvent > 0) return NVML_SUCCESS;
      seen = set->seen;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return NVML_ERROR_TIMEOUT;
    state.WaitForEvent(seen, deadline - now);
  }
}

SIM_EXPORT nvmlReturn_t nvmlSystemEventSetFree(nvmlSystemEventSetFreeRequest_t* request) {
  SIM_ENTER(c);
  SIM_NONNULL(request);
  if (request->version != nvmlSystemEventSetFreeRequest_v1) {
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (request->set == nullptr || g_system_event_sets.erase(request->set) == 0) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
  }
  delete request->set;
  request->set = nullptr;
  return NVML_SUCCESS;
}

// ---------------------------------------------------------------- telemetry

namespace {
// Telemetry of the physical GPU behind `d`; MIG devices answer NOT_SUPPORTED
// for per-GPU sensors, as real MIG devices do.
#define SIM_TELEMETRY(c, device, d, ...) \
  SIM_DEVICE(c, device, d);              \
  SIM_NONNULL(__VA_ARGS__);              \
  SIM_ALIVE(c, d);                       \
  if (d->mig) return NVML_ERROR_NOT_SUPPORTED
}  // namespace

SIM_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                      nvmlUtilization_t* util) {
  SIM_TELEMETRY(c, device, d, util);
  auto t = c.gen->state->Read(d->slot);
  // The GPU's own load plus what workloads' kernels keep busy now (time-sliced
  // workloads add up), at most 100%.
  const unsigned workloads = c.gen->contexts ? c.gen->contexts->Use(d->slot).util : 0;
  util->gpu = std::min(100U, t.util_gpu + workloads);
  util->memory = t.util_mem;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device,
                                                 nvmlTemperatureSensors_t sensor,
                                                 unsigned int* temp) {
  SIM_TELEMETRY(c, device, d, temp);
  if (sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
  *temp = c.gen->state->Read(d->slot).temp_c;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device,
                                                    nvmlPcieUtilCounter_t counter,
                                                    unsigned int* value) {
  SIM_TELEMETRY(c, device, d, value);
  auto t = c.gen->state->Read(d->slot);
  switch (counter) {
    case NVML_PCIE_UTIL_TX_BYTES:
      *value = t.pcie_tx_kbps;
      return NVML_SUCCESS;
    case NVML_PCIE_UTIL_RX_BYTES:
      *value = t.pcie_rx_kbps;
      return NVML_SUCCESS;
    default:
      return NVML_ERROR_INVALID_ARGUMENT;
  }
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                               unsigned long long* reasons) {
  SIM_TELEMETRY(c, device, d, reasons);
  *reasons = c.gen->state->Read(d->slot).clocks_event_reasons;
  return NVML_SUCCESS;
}

// Two fields are simulated: NVML_FI_DEV_MEMORY_TEMP and
// NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (from R570; a root of an older branch answers
// NOT_SUPPORTED for it, an assumption: docs/simulator.md); every other field answers NOT_SUPPORTED
// in its own nvmlReturn, as the real call does per value. On a lost (or
// removed) GPU the call succeeds and each field answers GPU_IS_LOST, except
// the recovery action, which is the driver's to tell (an assumption:
// docs/simulator.md).
SIM_EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount,
                                                 nvmlFieldValue_t* values) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(values);
  if (d->mig) return NVML_ERROR_NOT_SUPPORTED;
  if (valuesCount < 0) return NVML_ERROR_INVALID_ARGUMENT;
  auto t = c.gen->state->Read(d->slot);
  const bool lost = t.lost || t.removed;
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (int i = 0; i < valuesCount; ++i) {
    nvmlFieldValue_t& v = values[i];
    v.timestamp = now_us;
    v.latencyUsec = 0;
    // The recovery action is a field of R570 on: older branches answer as for any other
    // field they do not have (the else below).
    const bool has_recovery = c.gen->recovery_action;
    if (v.fieldId == NVML_FI_DEV_GET_GPU_RECOVERY_ACTION && has_recovery) {
      v.valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v.value.uiVal = t.recovery_action;
      v.nvmlReturn = NVML_SUCCESS;
    } else if (lost && v.fieldId != NVML_FI_DEV_GET_GPU_RECOVERY_ACTION) {
      v.nvmlReturn = NVML_ERROR_GPU_IS_LOST;
    } else if (v.fieldId == NVML_FI_DEV_MEMORY_TEMP && !lost) {
      v.valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v.value.uiVal = t.mem_temp_c;
      v.nvmlReturn = NVML_SUCCESS;
    } else {
      v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    }
  }
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* power) {
  SIM_TELEMETRY(c, device, d, power);
  *power = c.gen->state->Read(d->slot).power_mw;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device,
                                                          unsigned int* limit) {
  SIM_TELEMETRY(c, device, d, limit);
  *limit = d->spec->power_limit_w * 1000;
  return NVML_SUCCESS;
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int* limit) {
  return nvmlDeviceGetPowerManagementLimit(device, limit);
}
SIM_EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device,
                                                                 unsigned int* limit) {
  return nvmlDeviceGetPowerManagementLimit(device, limit);
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                            unsigned long long* energy) {
  SIM_TELEMETRY(c, device, d, energy);
  // Energy counters arrived with Volta.
  if (d->spec->architecture < NVML_DEVICE_ARCH_VOLTA) return NVML_ERROR_NOT_SUPPORTED;
  *energy = c.gen->state->Read(d->slot).energy_mj;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                               unsigned int* clock) {
  SIM_TELEMETRY(c, device, d, clock);
  auto t = c.gen->state->Read(d->slot);
  switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM:
      *clock = static_cast<unsigned>(t.sm_clock_mhz);
      return NVML_SUCCESS;
    case NVML_CLOCK_MEM:
      *clock = static_cast<unsigned>(t.mem_clock_mhz);
      return NVML_SUCCESS;
    case NVML_CLOCK_VIDEO:
      *clock = static_cast<unsigned>(t.sm_clock_mhz * 9 / 10);
      return NVML_SUCCESS;
    default:
      return NVML_ERROR_INVALID_ARGUMENT;
  }
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                                  unsigned int* clock) {
  SIM_TELEMETRY(c, device, d, clock);
  switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM:
      *clock = d->spec->max_sm_clock_mhz;
      return NVML_SUCCESS;
    case NVML_CLOCK_MEM:
      *clock = d->spec->max_mem_clock_mhz;
      return NVML_SUCCESS;
    case NVML_CLOCK_VIDEO:
      *clock = d->spec->max_sm_clock_mhz * 9 / 10;
      return NVML_SUCCESS;
    default:
      return NVML_ERROR_INVALID_ARGUMENT;
  }
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t* current,
                                             nvmlEnableState_t* pending) {
  SIM_TELEMETRY(c, device, d, current, pending);
  if (!d->spec->ecc) return NVML_ERROR_NOT_SUPPORTED;
  *current = *pending = NVML_FEATURE_ENABLED;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device,
                                                    nvmlMemoryErrorType_t errorType,
                                                    nvmlEccCounterType_t counterType,
                                                    unsigned long long* eccCounts) {
  SIM_TELEMETRY(c, device, d, eccCounts);
  if (!d->spec->ecc) return NVML_ERROR_NOT_SUPPORTED;
  if (counterType != NVML_VOLATILE_ECC && counterType != NVML_AGGREGATE_ECC) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  auto t = c.gen->state->Read(d->slot);
  switch (errorType) {
    case NVML_MEMORY_ERROR_TYPE_CORRECTED:
      *eccCounts = t.ecc_corrected;
      return NVML_SUCCESS;
    case NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
      *eccCounts = t.ecc_uncorrected;
      return NVML_SUCCESS;
    default:
      return NVML_ERROR_INVALID_ARGUMENT;
  }
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device,
                                                  nvmlPageRetirementCause_t cause,
                                                  unsigned int* pageCount,
                                                  unsigned long long* addresses) {
  SIM_TELEMETRY(c, device, d, pageCount);
  // Page retirement is Kepler-to-Volta (and Turing); Ampere and later remap rows instead.
  if (!d->spec->ecc || d->spec->architecture >= NVML_DEVICE_ARCH_AMPERE) {
    return NVML_ERROR_NOT_SUPPORTED;
  }
  if (cause >= NVML_PAGE_RETIREMENT_CAUSE_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
  (void)addresses;
  *pageCount = 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int* corr,
                                                  unsigned int* unc, unsigned int* pending,
                                                  unsigned int* failure) {
  SIM_TELEMETRY(c, device, d, corr, unc, pending, failure);
  if (!d->spec->ecc || d->spec->architecture < NVML_DEVICE_ARCH_AMPERE) {
    return NVML_ERROR_NOT_SUPPORTED;
  }
  *corr = *unc = *pending = *failure = 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                                unsigned int* count,
                                                                nvmlProcessInfo_t* infos) {
  SIM_DEVICE(c, device, d);
  SIM_NONNULL(count);
  SIM_ALIVE(c, d);
  (void)infos;  // the simulator runs no processes on its GPUs
  *count = 0;
  return NVML_SUCCESS;
}

SIM_EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t* mode) {
  SIM_TELEMETRY(c, device, d, mode);
  *mode = NVML_FEATURE_ENABLED;
  return NVML_SUCCESS;
}
