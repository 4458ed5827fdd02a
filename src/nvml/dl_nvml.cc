// The header's "auto upgrading" #defines (nvmlInit -> nvmlInit_v2, ...) are
// switched off in this file on purpose: DlNvml names every version of an entry
// point itself, and needs the old declarations to check at compile time that
// each fallback has the same signature as the symbol it stands in for.
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include "src/nvml/dl_nvml.h"

#include <dlfcn.h>

#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/log.h"

namespace gdp::nvml {
namespace {

// A fallback may only stand in for a newer symbol when the C signatures agree.
static_assert(std::is_same_v<decltype(nvmlInit_v2), decltype(nvmlInit)>);
static_assert(std::is_same_v<decltype(nvmlDeviceGetCount_v2), decltype(nvmlDeviceGetCount)>);
static_assert(
    std::is_same_v<decltype(nvmlDeviceGetHandleByIndex_v2), decltype(nvmlDeviceGetHandleByIndex)>);
static_assert(std::is_same_v<decltype(nvmlDeviceGetPciInfo_v3), decltype(nvmlDeviceGetPciInfo_v2)>);
static_assert(std::is_same_v<decltype(nvmlDeviceGetPciInfo_v3), decltype(nvmlDeviceGetPciInfo)>);
static_assert(std::is_same_v<decltype(nvmlSystemGetCudaDriverVersion_v2),
                             decltype(nvmlSystemGetCudaDriverVersion)>);
static_assert(std::is_same_v<decltype(nvmlEventSetWait_v2), decltype(nvmlEventSetWait)>);
static_assert(
    std::is_same_v<decltype(nvmlDeviceGetAttributes_v2), decltype(nvmlDeviceGetAttributes)>);
static_assert(std::is_same_v<decltype(nvmlDeviceGetNvLinkRemotePciInfo_v2),
                             decltype(nvmlDeviceGetNvLinkRemotePciInfo)>);

constexpr nvmlReturn_t kMissing = NVML_ERROR_FUNCTION_NOT_FOUND;

bool IsFile(const FileSystem& fs, const std::string& path) {
  auto info = fs.Stat(path);
  return info.ok() &&
         (info->type == FileInfo::Type::kRegular || info->type == FileInfo::Type::kSymlink);
}

}  // namespace

const std::vector<std::string>& NvmlLibrarySearchDirs() {
  static const std::vector<std::string>* const dirs = new std::vector<std::string>{
      "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
      "/lib64",     "/lib/x86_64-linux-gnu",     "/usr/lib",
      "/lib",       "/usr/lib/wsl/lib"};
  return *dirs;
}

absl::StatusOr<std::string> FindNvmlLibrary(const FileSystem& fs, const std::string& driver_root,
                                            const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    if (explicit_path.find('/') == std::string::npos) return explicit_path;  // dlopen searches
    if (IsFile(fs, explicit_path)) return explicit_path;
    return absl::NotFoundError(
        absl::StrCat("NVML library ", explicit_path,
                     " (set by --nvml-library) does not exist; fix the path or unset it to search "
                     "the driver root"));
  }
  std::vector<std::string> tried;
  for (const std::string& dir : NvmlLibrarySearchDirs()) {
    std::string candidate = JoinRoot(driver_root, dir + "/" + kNvmlLibraryName);
    if (IsFile(fs, candidate)) return candidate;
    tried.push_back(std::move(candidate));
  }
  const std::string root = driver_root.empty() ? "/" : driver_root;
  return absl::NotFoundError(
      absl::StrCat(kNvmlLibraryName, " not found; tried ", absl::StrJoin(tried, ", "),
                   ". Is the NVIDIA driver installed, and the host's driver root mounted at ", root,
                   "? Set driverRoot/--driver-root or --nvml-library"));
}

absl::StatusOr<std::unique_ptr<DlNvml>> DlNvml::Open(const std::string& library_path) {
  // glibc keeps the dlerror state per thread, so these calls are thread-safe.
  ::dlerror();  // NOLINT(concurrency-mt-unsafe)
  void* handle = ::dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();  // NOLINT(concurrency-mt-unsafe)
    return absl::FailedPreconditionError(absl::StrCat(
        "failed to load NVML from ", library_path, ": ", err ? err : "unknown dlopen error",
        "; is the NVIDIA driver installed and its driver root mounted? "
        "set driverRoot/--driver-root or --nvml-library"));
  }
  log::Info("loaded NVML", {{"library", library_path}});
  return std::unique_ptr<DlNvml>(new DlNvml(handle, library_path));
}

DlNvml::~DlNvml() { ::dlclose(handle_); }

std::vector<std::string> DlNvml::MissingSymbols() const {
  absl::MutexLock lock(&missing_mu_);
  return missing_;
}

void* DlNvml::Resolve(Symbol& symbol, std::initializer_list<const char*> names,
                      const char* feature) {
  std::call_once(symbol.once, [&] {
    for (const char* name : names) {
      if (void* fn = ::dlsym(handle_, name)) {
        symbol.fn = fn;
        return;
      }
    }
    log::Warn(absl::StrCat("NVML symbol ", *names.begin(), " not found in ", path_, "; ", feature,
                           " disabled"),
              {{"tried", absl::StrJoin(names, ",")}});
    absl::MutexLock lock(&missing_mu_);
    missing_.emplace_back(*names.begin());
  });
  return symbol.fn;
}

// Each method: resolve (once), call, or answer FUNCTION_NOT_FOUND.
#define GDP_NVML_CALL(slot, type, feature, names, ...)    \
  do {                                                    \
    auto* fn = Get<decltype(type)>(slot, names, feature); \
    return fn != nullptr ? fn(__VA_ARGS__) : kMissing;    \
  } while (0)
#define GDP_NAMES(...) \
  { __VA_ARGS__ }

nvmlReturn_t DlNvml::Init() {
  GDP_NVML_CALL(init_, nvmlInit_v2, "NVML", GDP_NAMES("nvmlInit_v2", "nvmlInit"));
}
nvmlReturn_t DlNvml::Shutdown() {
  GDP_NVML_CALL(shutdown_, nvmlShutdown, "NVML shutdown", GDP_NAMES("nvmlShutdown"));
}
std::string DlNvml::ErrorString(nvmlReturn_t r) {
  auto* fn =
      Get<decltype(nvmlErrorString)>(error_string_, {"nvmlErrorString"}, "NVML error descriptions");
  const char* text = fn != nullptr ? fn(r) : nullptr;
  return text != nullptr ? std::string(text) : std::string(ReturnCodeName(r));
}
nvmlReturn_t DlNvml::SystemGetDriverVersion(char* version, unsigned int length) {
  GDP_NVML_CALL(driver_version_, nvmlSystemGetDriverVersion, "driver version",
                GDP_NAMES("nvmlSystemGetDriverVersion"), version, length);
}
nvmlReturn_t DlNvml::SystemGetNVMLVersion(char* version, unsigned int length) {
  GDP_NVML_CALL(nvml_version_, nvmlSystemGetNVMLVersion, "NVML version",
                GDP_NAMES("nvmlSystemGetNVMLVersion"), version, length);
}
nvmlReturn_t DlNvml::SystemGetCudaDriverVersion(int* version) {
  GDP_NVML_CALL(cuda_version_, nvmlSystemGetCudaDriverVersion_v2, "CUDA driver version",
                GDP_NAMES("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"),
                version);
}
nvmlReturn_t DlNvml::DeviceGetCount(unsigned int* count) {
  GDP_NVML_CALL(count_, nvmlDeviceGetCount_v2, "device enumeration",
                GDP_NAMES("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"), count);
}
nvmlReturn_t DlNvml::DeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) {
  GDP_NVML_CALL(by_index_, nvmlDeviceGetHandleByIndex_v2, "device enumeration",
                GDP_NAMES("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"), index,
                device);
}
nvmlReturn_t DlNvml::DeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  GDP_NVML_CALL(by_uuid_, nvmlDeviceGetHandleByUUID, "device lookup by UUID",
                GDP_NAMES("nvmlDeviceGetHandleByUUID"), uuid, device);
}
nvmlReturn_t DlNvml::DeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  GDP_NVML_CALL(uuid_, nvmlDeviceGetUUID, "device UUIDs", GDP_NAMES("nvmlDeviceGetUUID"), device,
                uuid, length);
}
nvmlReturn_t DlNvml::DeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  GDP_NVML_CALL(name_, nvmlDeviceGetName, "product names", GDP_NAMES("nvmlDeviceGetName"), device,
                name, length);
}
nvmlReturn_t DlNvml::DeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t* brand) {
  GDP_NVML_CALL(brand_, nvmlDeviceGetBrand, "brand discovery", GDP_NAMES("nvmlDeviceGetBrand"),
                device, brand);
}
nvmlReturn_t DlNvml::DeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  GDP_NVML_CALL(index_, nvmlDeviceGetIndex, "device indices", GDP_NAMES("nvmlDeviceGetIndex"),
                device, index);
}
nvmlReturn_t DlNvml::DeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) {
  GDP_NVML_CALL(minor_, nvmlDeviceGetMinorNumber, "device node numbers",
                GDP_NAMES("nvmlDeviceGetMinorNumber"), device, minor);
}
nvmlReturn_t DlNvml::DeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t* arch) {
  GDP_NVML_CALL(arch_, nvmlDeviceGetArchitecture, "architecture discovery",
                GDP_NAMES("nvmlDeviceGetArchitecture"), device, arch);
}
nvmlReturn_t DlNvml::DeviceGetCudaComputeCapability(nvmlDevice_t device, int* major, int* minor) {
  GDP_NVML_CALL(cc_, nvmlDeviceGetCudaComputeCapability, "compute capability discovery",
                GDP_NAMES("nvmlDeviceGetCudaComputeCapability"), device, major, minor);
}
nvmlReturn_t DlNvml::DeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  GDP_NVML_CALL(memory_, nvmlDeviceGetMemoryInfo, "memory discovery",
                GDP_NAMES("nvmlDeviceGetMemoryInfo"), device, memory);
}
nvmlReturn_t DlNvml::DeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  GDP_NVML_CALL(
      pci_, nvmlDeviceGetPciInfo_v3, "PCI discovery",
      GDP_NAMES("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"),
      device, pci);
}
nvmlReturn_t DlNvml::DeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) {
  GDP_NVML_CALL(numa_, nvmlDeviceGetNumaNodeId, "NUMA discovery through NVML",
                GDP_NAMES("nvmlDeviceGetNumaNodeId"), device, node);
}
nvmlReturn_t DlNvml::DeviceGetVirtualizationMode(nvmlDevice_t device,
                                                 nvmlGpuVirtualizationMode_t* mode) {
  GDP_NVML_CALL(virtualization_, nvmlDeviceGetVirtualizationMode, "the vgpu.present label",
                GDP_NAMES("nvmlDeviceGetVirtualizationMode"), device, mode);
}
nvmlReturn_t DlNvml::DeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t* mode) {
  GDP_NVML_CALL(compute_mode_, nvmlDeviceGetComputeMode, "the MPS compute-mode check",
                GDP_NAMES("nvmlDeviceGetComputeMode"), device, mode);
}
nvmlReturn_t DlNvml::DeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b,
                                                     nvmlGpuTopologyLevel_t* level) {
  GDP_NVML_CALL(ancestor_, nvmlDeviceGetTopologyCommonAncestor, "PCIe topology",
                GDP_NAMES("nvmlDeviceGetTopologyCommonAncestor"), a, b, level);
}
nvmlReturn_t DlNvml::DeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                          nvmlEnableState_t* active) {
  GDP_NVML_CALL(nvlink_state_, nvmlDeviceGetNvLinkState, "NVLink topology",
                GDP_NAMES("nvmlDeviceGetNvLinkState"), device, link, active);
}
nvmlReturn_t DlNvml::DeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link,
                                                  nvmlPciInfo_t* pci) {
  GDP_NVML_CALL(
      nvlink_remote_pci_, nvmlDeviceGetNvLinkRemotePciInfo_v2, "NVLink topology",
      GDP_NAMES("nvmlDeviceGetNvLinkRemotePciInfo_v2", "nvmlDeviceGetNvLinkRemotePciInfo"), device,
      link, pci);
}
nvmlReturn_t DlNvml::DeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link,
                                                     nvmlIntNvLinkDeviceType_t* type) {
  GDP_NVML_CALL(nvlink_remote_type_, nvmlDeviceGetNvLinkRemoteDeviceType,
                "NVLink remote device types (NVSwitch inferred from bus ids instead)",
                GDP_NAMES("nvmlDeviceGetNvLinkRemoteDeviceType"), device, link, type);
}
nvmlReturn_t DlNvml::DeviceGetMigMode(nvmlDevice_t device, unsigned int* current,
                                      unsigned int* pending) {
  GDP_NVML_CALL(mig_mode_, nvmlDeviceGetMigMode, "MIG", GDP_NAMES("nvmlDeviceGetMigMode"), device,
                current, pending);
}
nvmlReturn_t DlNvml::DeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int* count) {
  GDP_NVML_CALL(max_mig_, nvmlDeviceGetMaxMigDeviceCount, "MIG",
                GDP_NAMES("nvmlDeviceGetMaxMigDeviceCount"), device, count);
}
nvmlReturn_t DlNvml::DeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                     nvmlDevice_t* mig) {
  GDP_NVML_CALL(mig_by_index_, nvmlDeviceGetMigDeviceHandleByIndex, "MIG",
                GDP_NAMES("nvmlDeviceGetMigDeviceHandleByIndex"), device, index, mig);
}
nvmlReturn_t DlNvml::DeviceGetGpuInstanceId(nvmlDevice_t mig, unsigned int* id) {
  GDP_NVML_CALL(gi_id_, nvmlDeviceGetGpuInstanceId, "MIG", GDP_NAMES("nvmlDeviceGetGpuInstanceId"),
                mig, id);
}
nvmlReturn_t DlNvml::DeviceGetComputeInstanceId(nvmlDevice_t mig, unsigned int* id) {
  GDP_NVML_CALL(ci_id_, nvmlDeviceGetComputeInstanceId, "MIG",
                GDP_NAMES("nvmlDeviceGetComputeInstanceId"), mig, id);
}
nvmlReturn_t DlNvml::DeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t* attrs) {
  GDP_NVML_CALL(attributes_, nvmlDeviceGetAttributes_v2, "MIG device attributes",
                GDP_NAMES("nvmlDeviceGetAttributes_v2", "nvmlDeviceGetAttributes"), device, attrs);
}
nvmlReturn_t DlNvml::DeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long* types) {
  GDP_NVML_CALL(event_types_, nvmlDeviceGetSupportedEventTypes, "health events",
                GDP_NAMES("nvmlDeviceGetSupportedEventTypes"), device, types);
}
nvmlReturn_t DlNvml::EventSetCreate(nvmlEventSet_t* set) {
  GDP_NVML_CALL(event_create_, nvmlEventSetCreate, "health events", GDP_NAMES("nvmlEventSetCreate"),
                set);
}
nvmlReturn_t DlNvml::DeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                          nvmlEventSet_t set) {
  GDP_NVML_CALL(register_events_, nvmlDeviceRegisterEvents, "health events",
                GDP_NAMES("nvmlDeviceRegisterEvents"), device, types, set);
}
nvmlReturn_t DlNvml::EventSetWait(nvmlEventSet_t set, nvmlEventData_t* data,
                                  unsigned int timeout_ms) {
  GDP_NVML_CALL(event_wait_, nvmlEventSetWait_v2, "health events",
                GDP_NAMES("nvmlEventSetWait_v2", "nvmlEventSetWait"), set, data, timeout_ms);
}
nvmlReturn_t DlNvml::EventSetFree(nvmlEventSet_t set) {
  GDP_NVML_CALL(event_free_, nvmlEventSetFree, "health events", GDP_NAMES("nvmlEventSetFree"), set);
}

nvmlReturn_t DlNvml::DeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* util) {
  GDP_NVML_CALL(utilization_, nvmlDeviceGetUtilizationRates, "utilisation metrics",
                GDP_NAMES("nvmlDeviceGetUtilizationRates"), device, util);
}
nvmlReturn_t DlNvml::DeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor,
                                          unsigned int* celsius) {
  GDP_NVML_CALL(temperature_, nvmlDeviceGetTemperature, "temperature metrics",
                GDP_NAMES("nvmlDeviceGetTemperature"), device, sensor, celsius);
}
nvmlReturn_t DlNvml::DeviceGetPowerUsage(nvmlDevice_t device, unsigned int* mw) {
  GDP_NVML_CALL(power_usage_, nvmlDeviceGetPowerUsage, "power metrics",
                GDP_NAMES("nvmlDeviceGetPowerUsage"), device, mw);
}
nvmlReturn_t DlNvml::DeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int* mw) {
  GDP_NVML_CALL(power_limit_, nvmlDeviceGetEnforcedPowerLimit, "power limit metrics",
                GDP_NAMES("nvmlDeviceGetEnforcedPowerLimit"), device, mw);
}
nvmlReturn_t DlNvml::DeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long* mj) {
  GDP_NVML_CALL(energy_, nvmlDeviceGetTotalEnergyConsumption, "energy metrics",
                GDP_NAMES("nvmlDeviceGetTotalEnergyConsumption"), device, mj);
}
nvmlReturn_t DlNvml::DeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                        unsigned int* mhz) {
  GDP_NVML_CALL(clock_, nvmlDeviceGetClockInfo, "clock metrics",
                GDP_NAMES("nvmlDeviceGetClockInfo"), device, type, mhz);
}
nvmlReturn_t DlNvml::DeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter,
                                             unsigned int* kb_per_s) {
  GDP_NVML_CALL(pcie_throughput_, nvmlDeviceGetPcieThroughput, "PCIe throughput metrics",
                GDP_NAMES("nvmlDeviceGetPcieThroughput"), device, counter, kb_per_s);
}
nvmlReturn_t DlNvml::DeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t type,
                                             nvmlEccCounterType_t counter,
                                             unsigned long long* count) {
  GDP_NVML_CALL(ecc_errors_, nvmlDeviceGetTotalEccErrors, "ECC error metrics",
                GDP_NAMES("nvmlDeviceGetTotalEccErrors"), device, type, counter, count);
}
nvmlReturn_t DlNvml::DeviceGetRemappedRows(nvmlDevice_t device, unsigned int* corr,
                                           unsigned int* unc, unsigned int* pending,
                                           unsigned int* failure) {
  GDP_NVML_CALL(remapped_rows_, nvmlDeviceGetRemappedRows, "remapped row metrics",
                GDP_NAMES("nvmlDeviceGetRemappedRows"), device, corr, unc, pending, failure);
}
nvmlReturn_t DlNvml::DeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                        unsigned long long* reasons) {
  // The older name (deprecated in 13.0) has the same signature.
  GDP_NVML_CALL(clock_reasons_, nvmlDeviceGetCurrentClocksEventReasons, "throttle reason metrics",
                GDP_NAMES("nvmlDeviceGetCurrentClocksEventReasons",
                          "nvmlDeviceGetCurrentClocksThrottleReasons"),
                device, reasons);
}
nvmlReturn_t DlNvml::DeviceGetFieldValues(nvmlDevice_t device, int count,
                                          nvmlFieldValue_t* values) {
  GDP_NVML_CALL(field_values_, nvmlDeviceGetFieldValues, "field value metrics",
                GDP_NAMES("nvmlDeviceGetFieldValues"), device, count, values);
}

nvmlReturn_t DlNvml::SystemEventSetCreate(nvmlSystemEventSetCreateRequest_t* request) {
  GDP_NVML_CALL(system_set_create_, nvmlSystemEventSetCreate, "driver bind/unbind events",
                GDP_NAMES("nvmlSystemEventSetCreate"), request);
}
nvmlReturn_t DlNvml::SystemRegisterEvents(nvmlSystemRegisterEventRequest_t* request) {
  GDP_NVML_CALL(system_register_, nvmlSystemRegisterEvents, "driver bind/unbind events",
                GDP_NAMES("nvmlSystemRegisterEvents"), request);
}
nvmlReturn_t DlNvml::SystemEventSetWait(nvmlSystemEventSetWaitRequest_t* request) {
  GDP_NVML_CALL(system_wait_, nvmlSystemEventSetWait, "driver bind/unbind events",
                GDP_NAMES("nvmlSystemEventSetWait"), request);
}
nvmlReturn_t DlNvml::SystemEventSetFree(nvmlSystemEventSetFreeRequest_t* request) {
  GDP_NVML_CALL(system_set_free_, nvmlSystemEventSetFree, "driver bind/unbind events",
                GDP_NAMES("nvmlSystemEventSetFree"), request);
}

#undef GDP_NAMES
#undef GDP_NVML_CALL

}  // namespace gdp::nvml
