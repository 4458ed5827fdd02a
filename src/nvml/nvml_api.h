// NvmlApi: the NVML seam. One virtual method per NVML entry point the project
// calls, with the C signature kept (handles, out-parameters, nvmlReturn_t) so
// that NVML's semantics stay visible and a GoogleMock (tests/mocks/mock_nvml.h)
// can stand in for the library.
//
// DlNvml (dl_nvml.h) implements it over dlopen'ed libnvidia-ml.so.1: each entry
// point is resolved on first use, newer versioned symbols first, and a symbol
// the driver lacks answers NVML_ERROR_FUNCTION_NOT_FOUND rather than crashing.
// Conversion of nvmlReturn_t into absl::Status happens once, in NvmlStatus().
//
// Thread-safety: NVML itself is thread-safe; implementations must be too.
#pragma once

#include <nvml.h>

#include <string>

#include "absl/status/status.h"

namespace gdp::nvml {

class NvmlApi {
 public:
  virtual ~NvmlApi() = default;

  // Library lifetime.
  virtual nvmlReturn_t Init() = 0;      // nvmlInit_v2, falling back to nvmlInit
  virtual nvmlReturn_t Shutdown() = 0;  // nvmlShutdown
  virtual std::string ErrorString(nvmlReturn_t r) = 0;

  // System.
  virtual nvmlReturn_t SystemGetDriverVersion(char* version, unsigned int length) = 0;
  virtual nvmlReturn_t SystemGetNVMLVersion(char* version, unsigned int length) = 0;
  virtual nvmlReturn_t SystemGetCudaDriverVersion(int* version) = 0;  // _v2, then v1

  // Device enumeration and identity.
  virtual nvmlReturn_t DeviceGetCount(unsigned int* count) = 0;  // _v2, then v1
  virtual nvmlReturn_t DeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) = 0;
  virtual nvmlReturn_t DeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) = 0;
  virtual nvmlReturn_t DeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) = 0;
  virtual nvmlReturn_t DeviceGetName(nvmlDevice_t device, char* name, unsigned int length) = 0;
  virtual nvmlReturn_t DeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t* brand) = 0;
  virtual nvmlReturn_t DeviceGetIndex(nvmlDevice_t device, unsigned int* index) = 0;
  virtual nvmlReturn_t DeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) = 0;
  virtual nvmlReturn_t DeviceGetArchitecture(nvmlDevice_t device,
                                             nvmlDeviceArchitecture_t* arch) = 0;
  virtual nvmlReturn_t DeviceGetCudaComputeCapability(nvmlDevice_t device, int* major,
                                                      int* minor) = 0;
  virtual nvmlReturn_t DeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) = 0;
  // _v3, then _v2, then v1.
  virtual nvmlReturn_t DeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t* pci) = 0;
  virtual nvmlReturn_t DeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) = 0;
  // Whether (and how) CUDA contexts may be created, which decides whether an
  // MPS server can run (src/mps). Added later: the default answers
  // FUNCTION_NOT_FOUND so earlier implementations keep compiling.
  virtual nvmlReturn_t DeviceGetComputeMode(nvmlDevice_t /*device*/, nvmlComputeMode_t* /*mode*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }

  // Topology.
  virtual nvmlReturn_t DeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b,
                                                       nvmlGpuTopologyLevel_t* level) = 0;
  virtual nvmlReturn_t DeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                            nvmlEnableState_t* active) = 0;
  virtual nvmlReturn_t DeviceGetNvLinkRemotePciInfo(nvmlDevice_t device, unsigned int link,
                                                    nvmlPciInfo_t* pci) = 0;  // _v2, then v1
  // What sits at the far end of a link (GPU, NVSwitch, IBM NPU). Newer NVML
  // only: the default answers FUNCTION_NOT_FOUND so implementations written
  // before it was added keep compiling; callers then infer "not a GPU's bus id
  // => switch".
  virtual nvmlReturn_t DeviceGetNvLinkRemoteDeviceType(nvmlDevice_t /*device*/,
                                                       unsigned int /*link*/,
                                                       nvmlIntNvLinkDeviceType_t* /*type*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }

  // MIG.
  virtual nvmlReturn_t DeviceGetMigMode(nvmlDevice_t device, unsigned int* current,
                                        unsigned int* pending) = 0;
  virtual nvmlReturn_t DeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int* count) = 0;
  virtual nvmlReturn_t DeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                       nvmlDevice_t* mig) = 0;
  virtual nvmlReturn_t DeviceGetGpuInstanceId(nvmlDevice_t mig, unsigned int* id) = 0;
  virtual nvmlReturn_t DeviceGetComputeInstanceId(nvmlDevice_t mig, unsigned int* id) = 0;
  virtual nvmlReturn_t DeviceGetAttributes(nvmlDevice_t device,
                                           nvmlDeviceAttributes_t* attrs) = 0;  // _v2, then v1

  // Telemetry (metrics). Each has a default answering FUNCTION_NOT_FOUND, so
  // an implementation that serves only discovery and health still compiles.
  // Callers treat any failure (NOT_SUPPORTED, FUNCTION_NOT_FOUND, ...) as
  // "this value is not available", never as an error of the device.
  virtual nvmlReturn_t DeviceGetUtilizationRates(nvmlDevice_t /*device*/,
                                                 nvmlUtilization_t* /*util*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetTemperature(nvmlDevice_t /*device*/,
                                            nvmlTemperatureSensors_t /*sensor*/,
                                            unsigned int* /*celsius*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetPowerUsage(nvmlDevice_t /*device*/, unsigned int* /*mw*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetEnforcedPowerLimit(nvmlDevice_t /*device*/, unsigned int* /*mw*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetTotalEnergyConsumption(nvmlDevice_t /*device*/,
                                                       unsigned long long* /*mj*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetClockInfo(nvmlDevice_t /*device*/, nvmlClockType_t /*type*/,
                                          unsigned int* /*mhz*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetPcieThroughput(nvmlDevice_t /*device*/,
                                               nvmlPcieUtilCounter_t /*counter*/,
                                               unsigned int* /*kb_per_s*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetTotalEccErrors(nvmlDevice_t /*device*/,
                                               nvmlMemoryErrorType_t /*type*/,
                                               nvmlEccCounterType_t /*counter*/,
                                               unsigned long long* /*count*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t DeviceGetRemappedRows(nvmlDevice_t /*device*/, unsigned int* /*corr*/,
                                             unsigned int* /*unc*/, unsigned int* /*pending*/,
                                             unsigned int* /*failure*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  // nvmlDeviceGetCurrentClocksEventReasons, then the older ...ThrottleReasons.
  virtual nvmlReturn_t DeviceGetCurrentClocksEventReasons(nvmlDevice_t /*device*/,
                                                          unsigned long long* /*reasons*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  // Used for NVML_FI_DEV_MEMORY_TEMP; each value carries its own nvmlReturn.
  virtual nvmlReturn_t DeviceGetFieldValues(nvmlDevice_t /*device*/, int /*count*/,
                                            nvmlFieldValue_t* /*values*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }

  // Events (health).
  virtual nvmlReturn_t DeviceGetSupportedEventTypes(nvmlDevice_t device,
                                                    unsigned long long* types) = 0;
  virtual nvmlReturn_t EventSetCreate(nvmlEventSet_t* set) = 0;
  virtual nvmlReturn_t DeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                            nvmlEventSet_t set) = 0;
  // _v2, then v1.
  virtual nvmlReturn_t EventSetWait(nvmlEventSet_t set, nvmlEventData_t* data,
                                    unsigned int timeout_ms) = 0;
  virtual nvmlReturn_t EventSetFree(nvmlEventSet_t set) = 0;

  // Whether the GPU is a vGPU (a guest's virtual GPU), passed through, or
  // bare. Older drivers may lack it (FUNCTION_NOT_FOUND: taken as bare).
  virtual nvmlReturn_t DeviceGetVirtualizationMode(nvmlDevice_t /*device*/,
                                                   nvmlGpuVirtualizationMode_t* /*mode*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }

  // System events (node changes): driver bind and unbind of a GPU, nvml.h
  // 12.9 and newer. Older drivers lack them (FUNCTION_NOT_FOUND): the daemon
  // then relies on its periodic check alone.
  virtual nvmlReturn_t SystemEventSetCreate(nvmlSystemEventSetCreateRequest_t* /*request*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t SystemRegisterEvents(nvmlSystemRegisterEventRequest_t* /*request*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t SystemEventSetWait(nvmlSystemEventSetWaitRequest_t* /*request*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
  virtual nvmlReturn_t SystemEventSetFree(nvmlSystemEventSetFreeRequest_t* /*request*/) {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
};

// Converts an NVML return code into a Status whose message names the call:
// NvmlStatus(api, r, "nvmlDeviceGetUUID", "GPU 3") ->
//   "nvmlDeviceGetUUID(GPU 3): GPU is lost (NVML_ERROR_GPU_IS_LOST)".
// NVML_SUCCESS becomes OkStatus.
absl::Status NvmlStatus(NvmlApi& api, nvmlReturn_t r, const std::string& call,
                        const std::string& subject = "");

// The symbolic name of a return code, e.g. "NVML_ERROR_GPU_IS_LOST".
const char* ReturnCodeName(nvmlReturn_t r);

}  // namespace gdp::nvml
