// Tests of the simulator through the real dlopen path: each test lays out a
// driver root in a temp dir with the gpusim binary, dlopens the library copied
// there, and calls NVML as a client would. A second process (the gpusim
// binary, or a forked child) injects faults, so cross-process state sharing
// and event delivery are exercised for real.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nvml.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "sim/profile.h"
#include "sim/root.h"
#include "sim/state.h"

namespace gdp::sim {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

CommandResult Gpusim(const std::string& args) {
  return RunCommand(std::string(GPUSIM_BINARY) + " " + args);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gpusim-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The NVML entry points, resolved with dlsym from one loaded library.
struct Nvml {
  void* lib = nullptr;
  template <typename F>
  F Sym(const char* name) {
    void* p = dlsym(lib, name);
    EXPECT_NE(p, nullptr) << name;
    return reinterpret_cast<F>(p);
  }
#define NVML_FN(name) decltype(&::name) name = nullptr;
// clang-format off
#define NVML_FNS(X) \
  X(nvmlInit) \
  X(nvmlInit_v2) \
  X(nvmlInitWithFlags) \
  X(nvmlShutdown) \
  X(nvmlErrorString) \
  X(nvmlSystemGetDriverVersion) \
  X(nvmlSystemGetNVMLVersion) \
  X(nvmlSystemGetCudaDriverVersion) \
  X(nvmlSystemGetCudaDriverVersion_v2) \
  X(nvmlDeviceGetCount) \
  X(nvmlDeviceGetCount_v2) \
  X(nvmlDeviceGetHandleByIndex) \
  X(nvmlDeviceGetHandleByIndex_v2) \
  X(nvmlDeviceGetHandleByUUID) \
  X(nvmlDeviceGetHandleByPciBusId) \
  X(nvmlDeviceGetHandleByPciBusId_v2) \
  X(nvmlDeviceGetIndex) \
  X(nvmlDeviceGetUUID) \
  X(nvmlDeviceGetName) \
  X(nvmlDeviceGetSerial) \
  X(nvmlDeviceGetBrand) \
  X(nvmlDeviceGetMinorNumber) \
  X(nvmlDeviceGetArchitecture) \
  X(nvmlDeviceGetCudaComputeCapability) \
  X(nvmlDeviceGetMemoryInfo) \
  X(nvmlDeviceGetMemoryInfo_v2) \
  X(nvmlDeviceGetBAR1MemoryInfo) \
  X(nvmlDeviceGetPciInfo) \
  X(nvmlDeviceGetPciInfo_v2) \
  X(nvmlDeviceGetPciInfo_v3) \
  X(nvmlDeviceGetNumaNodeId) \
  X(nvmlDeviceGetComputeMode) \
  X(nvmlDeviceGetCpuAffinity) \
  X(nvmlDeviceGetCpuAffinityWithinScope) \
  X(nvmlDeviceGetMemoryAffinity) \
  X(nvmlDeviceGetTopologyCommonAncestor) \
  X(nvmlDeviceGetNvLinkState) \
  X(nvmlDeviceGetNvLinkVersion) \
  X(nvmlDeviceGetNvLinkCapability) \
  X(nvmlDeviceGetNvLinkRemotePciInfo) \
  X(nvmlDeviceGetNvLinkRemotePciInfo_v2) \
  X(nvmlDeviceGetNvLinkRemoteDeviceType) \
  X(nvmlDeviceGetMigMode) \
  X(nvmlDeviceGetMaxMigDeviceCount) \
  X(nvmlDeviceGetMigDeviceHandleByIndex) \
  X(nvmlDeviceIsMigDeviceHandle) \
  X(nvmlDeviceGetGpuInstanceId) \
  X(nvmlDeviceGetComputeInstanceId) \
  X(nvmlDeviceGetDeviceHandleFromMigDeviceHandle) \
  X(nvmlDeviceGetAttributes) \
  X(nvmlDeviceGetAttributes_v2) \
  X(nvmlDeviceGetSupportedEventTypes) \
  X(nvmlEventSetCreate) \
  X(nvmlDeviceRegisterEvents) \
  X(nvmlEventSetWait) \
  X(nvmlEventSetWait_v2) \
  X(nvmlEventSetFree) \
  X(nvmlDeviceGetUtilizationRates) \
  X(nvmlDeviceGetTemperature) \
  X(nvmlDeviceGetCurrentClocksEventReasons) \
  X(nvmlDeviceGetFieldValues) \
  X(nvmlDeviceGetPcieThroughput) \
  X(nvmlDeviceGetPowerUsage) \
  X(nvmlDeviceGetPowerManagementLimit) \
  X(nvmlDeviceGetEnforcedPowerLimit) \
  X(nvmlDeviceGetPowerManagementDefaultLimit) \
  X(nvmlDeviceGetTotalEnergyConsumption) \
  X(nvmlDeviceGetClockInfo) \
  X(nvmlDeviceGetMaxClockInfo) \
  X(nvmlDeviceGetEccMode) \
  X(nvmlDeviceGetTotalEccErrors) \
  X(nvmlDeviceGetRetiredPages) \
  X(nvmlDeviceGetRemappedRows) \
  X(nvmlDeviceGetComputeRunningProcesses_v3) \
  X(nvmlDeviceGetPersistenceMode)
  // clang-format on
  NVML_FNS(NVML_FN)
#undef NVML_FN

  static std::set<std::string> Names() {
    std::set<std::string> names;
#define NVML_NAME(name) names.insert(#name);
    NVML_FNS(NVML_NAME)
#undef NVML_NAME
    return names;
  }

  bool Load(const std::string& path) {
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      ADD_FAILURE() << "dlopen " << path << ": " << dlerror();
      return false;
    }
#define NVML_RESOLVE(name) name = Sym<decltype(&::name)>(#name);
    NVML_FNS(NVML_RESOLVE)
#undef NVML_RESOLVE
    return true;
  }
  ~Nvml() {
    if (lib != nullptr) dlclose(lib);
  }
};

// A driver root laid out by gpusim, with its library loaded.
class SimRoot {
 public:
  explicit SimRoot(const std::string& profile, const std::string& extra = "") {
    unsetenv(kRootEnv);
    auto r = Gpusim("root " + dir_.path() + " --profile " + profile + " " + extra +
                    (geteuid() == 0 ? "" : " --no-mknod"));
    EXPECT_EQ(r.status, 0) << r.output;
    loaded_ = r.status == 0 && nvml_.Load(LibraryPath(dir_.path()));
    auto p = LoadProfile(profile);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) profile_ = *p;
  }
  bool ok() const { return loaded_; }
  Nvml& nvml() { return nvml_; }
  const Profile& profile() const { return profile_; }
  const std::string& root() const { return dir_.path(); }
  CommandResult Inject(const std::string& args) {
    return Gpusim("--root " + dir_.path() + " " + args);
  }

 private:
  TempDir dir_;
  Nvml nvml_;
  Profile profile_;
  bool loaded_ = false;
};

std::string Str(const char* s) { return s; }

// ---------------------------------------------------------------- every call, every profile

class EveryProfile : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryProfile, EveryCallAnswersAsTheProfileSays) {
  SimRoot sim(GetParam());
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  const Profile& p = sim.profile();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);

  char buf[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  ASSERT_EQ(n.nvmlSystemGetDriverVersion(buf, sizeof buf), NVML_SUCCESS);
  EXPECT_EQ(Str(buf), p.driver_version);
  ASSERT_EQ(n.nvmlSystemGetNVMLVersion(buf, sizeof buf), NVML_SUCCESS);
  EXPECT_EQ(Str(buf), p.NvmlVersion());
  int cuda = 0;
  ASSERT_EQ(n.nvmlSystemGetCudaDriverVersion_v2(&cuda), NVML_SUCCESS);
  EXPECT_EQ(cuda, p.cuda_driver_version);
  ASSERT_EQ(n.nvmlSystemGetCudaDriverVersion(&cuda), NVML_SUCCESS);
  EXPECT_EQ(cuda, p.cuda_driver_version);
  unsigned count = 0, count1 = 0;
  ASSERT_EQ(n.nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetCount(&count1), NVML_SUCCESS);
  ASSERT_EQ(count, p.gpus.size());
  EXPECT_EQ(count1, count);

  std::vector<nvmlDevice_t> handles(count);
  for (unsigned i = 0; i < count; ++i) {
    SCOPED_TRACE("GPU " + std::to_string(i));
    const GpuSpec& g = p.gpus[i];
    nvmlDevice_t d = nullptr, d1 = nullptr, by = nullptr;
    ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(i, &d), NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetHandleByIndex(i, &d1), NVML_SUCCESS);
    EXPECT_EQ(d, d1);
    handles[i] = d;
    unsigned idx = 99, minor = 99;
    ASSERT_EQ(n.nvmlDeviceGetIndex(d, &idx), NVML_SUCCESS);
    EXPECT_EQ(idx, i);
    ASSERT_EQ(n.nvmlDeviceGetMinorNumber(d, &minor), NVML_SUCCESS);
    EXPECT_EQ(minor, i);
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    ASSERT_EQ(n.nvmlDeviceGetUUID(d, uuid, sizeof uuid), NVML_SUCCESS);
    EXPECT_EQ(Str(uuid), g.uuid);
    ASSERT_EQ(n.nvmlDeviceGetHandleByUUID(uuid, &by), NVML_SUCCESS);
    EXPECT_EQ(by, d);
    ASSERT_EQ(n.nvmlDeviceGetName(d, buf, sizeof buf), NVML_SUCCESS);
    EXPECT_EQ(Str(buf), g.name);
    char serial[NVML_DEVICE_SERIAL_BUFFER_SIZE];
    EXPECT_EQ(n.nvmlDeviceGetSerial(d, serial, sizeof serial),
              g.brand == "geforce" ? NVML_ERROR_NOT_SUPPORTED : NVML_SUCCESS);
    nvmlBrandType_t brand;
    ASSERT_EQ(n.nvmlDeviceGetBrand(d, &brand), NVML_SUCCESS);
    EXPECT_EQ(brand, g.brand == "geforce" ? NVML_BRAND_GEFORCE : NVML_BRAND_NVIDIA);
    nvmlDeviceArchitecture_t arch;
    ASSERT_EQ(n.nvmlDeviceGetArchitecture(d, &arch), NVML_SUCCESS);
    EXPECT_EQ(arch, g.architecture);
    int major = 0, minor_cc = 0;
    ASSERT_EQ(n.nvmlDeviceGetCudaComputeCapability(d, &major, &minor_cc), NVML_SUCCESS);
    EXPECT_EQ(major, g.cc_major);
    EXPECT_EQ(minor_cc, g.cc_minor);

    // v2 splits total into reserved + used + free; v1 folds reserved into used.
    nvmlMemory_t mem;
    ASSERT_EQ(n.nvmlDeviceGetMemoryInfo(d, &mem), NVML_SUCCESS);
    EXPECT_EQ(mem.total, g.memory_mib << 20);
    EXPECT_EQ(mem.free + mem.used, mem.total);
    nvmlMemory_v2_t mem2{};
    mem2.version = nvmlMemory_v2;
    ASSERT_EQ(n.nvmlDeviceGetMemoryInfo_v2(d, &mem2), NVML_SUCCESS);
    EXPECT_EQ(mem2.total, g.memory_mib << 20);
    EXPECT_EQ(mem2.reserved, g.reserved_mib << 20);
    EXPECT_EQ(mem2.used, 0u);
    EXPECT_EQ(mem2.reserved + mem2.used + mem2.free, mem2.total);
    EXPECT_EQ(mem.used, mem2.reserved + mem2.used);
    EXPECT_EQ(mem.free, mem2.free);
    mem2.version = 1;
    EXPECT_EQ(n.nvmlDeviceGetMemoryInfo_v2(d, &mem2), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    nvmlBAR1Memory_t bar1;
    ASSERT_EQ(n.nvmlDeviceGetBAR1MemoryInfo(d, &bar1), NVML_SUCCESS);
    EXPECT_EQ(bar1.bar1Total, g.bar1_mib << 20);

    nvmlPciInfo_t pci, pci1, pci2;
    ASSERT_EQ(n.nvmlDeviceGetPciInfo_v3(d, &pci), NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetPciInfo_v2(d, &pci1), NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetPciInfo(d, &pci2), NVML_SUCCESS);
    EXPECT_EQ(pci.pciDeviceId, g.pci_device_id);
    EXPECT_EQ(pci.bus, g.bus);
    char want_bus[32];
    std::snprintf(want_bus, sizeof want_bus, "%08X:%02X:%02X.0", g.domain, g.bus, g.device);
    EXPECT_EQ(Str(pci.busId), want_bus);
    EXPECT_EQ(Str(pci1.busId), want_bus);
    EXPECT_EQ(Str(pci2.busIdLegacy), Str(want_bus).substr(4));
    ASSERT_EQ(n.nvmlDeviceGetHandleByPciBusId_v2(pci.busId, &by), NVML_SUCCESS);
    EXPECT_EQ(by, d);
    ASSERT_EQ(n.nvmlDeviceGetHandleByPciBusId(pci.busIdLegacy, &by), NVML_SUCCESS);
    EXPECT_EQ(by, d);

    unsigned node = 99;
    ASSERT_EQ(n.nvmlDeviceGetNumaNodeId(d, &node), NVML_SUCCESS);
    EXPECT_EQ(node, g.numa_node);
    nvmlComputeMode_t mode = NVML_COMPUTEMODE_COUNT;
    ASSERT_EQ(n.nvmlDeviceGetComputeMode(d, &mode), NVML_SUCCESS);
    EXPECT_EQ(static_cast<unsigned>(mode), g.compute_mode);
    unsigned long cpus[4] = {}, mems[1] = {};
    ASSERT_EQ(n.nvmlDeviceGetCpuAffinity(d, 4, cpus), NVML_SUCCESS);
    EXPECT_NE(cpus[0] | cpus[1] | cpus[2] | cpus[3], 0UL);
    ASSERT_EQ(n.nvmlDeviceGetCpuAffinityWithinScope(d, 4, cpus, NVML_AFFINITY_SCOPE_NODE),
              NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetMemoryAffinity(d, 1, mems, NVML_AFFINITY_SCOPE_NODE), NVML_SUCCESS);
    EXPECT_EQ(mems[0], 1UL << g.numa_node);

    // NVLink.
    for (unsigned link = 0; link < NVML_NVLINK_MAX_LINKS; ++link) {
      nvmlEnableState_t active;
      nvmlReturn_t r = n.nvmlDeviceGetNvLinkState(d, link, &active);
      if (g.nvlinks == 0) {
        EXPECT_EQ(r, NVML_ERROR_NOT_SUPPORTED);
        continue;
      }
      ASSERT_EQ(r, NVML_SUCCESS);
      EXPECT_EQ(active == NVML_FEATURE_ENABLED, link < g.nvlinks);
      if (link >= g.nvlinks) continue;
      nvmlIntNvLinkDeviceType_t type;
      ASSERT_EQ(n.nvmlDeviceGetNvLinkRemoteDeviceType(d, link, &type), NVML_SUCCESS);
      EXPECT_EQ(type, NVML_NVLINK_DEVICE_TYPE_SWITCH);
      nvmlPciInfo_t remote, remote1;
      ASSERT_EQ(n.nvmlDeviceGetNvLinkRemotePciInfo_v2(d, link, &remote), NVML_SUCCESS);
      ASSERT_EQ(n.nvmlDeviceGetNvLinkRemotePciInfo(d, link, &remote1), NVML_SUCCESS);
      EXPECT_EQ(Str(remote.busId), Str(remote1.busId));
      unsigned version = 0, cap = 9;
      ASSERT_EQ(n.nvmlDeviceGetNvLinkVersion(d, link, &version), NVML_SUCCESS);
      EXPECT_EQ(version, g.nvlink_version);
      ASSERT_EQ(n.nvmlDeviceGetNvLinkCapability(d, link, NVML_NVLINK_CAP_P2P_SUPPORTED, &cap),
                NVML_SUCCESS);
      EXPECT_EQ(cap, 1u);
    }
    nvmlEnableState_t active;
    EXPECT_EQ(n.nvmlDeviceGetNvLinkState(d, NVML_NVLINK_MAX_LINKS, &active),
              g.nvlinks ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_NOT_SUPPORTED);

    // Attributes of the whole GPU.
    nvmlDeviceAttributes_t attrs, attrs1;
    ASSERT_EQ(n.nvmlDeviceGetAttributes_v2(d, &attrs), NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetAttributes(d, &attrs1), NVML_SUCCESS);
    EXPECT_EQ(attrs.multiprocessorCount, g.multiprocessors);
    EXPECT_EQ(attrs.memorySizeMB, g.memory_mib);
    EXPECT_EQ(attrs1.multiprocessorCount, g.multiprocessors);

    // MIG.
    unsigned cur = 9, pend = 9, max = 0, is_mig = 9, id = 0;
    ASSERT_EQ(n.nvmlDeviceIsMigDeviceHandle(d, &is_mig), NVML_SUCCESS);
    EXPECT_EQ(is_mig, 0u);
    EXPECT_EQ(n.nvmlDeviceGetGpuInstanceId(d, &id), NVML_ERROR_NOT_SUPPORTED);
    EXPECT_EQ(n.nvmlDeviceGetComputeInstanceId(d, &id), NVML_ERROR_NOT_SUPPORTED);
    EXPECT_EQ(n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(d, &by), NVML_ERROR_INVALID_ARGUMENT);
    // nvml.h: the max MIG device count is zero where MIG is not supported or
    // not enabled (a real H100 with MIG disabled answers 0).
    max = 99;
    ASSERT_EQ(n.nvmlDeviceGetMaxMigDeviceCount(d, &max), NVML_SUCCESS);
    EXPECT_EQ(max, g.mig_capable && g.mig_enabled ? 7u : 0u);
    if (!g.mig_capable) {
      EXPECT_EQ(n.nvmlDeviceGetMigMode(d, &cur, &pend), NVML_ERROR_NOT_SUPPORTED);
    } else {
      ASSERT_EQ(n.nvmlDeviceGetMigMode(d, &cur, &pend), NVML_SUCCESS);
      EXPECT_EQ(cur, g.mig_enabled ? unsigned{NVML_DEVICE_MIG_ENABLE} : NVML_DEVICE_MIG_DISABLE);
      EXPECT_EQ(pend, cur);
      ASSERT_EQ(g.max_mig_devices, 7u);
      for (unsigned j = 0; j < g.max_mig_devices; ++j) {
        nvmlDevice_t mig = nullptr;
        nvmlReturn_t r = n.nvmlDeviceGetMigDeviceHandleByIndex(d, j, &mig);
        if (j >= g.mig_devices.size()) {
          EXPECT_EQ(r, NVML_ERROR_NOT_FOUND);
          continue;
        }
        ASSERT_EQ(r, NVML_SUCCESS);
        const MigDeviceSpec& m = g.mig_devices[j];
        ASSERT_EQ(n.nvmlDeviceIsMigDeviceHandle(mig, &is_mig), NVML_SUCCESS);
        EXPECT_EQ(is_mig, 1u);
        ASSERT_EQ(n.nvmlDeviceGetGpuInstanceId(mig, &id), NVML_SUCCESS);
        EXPECT_EQ(id, m.gpu_instance_id);
        ASSERT_EQ(n.nvmlDeviceGetComputeInstanceId(mig, &id), NVML_SUCCESS);
        EXPECT_EQ(id, m.compute_instance_id);
        ASSERT_EQ(n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig, &by), NVML_SUCCESS);
        EXPECT_EQ(by, d);
        ASSERT_EQ(n.nvmlDeviceGetUUID(mig, uuid, sizeof uuid), NVML_SUCCESS);
        EXPECT_EQ(Str(uuid), m.uuid);
        ASSERT_EQ(n.nvmlDeviceGetHandleByUUID(uuid, &by), NVML_SUCCESS);
        EXPECT_EQ(by, mig);
        ASSERT_EQ(n.nvmlDeviceGetName(mig, buf, sizeof buf), NVML_SUCCESS);
        EXPECT_EQ(Str(buf), g.name + " MIG " + m.profile);
        ASSERT_EQ(n.nvmlDeviceGetAttributes_v2(mig, &attrs), NVML_SUCCESS);
        EXPECT_EQ(attrs.gpuInstanceSliceCount, m.slices);
        EXPECT_EQ(attrs.multiprocessorCount, m.multiprocessors);
        EXPECT_EQ(attrs.memorySizeMB, m.memory_mib);
        ASSERT_EQ(n.nvmlDeviceGetMemoryInfo(mig, &mem), NVML_SUCCESS);
        EXPECT_EQ(mem.total, m.memory_mib << 20);
        nvmlUtilization_t util;
        EXPECT_EQ(n.nvmlDeviceGetUtilizationRates(mig, &util), NVML_ERROR_NOT_SUPPORTED);
        EXPECT_EQ(n.nvmlDeviceGetMigMode(mig, &cur, &pend), NVML_ERROR_NOT_SUPPORTED);
      }
      nvmlDevice_t mig;
      EXPECT_EQ(n.nvmlDeviceGetMigDeviceHandleByIndex(d, g.max_mig_devices, &mig),
                NVML_ERROR_INVALID_ARGUMENT);
    }

    // Telemetry at idle.
    nvmlUtilization_t util;
    ASSERT_EQ(n.nvmlDeviceGetUtilizationRates(d, &util), NVML_SUCCESS);
    EXPECT_EQ(util.gpu, 0u);
    unsigned v = 0;
    ASSERT_EQ(n.nvmlDeviceGetTemperature(d, NVML_TEMPERATURE_GPU, &v), NVML_SUCCESS);
    EXPECT_GT(v, 0u);
    ASSERT_EQ(n.nvmlDeviceGetPowerUsage(d, &v), NVML_SUCCESS);
    EXPECT_EQ(v, g.idle_power_w * 1000);
    for (auto fn : {n.nvmlDeviceGetPowerManagementLimit, n.nvmlDeviceGetEnforcedPowerLimit,
                    n.nvmlDeviceGetPowerManagementDefaultLimit}) {
      ASSERT_EQ(fn(d, &v), NVML_SUCCESS);
      EXPECT_EQ(v, g.power_limit_w * 1000);
    }
    unsigned long long energy = 0;
    ASSERT_EQ(n.nvmlDeviceGetTotalEnergyConsumption(d, &energy), NVML_SUCCESS);
    ASSERT_EQ(n.nvmlDeviceGetMaxClockInfo(d, NVML_CLOCK_SM, &v), NVML_SUCCESS);
    EXPECT_EQ(v, g.max_sm_clock_mhz);
    ASSERT_EQ(n.nvmlDeviceGetMaxClockInfo(d, NVML_CLOCK_MEM, &v), NVML_SUCCESS);
    EXPECT_EQ(v, g.max_mem_clock_mhz);
    ASSERT_EQ(n.nvmlDeviceGetClockInfo(d, NVML_CLOCK_SM, &v), NVML_SUCCESS);
    EXPECT_LE(v, g.max_sm_clock_mhz);
    nvmlEnableState_t ecc_cur, ecc_pend;
    unsigned long long ecc_count = 9;
    unsigned pages = 9, a = 9, b = 9, c = 9, e = 9;
    if (g.ecc) {
      ASSERT_EQ(n.nvmlDeviceGetEccMode(d, &ecc_cur, &ecc_pend), NVML_SUCCESS);
      EXPECT_EQ(ecc_cur, NVML_FEATURE_ENABLED);
      ASSERT_EQ(n.nvmlDeviceGetTotalEccErrors(d, NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                              NVML_VOLATILE_ECC, &ecc_count),
                NVML_SUCCESS);
      EXPECT_EQ(ecc_count, 0u);
      bool remaps = g.architecture >= NVML_DEVICE_ARCH_AMPERE;
      EXPECT_EQ(n.nvmlDeviceGetRemappedRows(d, &a, &b, &c, &e),
                remaps ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED);
      EXPECT_EQ(n.nvmlDeviceGetRetiredPages(d, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
                                            &pages, nullptr),
                remaps ? NVML_ERROR_NOT_SUPPORTED : NVML_SUCCESS);
    } else {
      EXPECT_EQ(n.nvmlDeviceGetEccMode(d, &ecc_cur, &ecc_pend), NVML_ERROR_NOT_SUPPORTED);
      EXPECT_EQ(n.nvmlDeviceGetTotalEccErrors(d, NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                              NVML_VOLATILE_ECC, &ecc_count),
                NVML_ERROR_NOT_SUPPORTED);
      EXPECT_EQ(n.nvmlDeviceGetRemappedRows(d, &a, &b, &c, &e), NVML_ERROR_NOT_SUPPORTED);
    }
    unsigned procs = 5;
    ASSERT_EQ(n.nvmlDeviceGetComputeRunningProcesses_v3(d, &procs, nullptr), NVML_SUCCESS);
    EXPECT_EQ(procs, 0u);
    nvmlEnableState_t persistence;
    ASSERT_EQ(n.nvmlDeviceGetPersistenceMode(d, &persistence), NVML_SUCCESS);
    unsigned long long events = 0;
    ASSERT_EQ(n.nvmlDeviceGetSupportedEventTypes(d, &events), NVML_SUCCESS);
    EXPECT_TRUE(events & nvmlEventTypeXidCriticalError);
    const unsigned long long ecc_events =
        nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError;
    EXPECT_EQ(events & ecc_events, g.ecc ? ecc_events : 0u);
    EXPECT_EQ((events & nvmlEventMigConfigChange) != 0, g.mig_capable);
    EXPECT_EQ(events & ~static_cast<unsigned long long>(nvmlEventTypeAll), 0u);
    // Every listed type can be registered.
    nvmlEventSet_t set = nullptr;
    ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
    EXPECT_EQ(n.nvmlDeviceRegisterEvents(d, events, set), NVML_SUCCESS);
    EXPECT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  }

  // Topology between every pair, from the profile's switches and NUMA nodes.
  for (unsigned i = 0; i < count; ++i) {
    for (unsigned j = 0; j < count; ++j) {
      nvmlGpuTopologyLevel_t level;
      ASSERT_EQ(n.nvmlDeviceGetTopologyCommonAncestor(handles[i], handles[j], &level),
                NVML_SUCCESS);
      const GpuSpec &x = p.gpus[i], &y = p.gpus[j];
      nvmlGpuTopologyLevel_t want = i == j ? NVML_TOPOLOGY_INTERNAL
                                    : (x.pcie_switch >= 0 && x.pcie_switch == y.pcie_switch)
                                        ? NVML_TOPOLOGY_SINGLE
                                    : x.numa_node == y.numa_node ? NVML_TOPOLOGY_NODE
                                                                 : NVML_TOPOLOGY_SYSTEM;
      EXPECT_EQ(level, want) << i << "," << j;
    }
  }

  // An event set round trip with nothing injected times out.
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceRegisterEvents(handles[0], nvmlEventTypeXidCriticalError, set),
            NVML_SUCCESS);
  nvmlEventData_t data;
  EXPECT_EQ(n.nvmlEventSetWait_v2(set, &data, 1), NVML_ERROR_TIMEOUT);
  EXPECT_EQ(n.nvmlEventSetWait(set, &data, 0), NVML_ERROR_TIMEOUT);
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);

  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

INSTANTIATE_TEST_SUITE_P(Builtin, EveryProfile, ::testing::ValuesIn(BuiltinProfileNames()),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s) {
                             if (ch == '-') ch = '_';
                           }
                           return s;
                         });

// The library exports exactly the calls this file exercises.
TEST(SimExports, TestsCoverEveryExportedSymbol) {
  auto r =
      RunCommand(std::string("nm -D --defined-only ") + GPUSIM_LIBRARY + " | awk '{print $NF}'");
  ASSERT_EQ(r.status, 0) << r.output;
  std::set<std::string> exported;
  std::string line;
  for (char ch : r.output) {
    if (ch == '\n') {
      if (!line.empty()) exported.insert(line);
      line.clear();
    } else {
      line += ch;
    }
  }
  EXPECT_EQ(exported, Nvml::Names());
}

// ---------------------------------------------------------------- argument checking

// ---------------------------------------------------------------- a real H100's answers

// GPU 0 of dgx-h100 answers as the real H100 80GB HBM3 (driver 580) did in
// docs/h100-check/real.json, where the simulator used to differ.
TEST(SimMatchesRealH100, MaxMigCountReservedMemoryAndEventTypes) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  unsigned max = 99;
  ASSERT_EQ(n.nvmlDeviceGetMaxMigDeviceCount(d, &max), NVML_SUCCESS);
  EXPECT_EQ(max, 0u);  // MIG disabled
  nvmlMemory_v2_t mem2{};
  mem2.version = nvmlMemory_v2;
  ASSERT_EQ(n.nvmlDeviceGetMemoryInfo_v2(d, &mem2), NVML_SUCCESS);
  EXPECT_EQ(mem2.total, 85520809984ULL);
  EXPECT_EQ(mem2.reserved, 503316480ULL);
  EXPECT_EQ(mem2.used, 0ULL);
  EXPECT_EQ(mem2.free, 85017493504ULL);
  nvmlMemory_t mem;
  ASSERT_EQ(n.nvmlDeviceGetMemoryInfo(d, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.used, 503316480ULL);
  EXPECT_EQ(mem.free, 85017493504ULL);
  unsigned long long events = 0;
  ASSERT_EQ(n.nvmlDeviceGetSupportedEventTypes(d, &events), NVML_SUCCESS);
  EXPECT_EQ(events, 0xff9fULL);
  EXPECT_EQ(events, static_cast<unsigned long long>(nvmlEventTypeAll));
  // Allocated memory can fill what is not reserved, no more.
  auto r = sim.Inject("set --gpu 0 mem-used=81079MiB");
  EXPECT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(n.nvmlDeviceGetMemoryInfo_v2(d, &mem2), NVML_SUCCESS);
  EXPECT_EQ(mem2.free, 0ULL);
  r = sim.Inject("set --gpu 0 mem-used=81080MiB");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("at most the GPU's 81079 MiB (81559 MiB less 480 MiB reserved)"));
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

// The event mask per product: the H100's as measured; the others derived from
// what each nvml.h event type is about (ECC types only with ECC, DRAM
// retirement and poison only with ECC on Ampere and newer, MIG config change
// only on MIG-capable GPUs).
TEST(SimMatchesRealH100, SupportedEventTypesPerProduct) {
  struct Case {
    std::string profile;
    unsigned long long types;
  };
  const Case cases[] = {
      {"dgx-h100", 0xff9f},  // measured on a real H100
      {"h100-mig", 0xff9f}, {"dgx-a100", 0xff9f},
      {"t4x4", 0xc29f},     // Turing with ECC: no DRAM retirement/poison, no MIG
      {"geforce", 0xc09c},  // no ECC, no MIG
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.profile);
    SimRoot sim(c.profile);
    ASSERT_TRUE(sim.ok());
    Nvml& n = sim.nvml();
    ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
    nvmlDevice_t d;
    ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
    unsigned long long events = 0;
    ASSERT_EQ(n.nvmlDeviceGetSupportedEventTypes(d, &events), NVML_SUCCESS);
    EXPECT_EQ(events, c.types) << std::hex << events;
    EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  }
}

TEST(SimArguments, EveryCallBeforeInitIsUninitialized) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  unsigned u = 0;
  int i = 0;
  char buf[96];
  nvmlDevice_t d = nullptr;
  nvmlEventSet_t set = nullptr;
  EXPECT_EQ(n.nvmlShutdown(), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlSystemGetDriverVersion(buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlSystemGetNVMLVersion(buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlSystemGetCudaDriverVersion_v2(&i), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlDeviceGetCount_v2(&u), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlDeviceGetHandleByUUID("GPU-x", &d), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlDeviceGetHandleByPciBusId_v2("0000:18:00.0", &d), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlEventSetCreate(&set), NVML_ERROR_UNINITIALIZED);
  EXPECT_STREQ(n.nvmlErrorString(NVML_ERROR_GPU_IS_LOST), "GPU is lost");

  // After a handle is taken and the library shut down, the handle is refused.
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceGetUUID(d, buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
}

TEST(SimArguments, InitIsReferenceCounted) {
  SimRoot sim("t4x4");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  unsigned count = 0;
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlInit(), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlInitWithFlags(NVML_INIT_FLAG_NO_GPUS), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlInitWithFlags(0x100), NVML_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceGetCount_v2(&count), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(n.nvmlShutdown(), NVML_ERROR_UNINITIALIZED);
}

TEST(SimArguments, NullPointersBadHandlesAndSmallBuffers) {
  SimRoot sim("a100-mig");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d = nullptr;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  int junk = 0;
  auto bogus = reinterpret_cast<nvmlDevice_t>(&junk);
  char buf[96];
  unsigned u = 0;
  EXPECT_EQ(n.nvmlSystemGetDriverVersion(nullptr, 80), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlSystemGetDriverVersion(buf, 3), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(n.nvmlSystemGetNVMLVersion(buf, 3), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(n.nvmlSystemGetCudaDriverVersion_v2(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetCount_v2(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetHandleByIndex_v2(4, &d), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetHandleByUUID(nullptr, &d), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetHandleByUUID("GPU-nope", &d), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(n.nvmlDeviceGetHandleByPciBusId_v2("0000:99:00.0", &d), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(n.nvmlDeviceGetHandleByPciBusId_v2("garbage", &d), NVML_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceGetUUID(d, buf, 10), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(n.nvmlDeviceGetName(d, buf, 5), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(n.nvmlDeviceGetUUID(d, nullptr, 96), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetUUID(nullptr, buf, 96), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetUUID(bogus, buf, 96), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetIndex(bogus, &u), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetIndex(d, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetMemoryInfo(d, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetPciInfo_v3(d, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetMigMode(d, &u, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetCudaComputeCapability(d, nullptr, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetTopologyCommonAncestor(d, bogus, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetMigDeviceHandleByIndex(d, 0, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetAttributes_v2(d, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetSupportedEventTypes(d, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlEventSetCreate(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlEventSetFree(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceRegisterEvents(d, 1ULL << 40, set), NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(n.nvmlDeviceRegisterEvents(d, nvmlEventTypeXidCriticalError, nullptr),
            NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlEventSetWait_v2(set, nullptr, 0), NVML_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

TEST(SimArguments, UnknownErrorCodeHasAString) {
  SimRoot sim("geforce");
  ASSERT_TRUE(sim.ok());
  EXPECT_STREQ(sim.nvml().nvmlErrorString(static_cast<nvmlReturn_t>(12345)), "Unknown Error");
  EXPECT_STREQ(sim.nvml().nvmlErrorString(NVML_SUCCESS), "Success");
}

// ---------------------------------------------------------------- shared state across processes

TEST(SimState, LostGpuAnswersGpuIsLostUntilRecovered) {
  SimRoot sim("mixed");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d0, d1, mig;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d0), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(1, &d1), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetMigDeviceHandleByIndex(d0, 0, &mig), NVML_SUCCESS);
  auto r = sim.Inject("lose --gpu 0");
  ASSERT_EQ(r.status, 0) << r.output;
  char buf[96];
  unsigned u = 0;
  nvmlMemory_t mem;
  EXPECT_EQ(n.nvmlDeviceGetUUID(d0, buf, sizeof buf), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(n.nvmlDeviceGetMemoryInfo(d0, &mem), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(n.nvmlDeviceGetMigMode(d0, &u, &u), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(n.nvmlDeviceGetUUID(mig, buf, sizeof buf), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(n.nvmlDeviceGetUUID(d1, buf, sizeof buf), NVML_SUCCESS);
  // The driver still enumerates it.
  EXPECT_EQ(n.nvmlDeviceGetIndex(d0, &u), NVML_SUCCESS);
  r = sim.Inject("recover --gpu 0");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(n.nvmlDeviceGetUUID(d0, buf, sizeof buf), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlDeviceGetUUID(mig, buf, sizeof buf), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

TEST(SimState, MemoryTemperaturePcieAndClockReasonsSetByAnotherProcess) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(2, &d), NVML_SUCCESS);
  auto r = sim.Inject("set --gpu 2 mem-temp=71 pcie-tx=1200 pcie-rx=3400 clock-reasons=0x4");
  ASSERT_EQ(r.status, 0) << r.output;
  unsigned v = 0;
  ASSERT_EQ(n.nvmlDeviceGetPcieThroughput(d, NVML_PCIE_UTIL_TX_BYTES, &v), NVML_SUCCESS);
  EXPECT_EQ(v, 1200u);
  ASSERT_EQ(n.nvmlDeviceGetPcieThroughput(d, NVML_PCIE_UTIL_RX_BYTES, &v), NVML_SUCCESS);
  EXPECT_EQ(v, 3400u);
  unsigned long long reasons = 0;
  ASSERT_EQ(n.nvmlDeviceGetCurrentClocksEventReasons(d, &reasons), NVML_SUCCESS);
  EXPECT_EQ(reasons, 0x4u);
  // Memory temperature is a field value; other fields answer NOT_SUPPORTED per value.
  nvmlFieldValue_t fields[2] = {};
  fields[0].fieldId = NVML_FI_DEV_MEMORY_TEMP;
  fields[1].fieldId = NVML_FI_DEV_ECC_CURRENT;
  ASSERT_EQ(n.nvmlDeviceGetFieldValues(d, 2, fields), NVML_SUCCESS);
  EXPECT_EQ(fields[0].nvmlReturn, NVML_SUCCESS);
  EXPECT_EQ(fields[0].value.uiVal, 71u);
  EXPECT_EQ(fields[1].nvmlReturn, NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(n.nvmlDeviceGetFieldValues(d, -1, fields), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(n.nvmlDeviceGetPcieThroughput(d, NVML_PCIE_UTIL_TX_BYTES, nullptr),
            NVML_ERROR_INVALID_ARGUMENT);
}

TEST(SimState, TelemetrySetByAnotherProcess) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(3, &d), NVML_SUCCESS);
  auto r = sim.Inject(
      "set --gpu 3 util=75 mem-util=40 temp=81 power=350 mem-used=40GiB sm-clock=1755 "
      "ecc-corrected=4");
  ASSERT_EQ(r.status, 0) << r.output;
  nvmlUtilization_t util;
  ASSERT_EQ(n.nvmlDeviceGetUtilizationRates(d, &util), NVML_SUCCESS);
  EXPECT_EQ(util.gpu, 75u);
  EXPECT_EQ(util.memory, 40u);
  unsigned v = 0;
  ASSERT_EQ(n.nvmlDeviceGetTemperature(d, NVML_TEMPERATURE_GPU, &v), NVML_SUCCESS);
  EXPECT_EQ(v, 81u);
  ASSERT_EQ(n.nvmlDeviceGetPowerUsage(d, &v), NVML_SUCCESS);
  EXPECT_EQ(v, 350000u);
  ASSERT_EQ(n.nvmlDeviceGetClockInfo(d, NVML_CLOCK_SM, &v), NVML_SUCCESS);
  EXPECT_EQ(v, 1755u);
  // mem-used is allocated memory: v2 "used"; v1 "used" adds the 480 MiB reserved.
  nvmlMemory_t mem;
  ASSERT_EQ(n.nvmlDeviceGetMemoryInfo(d, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.used, (40ULL << 30) + (480ULL << 20));
  EXPECT_EQ(mem.free, mem.total - mem.used);
  nvmlMemory_v2_t mem2{};
  mem2.version = nvmlMemory_v2;
  ASSERT_EQ(n.nvmlDeviceGetMemoryInfo_v2(d, &mem2), NVML_SUCCESS);
  EXPECT_EQ(mem2.used, 40ULL << 30);
  EXPECT_EQ(mem2.reserved, 480ULL << 20);
  EXPECT_EQ(mem2.free, mem.free);
  unsigned long long ecc = 0;
  ASSERT_EQ(
      n.nvmlDeviceGetTotalEccErrors(d, NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_AGGREGATE_ECC, &ecc),
      NVML_SUCCESS);
  EXPECT_EQ(ecc, 4u);
  // Energy integrates power over time: it must grow (350 W is 350 mJ per ms).
  unsigned long long e0 = 0, e1 = 0;
  ASSERT_EQ(n.nvmlDeviceGetTotalEnergyConsumption(d, &e0), NVML_SUCCESS);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    ASSERT_EQ(n.nvmlDeviceGetTotalEnergyConsumption(d, &e1), NVML_SUCCESS);
  } while (e1 <= e0 && std::chrono::steady_clock::now() < deadline);
  EXPECT_GT(e1, e0);
  // Another GPU is untouched.
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(2, &d), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetUtilizationRates(d, &util), NVML_SUCCESS);
  EXPECT_EQ(util.gpu, 0u);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

TEST(SimState, BadInjectionsFailAndChangeNothing) {
  SimRoot sim("t4x4");
  ASSERT_TRUE(sim.ok());
  auto before = sim.Inject("show");
  ASSERT_EQ(before.status, 0) << before.output;
  struct Case {
    std::string args, want;
  };
  const Case cases[] = {
      {"xid --gpu 4 --xid 79", "unknown GPU 4"},
      {"lose --gpu 9", "unknown GPU 9"},
      {"set --gpu 0 util=75 colour=red", "unknown key 'colour'"},
      {"set --gpu 0 util=101", "percentage"},
      {"set --gpu 0 mem-used=100GiB", "at most"},
      {"set --gpu 0 temp=hot", "bad value 'hot'"},
      {"set --gpu 0 util", "not KEY=VALUE"},
  };
  for (const auto& c : cases) {
    auto r = sim.Inject(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_THAT(r.output, HasSubstr(c.want)) << c.args;
  }
  EXPECT_EQ(sim.Inject("show").output, before.output);
  TempDir dir;
  auto r = Gpusim("root " + dir.path() + "/r --profile dgx-h200");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("unknown profile 'dgx-h200'"));
  EXPECT_FALSE(fs::exists(dir.path() + "/r"));
  std::string bad = dir.path() + "/bad.yaml";
  std::FILE* f = std::fopen(bad.c_str(), "w");
  std::fputs("name: x\ndriverVersion: [1\n", f);
  std::fclose(f);
  r = Gpusim("root " + dir.path() + "/r --profile " + bad);
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr(bad));
  EXPECT_FALSE(fs::exists(dir.path() + "/r"));
  r = Gpusim("--root " + dir.path() + "/none show");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("gpusim root"));
}

TEST(SimState, VersionOverridesBothSidesOfTheDaemonMinimum) {
  struct Case {
    std::string driver;
    int cuda;
  };
  for (const Case& c : {Case{"450.80.02", 11000}, Case{"440.33.01", 9020}}) {
    SimRoot sim("t4x4",
                "--driver-version " + c.driver + " --cuda-version " + std::to_string(c.cuda));
    ASSERT_TRUE(sim.ok());
    Nvml& n = sim.nvml();
    ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
    char buf[80];
    int cuda = 0;
    ASSERT_EQ(n.nvmlSystemGetDriverVersion(buf, sizeof buf), NVML_SUCCESS);
    EXPECT_EQ(Str(buf), c.driver);
    ASSERT_EQ(n.nvmlSystemGetCudaDriverVersion_v2(&cuda), NVML_SUCCESS);
    EXPECT_EQ(cuda, c.cuda);
    EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
  }
  TempDir dir;
  auto r = Gpusim("root " + dir.path() + "/r --profile t4x4 --cuda-version 12");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("12040"));
}

// ---------------------------------------------------------------- events

TEST(SimEvents, XidFromAnotherProcessReachesAWaiter) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  std::vector<nvmlDevice_t> d(8);
  for (unsigned i = 0; i < 8; ++i) {
    ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(i, &d[i]), NVML_SUCCESS);
    if (i != 5) {
      ASSERT_EQ(n.nvmlDeviceRegisterEvents(d[i], nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
    }
  }
  // GPU 5 is not registered: its XID must not be delivered; GPU 3's must.
  ASSERT_EQ(sim.Inject("xid --gpu 5 --xid 48").status, 0);
  nvmlEventData_t data{};
  nvmlReturn_t got = NVML_ERROR_UNKNOWN;
  std::thread waiter([&] { got = n.nvmlEventSetWait_v2(set, &data, 10000); });
  auto r = sim.Inject("xid --gpu 3 --xid 79");
  waiter.join();
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(got, NVML_SUCCESS);
  EXPECT_EQ(data.device, d[3]);
  EXPECT_EQ(data.eventType, static_cast<unsigned long long>(nvmlEventTypeXidCriticalError));
  EXPECT_EQ(data.eventData, 79u);
  EXPECT_EQ(data.gpuInstanceId, 0xFFFFFFFFu);
  // `lose` is XID 79 and then a lost GPU.
  ASSERT_EQ(sim.Inject("lose --gpu 1").status, 0);
  ASSERT_EQ(n.nvmlEventSetWait_v2(set, &data, 5000), NVML_SUCCESS);
  EXPECT_EQ(data.device, d[1]);
  EXPECT_EQ(data.eventData, 79u);
  EXPECT_EQ(n.nvmlEventSetWait_v2(set, &data, 0), NVML_ERROR_TIMEOUT);
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

TEST(SimEvents, MigRegistrationReceivesItsParentsXid) {
  SimRoot sim("a100-mig");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t gpu, mig;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(2, &gpu), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceGetMigDeviceHandleByIndex(gpu, 1, &mig), NVML_SUCCESS);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceRegisterEvents(mig, nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
  ASSERT_EQ(sim.Inject("xid --gpu 2 --xid 31").status, 0);
  nvmlEventData_t data{};
  ASSERT_EQ(n.nvmlEventSetWait_v2(set, &data, 5000), NVML_SUCCESS);
  EXPECT_EQ(data.device, mig);
  EXPECT_EQ(data.eventData, 31u);
  unsigned gi = 0;
  ASSERT_EQ(n.nvmlDeviceGetGpuInstanceId(mig, &gi), NVML_SUCCESS);
  EXPECT_EQ(data.gpuInstanceId, gi);
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

TEST(SimEvents, WaitHonoursItsTimeout) {
  SimRoot sim("t4x4");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d;
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceRegisterEvents(d, nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
  // An XID on another GPU wakes the waiter but is not its event: it waits on.
  ASSERT_EQ(sim.Inject("xid --gpu 1 --xid 79").status, 0);
  nvmlEventData_t data;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(n.nvmlEventSetWait_v2(set, &data, 100), NVML_ERROR_TIMEOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

// Delivery latency, measured, not asserted: a forked child injects through
// SharedState and reports when; the waiter in this process notes when it woke.
TEST(SimEvents, DeliveryLatencyBenchmark) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  Nvml& n = sim.nvml();
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t d;
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(n.nvmlDeviceGetHandleByIndex_v2(0, &d), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlEventSetCreate(&set), NVML_SUCCESS);
  ASSERT_EQ(n.nvmlDeviceRegisterEvents(d, nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
  constexpr int kRounds = 20;
  std::vector<double> latencies_us;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      usleep(2000);  // let the parent block in the wait (only affects what is measured)
      auto state = SharedState::Open(StatePath(sim.root()));
      if (!state.ok()) _exit(1);
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      (*state)->InjectXid(0, 79);
      if (write(fds[1], &ts, sizeof ts) != sizeof ts) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    nvmlEventData_t data;
    nvmlReturn_t r = n.nvmlEventSetWait_v2(set, &data, 10000);
    timespec woke{};
    clock_gettime(CLOCK_MONOTONIC, &woke);
    timespec sent{};
    ASSERT_EQ(read(fds[0], &sent, sizeof sent), static_cast<ssize_t>(sizeof sent));
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_EQ(r, NVML_SUCCESS);
    ASSERT_EQ(data.eventData, 79u);
    latencies_us.push_back((woke.tv_sec - sent.tv_sec) * 1e6 + (woke.tv_nsec - sent.tv_nsec) / 1e3);
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  double p50 = latencies_us[kRounds / 2], max = latencies_us.back();
  std::printf("XID delivery latency over %d rounds: p50 %.0f us, max %.0f us (target < 10000)\n",
              kRounds, p50, max);
  RecordProperty("latency_p50_us", static_cast<int>(p50));
  RecordProperty("latency_max_us", static_cast<int>(max));
  ASSERT_EQ(n.nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

// ---------------------------------------------------------------- the driver root

TEST(SimRootLayout, DeviceNodesAreRealCharacterDevices) {
  if (geteuid() != 0) GTEST_SKIP() << "creating character devices needs root (CAP_MKNOD)";
  SimRoot sim("a100-mig");
  ASSERT_TRUE(sim.ok());
  struct Want {
    std::string path;
    unsigned major, minor;
  };
  std::vector<Want> want = {{"dev/nvidia0", 195, 0},
                            {"dev/nvidia3", 195, 3},
                            {"dev/nvidiactl", 195, 255},
                            {"dev/nvidia-modeset", 195, 254},
                            {"dev/nvidia-uvm", kUvmMajor, 0},
                            {"dev/nvidia-uvm-tools", kUvmMajor, 1},
                            {"dev/nvidia-caps/nvidia-cap1", kCapsMajor, 1},
                            {"dev/nvidia-caps/nvidia-cap2", kCapsMajor, 2}};
  for (const auto& w : want) {
    struct stat st {};
    ASSERT_EQ(stat((sim.root() + "/" + w.path).c_str(), &st), 0) << w.path;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << w.path;
    EXPECT_EQ(major(st.st_rdev), w.major) << w.path;
    EXPECT_EQ(minor(st.st_rdev), w.minor) << w.path;
  }
  EXPECT_FALSE(fs::exists(sim.root() + "/dev/nvidia4"));
  // One GI and one CI capability node per MIG device.
  auto p = LoadProfile("a100-mig");
  ASSERT_TRUE(p.ok());
  size_t mig_devices = 0;
  for (const auto& g : p->gpus) mig_devices += g.mig_devices.size();
  size_t caps = 0;
  for (const auto& e : fs::directory_iterator(sim.root() + "/dev/nvidia-caps")) {
    caps += e.is_character_file() ? 1 : 0;
  }
  EXPECT_EQ(caps, 2 + 2 * mig_devices);
  EXPECT_TRUE(fs::exists(sim.root() + "/proc/driver/nvidia-caps/mig-minors"));
}

TEST(SimRootLayout, RelayingOutWithAnotherProfileReplacesTheNodes) {
  SimRoot sim("dgx-h100");
  ASSERT_TRUE(sim.ok());
  auto r =
      Gpusim("root " + sim.root() + " --profile geforce" + (geteuid() == 0 ? "" : " --no-mknod"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(sim.root() + "/dev/nvidia1"));
  EXPECT_FALSE(fs::exists(sim.root() + "/dev/nvidia2"));
}

TEST(SimRootLayout, InstallsTheMpsControlStandin) {
  SimRoot sim("geforce");
  ASSERT_TRUE(sim.ok());
  const std::string bin = sim.root() + "/" + kMpsControlRelPath;
  ASSERT_TRUE(fs::is_regular_file(bin));
  EXPECT_EQ(access(bin.c_str(), X_OK), 0);
  // It is the stand-in: usage on a bad argument, as the real one.
  auto r = RunCommand(bin + " --bogus 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, ::testing::HasSubstr("usage: nvidia-cuda-mps-control [-d | -f]"));
  // An explicit path that does not exist is an error that names it.
  auto bad = Gpusim("root " + sim.root() + " --profile geforce --mps-control /nowhere/ctl" +
                    (geteuid() == 0 ? "" : " --no-mknod"));
  EXPECT_NE(bad.status, 0);
  EXPECT_THAT(bad.output, ::testing::HasSubstr("/nowhere/ctl not found"));
}

TEST(SimRootLayout, EnvironmentOverridesTheRoot) {
  SimRoot sim("geforce");
  ASSERT_TRUE(sim.ok());
  // The build tree's copy is not under a driver root: it needs $GPUSIM_ROOT.
  Nvml n;
  ASSERT_TRUE(n.Load(GPUSIM_LIBRARY));
  unsetenv(kRootEnv);
  EXPECT_EQ(n.nvmlInit_v2(), NVML_ERROR_DRIVER_NOT_LOADED);
  setenv(kRootEnv, sim.root().c_str(), 1);
  ASSERT_EQ(n.nvmlInit_v2(), NVML_SUCCESS);
  unsetenv(kRootEnv);
  unsigned count = 0;
  ASSERT_EQ(n.nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(n.nvmlShutdown(), NVML_SUCCESS);
}

}  // namespace
}  // namespace gdp::sim
