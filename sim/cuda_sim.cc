// The simulator's libcuda.so.1: the CUDA driver-API calls a small CUDA
// program makes, over the same simulated driver as libnvidia-ml.so.1, so a
// workload's memory and load show in NVML (nvidia-smi, the plugin's metrics)
// as on a real GPU. `gpusim root` installs it as
// <root>/usr/lib/x86_64-linux-gnu/libcuda.so.<version> with its soname link.
//
// It finds the driver root as the NVML library does (sim/root_finder.h): on
// the host from its own path, in a container from the nvidia-persistenced
// stand-in; there it shows only the GPUs whose device nodes the process can
// open, numbered from 0. CUDA_VISIBLE_DEVICES is not read (a container's
// device nodes decide).
//
// What each call does (docs/simulator.md lists them):
//   cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
//   cuDeviceTotalMem_v2, cuDeviceGetUuid(_v2): from the profile and layout.
//   cuCtxCreate_v2 / cuCtxDestroy_v2 / cuCtxSetCurrent / cuCtxGetCurrent:
//     a context is an entry of the root's contexts table (sim/contexts.h),
//     freed when the context is destroyed or the process dies.
//   cuMemAlloc_v2 / cuMemFree_v2 / cuMemGetInfo_v2: device memory; an
//     allocation past what is free is CUDA_ERROR_OUT_OF_MEMORY.
//   cuModuleLoadData("gpusim:busy") / cuModuleGetFunction("busy") /
//     cuLaunchKernel(f, ..., params {unsigned* percent, unsigned* ms}): the
//     "kernel" keeps percent% of the GPU busy for ms milliseconds
//     (asynchronous); cuCtxSynchronize waits for it.
//   cuGetErrorName / cuGetErrorString.
//
// MPS, as a real client: cuInit connects to the control daemon's socket in
// $CUDA_MPS_PIPE_DIRECTORY (default /tmp/nvidia-mps); when nothing answers
// there the process runs without MPS. When a daemon answers, it starts or
// names its server, and the process sees the server's devices (those it can
// also open), in the server's order. Each context gets its limits from the
// server (the daemon's defaults, lowered but never raised by the client's
// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT and CUDA_MPS_ACTIVE_THREAD_PERCENTAGE); an
// allocation the server refuses is CUDA_ERROR_OUT_OF_MEMORY, cuMemGetInfo's
// free memory is at most what the limit leaves, and a kernel's load is at
// most the thread percentage. A daemon that answers but cannot give a server
// fails cuInit with CUDA_ERROR_MPS_CONNECTION_FAILED (or
// CUDA_ERROR_MPS_MAX_CLIENTS_REACHED); a server gone later fails calls with
// CUDA_ERROR_MPS_RPC_FAILURE.
// Not simulated: streams, events, copies, MIG devices.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sim/contexts.h"
#include "sim/cuda_api.h"
#include "sim/mps_protocol.h"
#include "sim/root.h"
#include "sim/root_finder.h"
#include "sim/state.h"

#define CUDA_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr CUresult kSuccess = 0;
constexpr CUresult kInvalidValue = 1;
constexpr CUresult kOutOfMemory = 2;
constexpr CUresult kNotInitialized = 3;
constexpr CUresult kNoDevice = 100;
constexpr CUresult kInvalidDevice = 101;
constexpr CUresult kInvalidContext = 201;
constexpr CUresult kInvalidHandle = 400;
constexpr CUresult kNotFound = 500;
constexpr CUresult kMpsConnectionFailed = 805;
constexpr CUresult kMpsRpcFailure = 806;
constexpr CUresult kMpsMaxClientsReached = 808;
constexpr uint64_t kMiB = 1024ULL * 1024;
constexpr char kBusyModule[] = "gpusim:busy";

struct Device {
  std::string name, uuid;
  unsigned slot = 0;
  uint64_t total = 0, reserved = 0;
};

}  // namespace

struct CUctx_st {
  int device = 0;
  unsigned entry = 0;                      // in the contexts table
  std::map<CUdeviceptr, uint64_t> allocs;  // guarded by g_mu
  uint64_t held = 0;                       // sum of allocs; guarded by g_mu
  int64_t busy_until_ns = 0;               // guarded by g_mu
  uint64_t mps_limit = 0;                  // bytes; 0: none (or not under MPS)
  double mps_percentage = 100;             // the most of the GPU its kernels use
};
struct CUmod_st {};
struct CUfunc_st {};

namespace {

std::mutex g_mu;
bool g_initialised = false;                      // guarded by g_mu
std::vector<Device> g_devices;                   // guarded by g_mu; fixed after cuInit
std::unique_ptr<gdp::sim::SharedState> g_state;  // guarded by g_mu
std::unique_ptr<gdp::sim::Contexts> g_contexts;  // guarded by g_mu
CUdeviceptr g_next_ptr = 0x7f0000000000ULL;      // guarded by g_mu
CUmod_st g_busy_module;
CUfunc_st g_busy_function;
thread_local CUcontext t_current = nullptr;
int g_mps = -1;  // the connection to the MPS server; -1: not under MPS. Guarded by g_mu.

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Memory of `d` not held by anyone: total - reserved - the GPU's own use - contexts'.
uint64_t FreeOf(const Device& d) {
  uint64_t used = d.reserved + g_state->Read(d.slot).mem_used_bytes;
  used += g_contexts->Use(d.slot).mem_bytes;
  return used >= d.total ? 0 : d.total - used;
}

namespace mps = gdp::sim::mps;

// Joins MPS when a control daemon answers in the pipe directory (see the top
// of this file), narrowing `devices` to the server's; kSuccess, without MPS,
// when none answers.
CUresult JoinMps(std::vector<Device>* devices) {
  const char* dir = std::getenv("CUDA_MPS_PIPE_DIRECTORY");  // NOLINT(concurrency-mt-unsafe)
  const std::string pipe = dir != nullptr && *dir != '\0' ? dir : mps::kDefaultPipeDirectory;
  const int control = mps::ConnectUnix(pipe + "/" + mps::kControlSocket);
  if (control < 0) return kSuccess;
  std::optional<std::string> answer = mps::Ask(control, "client " + std::to_string(getuid()));
  close(control);
  if (answer != "ok") return kMpsConnectionFailed;
  const int server = mps::ConnectUnix(pipe + "/" + mps::kServerSocket);
  if (server < 0) return kMpsConnectionFailed;
  answer = mps::Ask(server, "hello " + std::to_string(getpid()));
  if (!answer || answer->rfind("ok ", 0) != 0) {
    close(server);
    return answer == "error max_clients" ? kMpsMaxClientsReached : kMpsConnectionFailed;
  }
  if (const std::string list = answer->substr(3); list != "*") {
    std::vector<Device> served;
    std::stringstream ss(list);
    for (std::string uuid; std::getline(ss, uuid, ',');) {
      for (const Device& d : *devices) {
        if (d.uuid == uuid) served.push_back(d);
      }
    }
    *devices = std::move(served);
  }
  g_mps = server;
  return kSuccess;
}

// The context's limits from the MPS server, asked with the client's own
// CUDA_MPS_* environment for `device`.
CUresult MpsLimits(CUctx_st* c) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read-only use of the environment
  const char* pinned = std::getenv("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT");
  const auto limits = mps::ParsePinnedLimits(pinned != nullptr ? pinned : "");
  const auto it = limits.find(c->device);
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  const char* pct = std::getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
  const std::optional<std::string> answer =
      mps::Ask(g_mps, "ctx " + std::to_string(c->device) + " " +
                          (it != limits.end() ? std::to_string(it->second) : "-") + " " +
                          (mps::ParsePercentage(pct) ? pct : "-"));
  unsigned long long limit = 0;
  double percentage = 0;
  if (!answer || std::sscanf(answer->c_str(), "ok %llu %lf", &limit, &percentage) != 2) {
    return kMpsRpcFailure;
  }
  c->mps_limit = limit;
  c->mps_percentage = percentage;
  return kSuccess;
}

CUresult Init() {
  const gdp::sim::FoundRoot root = gdp::sim::FindDriverRoot(reinterpret_cast<void*>(&Init));
  if (root.path.empty()) return kNoDevice;
  auto profile = gdp::sim::LoadRootProfile(root.path);
  if (!profile.ok()) return kNoDevice;
  auto state = gdp::sim::SharedState::Open(gdp::sim::StatePath(root.path));
  if (!state.ok() || !(*state)->DriverLoaded()) return kNoDevice;
  auto contexts = gdp::sim::Contexts::Open(gdp::sim::ContextsPath(root.path));
  if (!contexts.ok()) return kNoDevice;
  std::vector<Device> devices;
  for (const gdp::sim::GpuSpec& g : profile->gpus) {
    if (root.handed && !gdp::sim::UsableInThisProcess(g.minor)) continue;
    if ((*state)->Read(g.slot).removed) continue;
    devices.push_back({g.name, g.uuid, g.slot, g.memory_mib * kMiB, g.reserved_mib * kMiB});
  }
  if (const CUresult r = JoinMps(&devices); r != kSuccess) return r;
  if (devices.empty()) {
    if (g_mps >= 0) close(g_mps);
    g_mps = -1;
    return kNoDevice;
  }
  g_devices = std::move(devices);
  g_state = std::move(*state);
  g_contexts = std::move(*contexts);
  g_initialised = true;
  return kSuccess;
}

// Parses "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into 16 bytes.
void UuidBytes(const std::string& uuid, CUuuid* out) {
  std::memset(out->bytes, 0, sizeof out->bytes);
  std::string hex;
  for (char c : uuid.substr(uuid.find('-') + 1)) {
    if (c != '-') hex.push_back(c);
  }
  for (size_t i = 0; i < 16 && 2 * i + 1 < hex.size(); ++i) {
    out->bytes[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
}

}  // namespace

CUDA_EXPORT CUresult cuInit(unsigned int flags) {
  if (flags != 0) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_initialised) return kSuccess;
  return Init();
}

CUDA_EXPORT CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  const gdp::sim::FoundRoot root =
      gdp::sim::FindDriverRoot(reinterpret_cast<void*>(&cuDriverGetVersion));
  auto profile = gdp::sim::LoadRootProfile(root.path);
  *version = profile.ok() ? profile->cuda_driver_version : 0;
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceGetCount(int* count) {
  if (count == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  *count = static_cast<int>(g_devices.size());
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (device == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  if (ordinal < 0 || ordinal >= static_cast<int>(g_devices.size())) return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
  if (name == nullptr || len <= 0) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  if (device < 0 || device >= static_cast<int>(g_devices.size())) return kInvalidDevice;
  const std::string& n = g_devices[device].name;
  const size_t copy = std::min(n.size(), static_cast<size_t>(len - 1));
  std::memcpy(name, n.data(), copy);
  name[copy] = '\0';
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  if (bytes == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  if (device < 0 || device >= static_cast<int>(g_devices.size())) return kInvalidDevice;
  *bytes = g_devices[device].total;
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice device) {
  if (uuid == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  if (device < 0 || device >= static_cast<int>(g_devices.size())) return kInvalidDevice;
  UuidBytes(g_devices[device].uuid, uuid);
  return kSuccess;
}

CUDA_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device) {
  return cuDeviceGetUuid(uuid, device);
}

CUDA_EXPORT CUresult cuCtxCreate_v2(CUcontext* ctx, unsigned int /*flags*/, CUdevice device) {
  if (ctx == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_initialised) return kNotInitialized;
  if (device < 0 || device >= static_cast<int>(g_devices.size())) return kInvalidDevice;
  auto entry = g_contexts->Claim(g_devices[device].slot);
  if (!entry.ok()) return kOutOfMemory;
  auto* c = new CUctx_st();  // NOLINT(cppcoreguidelines-owning-memory): a C handle
  c->device = device;
  c->entry = *entry;
  if (g_mps >= 0) {
    if (const CUresult r = MpsLimits(c); r != kSuccess) {
      g_contexts->Release(c->entry);
      delete c;  // NOLINT(cppcoreguidelines-owning-memory)
      return r;
    }
  }
  *ctx = c;
  t_current = c;
  return kSuccess;
}

CUDA_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
  if (ctx == nullptr) return kInvalidContext;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_mps >= 0 && ctx->held > 0) {
    mps::Ask(g_mps, "free " + std::to_string(ctx->device) + " " + std::to_string(ctx->held));
  }
  g_contexts->Release(ctx->entry);
  if (t_current == ctx) t_current = nullptr;
  delete ctx;  // NOLINT(cppcoreguidelines-owning-memory)
  return kSuccess;
}

CUDA_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  t_current = ctx;
  return kSuccess;
}

CUDA_EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
  if (ctx == nullptr) return kInvalidValue;
  *ctx = t_current;
  return kSuccess;
}

CUDA_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  CUcontext c = t_current;
  if (c == nullptr) return kInvalidContext;
  if (bytes > FreeOf(g_devices[c->device])) return kOutOfMemory;
  if (g_mps >= 0) {
    const std::optional<std::string> answer =
        mps::Ask(g_mps, "alloc " + std::to_string(c->device) + " " + std::to_string(bytes));
    if (answer && answer->rfind("oom", 0) == 0) return kOutOfMemory;
    if (answer != "ok") return kMpsRpcFailure;
  }
  *ptr = g_next_ptr;
  g_next_ptr += (bytes + kMiB - 1) / kMiB * kMiB;
  c->allocs[*ptr] = bytes;
  c->held += bytes;
  g_contexts->SetMemory(c->entry, c->held);
  return kSuccess;
}

CUDA_EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
  std::lock_guard<std::mutex> lock(g_mu);
  CUcontext c = t_current;
  if (c == nullptr) return kInvalidContext;
  auto it = c->allocs.find(ptr);
  if (it == c->allocs.end()) return kInvalidValue;
  if (g_mps >= 0) {
    mps::Ask(g_mps, "free " + std::to_string(c->device) + " " + std::to_string(it->second));
  }
  c->held -= it->second;
  c->allocs.erase(it);
  g_contexts->SetMemory(c->entry, c->held);
  return kSuccess;
}

CUDA_EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  CUcontext c = t_current;
  if (c == nullptr) return kInvalidContext;
  *free = FreeOf(g_devices[c->device]);
  if (c->mps_limit > 0)
    *free = std::min<uint64_t>(*free, c->mps_limit - std::min(c->mps_limit, c->held));
  *total = g_devices[c->device].total;
  return kSuccess;
}

CUDA_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  if (module == nullptr || image == nullptr) return kInvalidValue;
  if (std::strcmp(static_cast<const char*>(image), kBusyModule) != 0) return kInvalidValue;
  *module = &g_busy_module;
  return kSuccess;
}

CUDA_EXPORT CUresult cuModuleGetFunction(CUfunction* f, CUmodule module, const char* name) {
  if (f == nullptr || name == nullptr) return kInvalidValue;
  if (module != &g_busy_module) return kInvalidHandle;
  if (std::strcmp(name, "busy") != 0) return kNotFound;
  *f = &g_busy_function;
  return kSuccess;
}

CUDA_EXPORT CUresult cuModuleUnload(CUmodule module) {
  return module == &g_busy_module ? kSuccess : kInvalidHandle;
}

CUDA_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int, unsigned int, unsigned int,
                                    unsigned int, unsigned int, unsigned int, unsigned int,
                                    CUstream, void** params, void**) {
  if (f != &g_busy_function) return kInvalidHandle;
  if (params == nullptr || params[0] == nullptr || params[1] == nullptr) return kInvalidValue;
  unsigned percent = *static_cast<const unsigned*>(params[0]);
  const unsigned ms = *static_cast<const unsigned*>(params[1]);
  if (percent > 100) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  CUcontext c = t_current;
  if (c == nullptr) return kInvalidContext;
  // Under MPS a client's kernels run on at most its share of the GPU.
  percent = std::min(percent, static_cast<unsigned>(c->mps_percentage));
  c->busy_until_ns = NowNs() + static_cast<int64_t>(ms) * 1000000;
  g_contexts->SetBusy(c->entry, percent, c->busy_until_ns);
  return kSuccess;
}

CUDA_EXPORT CUresult cuCtxSynchronize() {
  int64_t until = 0;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (t_current == nullptr) return kInvalidContext;
    until = t_current->busy_until_ns;
  }
  if (const int64_t left = until - NowNs(); left > 0) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(left));
  }
  return kSuccess;
}

CUDA_EXPORT CUresult cuGetErrorName(CUresult error, const char** name) {
  if (name == nullptr) return kInvalidValue;
  static const std::map<CUresult, const char*> kNames = {
      {kSuccess, "CUDA_SUCCESS"},
      {kInvalidValue, "CUDA_ERROR_INVALID_VALUE"},
      {kOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY"},
      {kNotInitialized, "CUDA_ERROR_NOT_INITIALIZED"},
      {kNoDevice, "CUDA_ERROR_NO_DEVICE"},
      {kInvalidDevice, "CUDA_ERROR_INVALID_DEVICE"},
      {kInvalidContext, "CUDA_ERROR_INVALID_CONTEXT"},
      {kInvalidHandle, "CUDA_ERROR_INVALID_HANDLE"},
      {kNotFound, "CUDA_ERROR_NOT_FOUND"},
      {kMpsConnectionFailed, "CUDA_ERROR_MPS_CONNECTION_FAILED"},
      {kMpsRpcFailure, "CUDA_ERROR_MPS_RPC_FAILURE"},
      {kMpsMaxClientsReached, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED"},
  };
  auto it = kNames.find(error);
  if (it == kNames.end()) return kInvalidValue;
  *name = it->second;
  return kSuccess;
}

CUDA_EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
  if (text == nullptr) return kInvalidValue;
  static const std::map<CUresult, const char*> kTexts = {
      {kSuccess, "no error"},
      {kInvalidValue, "invalid argument"},
      {kOutOfMemory, "out of memory"},
      {kNotInitialized, "initialization error"},
      {kNoDevice, "no CUDA-capable device is detected"},
      {kInvalidDevice, "invalid device ordinal"},
      {kInvalidContext, "invalid device context"},
      {kInvalidHandle, "invalid resource handle"},
      {kNotFound, "named symbol not found"},
      {kMpsConnectionFailed,
       "MPS client failed to connect to the MPS control daemon or the MPS server"},
      {kMpsRpcFailure,
       "the remote procedural call between the MPS server and the MPS client failed"},
      {kMpsMaxClientsReached,
       "the hardware resources required to create MPS client have been exhausted"},
  };
  auto it = kTexts.find(error);
  if (it == kTexts.end()) return kInvalidValue;
  *text = it->second;
  return kSuccess;
}
