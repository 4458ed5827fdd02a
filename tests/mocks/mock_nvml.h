// GoogleMock of the NVML seam (src/nvml/nvml_api.h). Use StrictMock<MockNvml>
// for the component under test; tests/mocks/fake_gpus.h builds a whole
// consistent machine on top of it when a test needs many GPUs.
#pragma once

#include <gmock/gmock.h>

#include "src/nvml/nvml_api.h"

namespace gdp::nvml {

class MockNvml : public NvmlApi {
 public:
  MOCK_METHOD(nvmlReturn_t, Init, (), (override));
  MOCK_METHOD(nvmlReturn_t, Shutdown, (), (override));
  MOCK_METHOD(std::string, ErrorString, (nvmlReturn_t r), (override));
  MOCK_METHOD(nvmlReturn_t, SystemGetDriverVersion, (char* version, unsigned int length),
              (override));
  MOCK_METHOD(nvmlReturn_t, SystemGetNVMLVersion, (char* version, unsigned int length), (override));
  MOCK_METHOD(nvmlReturn_t, SystemGetCudaDriverVersion, (int* version), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetCount, (unsigned int* count), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetHandleByIndex, (unsigned int index, nvmlDevice_t* device),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetHandleByUUID, (const char* uuid, nvmlDevice_t* device),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetUUID, (nvmlDevice_t device, char* uuid, unsigned int length),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetName, (nvmlDevice_t device, char* name, unsigned int length),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetBrand, (nvmlDevice_t device, nvmlBrandType_t* brand),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetIndex, (nvmlDevice_t device, unsigned int* index), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetMinorNumber, (nvmlDevice_t device, unsigned int* minor),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetArchitecture,
              (nvmlDevice_t device, nvmlDeviceArchitecture_t* arch), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetCudaComputeCapability,
              (nvmlDevice_t device, int* major, int* minor), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetMemoryInfo, (nvmlDevice_t device, nvmlMemory_t* memory),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetPciInfo, (nvmlDevice_t device, nvmlPciInfo_t* pci),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetNumaNodeId, (nvmlDevice_t device, unsigned int* node),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetComputeMode, (nvmlDevice_t device, nvmlComputeMode_t* mode),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetTopologyCommonAncestor,
              (nvmlDevice_t a, nvmlDevice_t b, nvmlGpuTopologyLevel_t* level), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetNvLinkState,
              (nvmlDevice_t device, unsigned int link, nvmlEnableState_t* active), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetNvLinkRemotePciInfo,
              (nvmlDevice_t device, unsigned int link, nvmlPciInfo_t* pci), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetNvLinkRemoteDeviceType,
              (nvmlDevice_t device, unsigned int link, nvmlIntNvLinkDeviceType_t* type),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetMigMode,
              (nvmlDevice_t device, unsigned int* current, unsigned int* pending), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetMaxMigDeviceCount, (nvmlDevice_t device, unsigned int* count),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetMigDeviceHandleByIndex,
              (nvmlDevice_t device, unsigned int index, nvmlDevice_t* mig), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetGpuInstanceId, (nvmlDevice_t mig, unsigned int* id),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetComputeInstanceId, (nvmlDevice_t mig, unsigned int* id),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetAttributes,
              (nvmlDevice_t device, nvmlDeviceAttributes_t* attrs), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetSupportedEventTypes,
              (nvmlDevice_t device, unsigned long long* types), (override));
  MOCK_METHOD(nvmlReturn_t, EventSetCreate, (nvmlEventSet_t * set), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceRegisterEvents,
              (nvmlDevice_t device, unsigned long long types, nvmlEventSet_t set), (override));
  MOCK_METHOD(nvmlReturn_t, EventSetWait,
              (nvmlEventSet_t set, nvmlEventData_t* data, unsigned int timeout_ms), (override));
  MOCK_METHOD(nvmlReturn_t, EventSetFree, (nvmlEventSet_t set), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetUtilizationRates,
              (nvmlDevice_t device, nvmlUtilization_t* util), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetTemperature,
              (nvmlDevice_t device, nvmlTemperatureSensors_t sensor, unsigned int* celsius),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetPowerUsage, (nvmlDevice_t device, unsigned int* mw),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetEnforcedPowerLimit, (nvmlDevice_t device, unsigned int* mw),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetTotalEnergyConsumption,
              (nvmlDevice_t device, unsigned long long* mj), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetClockInfo,
              (nvmlDevice_t device, nvmlClockType_t type, unsigned int* mhz), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetPcieThroughput,
              (nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int* kb_per_s),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetTotalEccErrors,
              (nvmlDevice_t device, nvmlMemoryErrorType_t type, nvmlEccCounterType_t counter,
               unsigned long long* count),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetRemappedRows,
              (nvmlDevice_t device, unsigned int* corr, unsigned int* unc, unsigned int* pending,
               unsigned int* failure),
              (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetCurrentClocksEventReasons,
              (nvmlDevice_t device, unsigned long long* reasons), (override));
  MOCK_METHOD(nvmlReturn_t, DeviceGetFieldValues,
              (nvmlDevice_t device, int count, nvmlFieldValue_t* values), (override));
};

}  // namespace gdp::nvml
