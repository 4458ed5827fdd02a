// DlNvml: NvmlApi over a dlopen'ed libnvidia-ml.so.1 (the driver's, or the
// simulator's; it cannot tell them apart).
//
// Each entry point is resolved on first use, newest versioned symbol first
// (nvmlInit_v2, then nvmlInit; nvmlDeviceGetPciInfo_v3, _v2, then v1; ...), so
// one binary runs on old and new drivers. A symbol the library lacks answers
// NVML_ERROR_FUNCTION_NOT_FOUND and is logged once, naming the feature that is
// switched off; it is never a crash.
//
// Ownership: DlNvml owns the dlopen handle and dlclose()s it when destroyed.
// It does not call nvmlShutdown on its own: whoever called Init() calls
// Shutdown(). Every function pointer obtained from the library is invalid once
// the DlNvml is gone.
//
// Thread-safety: every method may be called from any thread; resolution of a
// symbol happens exactly once (std::call_once per entry point).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "src/common/filesystem.h"
#include "src/nvml/nvml_api.h"

namespace gdp::nvml {

// The library's soname, as the driver installs it.
inline constexpr char kNvmlLibraryName[] = "libnvidia-ml.so.1";

// Directories searched, in order, below the driver root.
const std::vector<std::string>& NvmlLibrarySearchDirs();

// Where to load NVML from. A non-empty explicit_path wins: a bare file name
// (no '/') is handed to dlopen's own search as is, a path must exist. Otherwise
// libnvidia-ml.so.1 is looked for under driver_root in NvmlLibrarySearchDirs().
// NotFound names every path tried and the likely fix.
absl::StatusOr<std::string> FindNvmlLibrary(const FileSystem& fs, const std::string& driver_root,
                                            const std::string& explicit_path);

class DlNvml final : public NvmlApi {
 public:
  // dlopen()s the library (RTLD_NOW | RTLD_LOCAL). The error carries dlerror().
  static absl::StatusOr<std::unique_ptr<DlNvml>> Open(const std::string& library_path);

  ~DlNvml() override;
  DlNvml(const DlNvml&) = delete;
  DlNvml& operator=(const DlNvml&) = delete;

  const std::string& library_path() const { return path_; }
  // Entry points resolved so far and found under none of their names (each
  // listed once, by its newest name). For diagnostics and tests.
  std::vector<std::string> MissingSymbols() const;

  nvmlReturn_t Init() override;
  nvmlReturn_t Shutdown() override;
  std::string ErrorString(nvmlReturn_t r) override;
  nvmlReturn_t SystemGetDriverVersion(char* version, unsigned int length) override;
  nvmlReturn_t SystemGetNVMLVersion(char* version, unsigned int length) override;
  nvmlReturn_t SystemGetCudaDriverVersion(int* version) override;
  nvmlReturn_t DeviceGetCount(unsigned int* count) override;
  nvmlReturn_t DeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) override;
  nvmlReturn_t DeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) override;
  nvmlReturn_t DeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) override;
  nvmlReturn_t DeviceGetName(nvmlDevice_t device, char* name, unsigned int length) override;
  nvmlReturn_t DeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t* brand) override;
  nvmlReturn_t DeviceGetIndex(nvmlDevice_t device, unsigned int* index) override;
  nvmlReturn_t DeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) override;
  nvmlReturn_t DeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t* arch) override;
  nvmlReturn_t DeviceGetCudaComputeCapability(nvmlDevice_t device, int* major, int* minor) override;
  nvmlReturn_t DeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) override;
  nvmlReturn_t DeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t* pci) override;
  nvmlReturn_t DeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) override;
  nvmlReturn_t DeviceGetVirtualizationMode(nvmlDevice_t device,
                                           nvmlGpuVirtualizationMode_t* mode) override;
  nvmlReturn_t DeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t* mode) override;
  nvmlReturn_t DeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b,
                                               nvmlGpuTopologyLevel_t* level) override;
  nvmlReturn_t DeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                    nvmlEnableState_t* active) override;
  nvmlReturn_t DeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link,
                                            nvmlPciInfo_t* pci) override;
  nvmlReturn_t DeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link,
                                               nvmlIntNvLinkDeviceType_t* type) override;
  nvmlReturn_t DeviceGetMigMode(nvmlDevice_t device, unsigned int* current,
                                unsigned int* pending) override;
  nvmlReturn_t DeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int* count) override;
  nvmlReturn_t DeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                               nvmlDevice_t* mig) override;
  nvmlReturn_t DeviceGetGpuInstanceId(nvmlDevice_t mig, unsigned int* id) override;
  nvmlReturn_t DeviceGetComputeInstanceId(nvmlDevice_t mig, unsigned int* id) override;
  nvmlReturn_t DeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t* attrs) override;
  nvmlReturn_t DeviceGetSupportedEventTypes(nvmlDevice_t device,
                                            unsigned long long* types) override;
  nvmlReturn_t DeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* util) override;
  nvmlReturn_t DeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor,
                                    unsigned int* celsius) override;
  nvmlReturn_t DeviceGetPowerUsage(nvmlDevice_t device, unsigned int* mw) override;
  nvmlReturn_t DeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int* mw) override;
  nvmlReturn_t DeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                               unsigned long long* mj) override;
  nvmlReturn_t DeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                  unsigned int* mhz) override;
  nvmlReturn_t DeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter,
                                       unsigned int* kb_per_s) override;
  nvmlReturn_t DeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t type,
                                       nvmlEccCounterType_t counter,
                                       unsigned long long* count) override;
  nvmlReturn_t DeviceGetRemappedRows(nvmlDevice_t device, unsigned int* corr, unsigned int* unc,
                                     unsigned int* pending, unsigned int* failure) override;
  nvmlReturn_t DeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                  unsigned long long* reasons) override;
  nvmlReturn_t DeviceGetFieldValues(nvmlDevice_t device, int count,
                                    nvmlFieldValue_t* values) override;
  nvmlReturn_t EventSetCreate(nvmlEventSet_t* set) override;
  nvmlReturn_t DeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                    nvmlEventSet_t set) override;
  nvmlReturn_t EventSetWait(nvmlEventSet_t set, nvmlEventData_t* data,
                            unsigned int timeout_ms) override;
  nvmlReturn_t EventSetFree(nvmlEventSet_t set) override;
  nvmlReturn_t SystemEventSetCreate(nvmlSystemEventSetCreateRequest_t* request) override;
  nvmlReturn_t SystemRegisterEvents(nvmlSystemRegisterEventRequest_t* request) override;
  nvmlReturn_t SystemEventSetWait(nvmlSystemEventSetWaitRequest_t* request) override;
  nvmlReturn_t SystemEventSetFree(nvmlSystemEventSetFreeRequest_t* request) override;

  // One lazily resolved entry point (public only so the .cc's table can name
  // it; not part of the API).
  struct Symbol {
    std::once_flag once;
    void* fn = nullptr;
  };

 private:
  DlNvml(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}

  // Resolves `symbol` once from `names` (newest first); nullptr when none exists.
  void* Resolve(Symbol& symbol, std::initializer_list<const char*> names, const char* feature);

  template <typename Fn>
  Fn* Get(Symbol& symbol, std::initializer_list<const char*> names, const char* feature) {
    return reinterpret_cast<Fn*>(Resolve(symbol, names, feature));
  }

  void* const handle_;
  const std::string path_;

  mutable absl::Mutex missing_mu_;
  std::vector<std::string> missing_ ABSL_GUARDED_BY(missing_mu_);

  // One slot per entry point, in NvmlApi's order.
  Symbol init_, shutdown_, error_string_, driver_version_, nvml_version_, cuda_version_, count_,
      by_index_, by_uuid_, uuid_, name_, brand_, index_, minor_, arch_, cc_, memory_, pci_, numa_,
      ancestor_, nvlink_state_, nvlink_remote_pci_, nvlink_remote_type_, mig_mode_, max_mig_,
      mig_by_index_, gi_id_, ci_id_, attributes_, event_types_, event_create_, register_events_,
      event_wait_, event_free_, utilization_, temperature_, power_usage_, power_limit_, energy_,
      clock_, pcie_throughput_, ecc_errors_, remapped_rows_, clock_reasons_, field_values_,
      compute_mode_, system_set_create_, system_register_, system_wait_, system_set_free_,
      virtualization_;
};

}  // namespace gdp::nvml
