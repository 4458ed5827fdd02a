// Test stand-in for a new libnvidia-ml.so.1: versioned entry points, plus
// unversioned ones that answer differently (an error, a wrong count), so a
// test can prove that the newest symbol is the one called.
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <cstdio>
#include <cstring>

nvmlReturn_t nvmlInit_v2(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlInit(void) { return NVML_ERROR_UNKNOWN; }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  *count = 2;
  return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int* count) {
  *count = 99;
  return NVML_SUCCESS;
}

// No _v3: the loader must fall back to _v2, not to v1.
nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t, nvmlPciInfo_t* pci) {
  std::memset(pci, 0, sizeof(*pci));
  std::snprintf(pci->busId, sizeof(pci->busId), "%s", "00000000:1B:00.0");
  pci->pciDeviceId = 0x233010de;
  return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t, nvmlPciInfo_t*) { return NVML_ERROR_UNKNOWN; }

const char* nvmlErrorString(nvmlReturn_t result) {
  return result == NVML_ERROR_GPU_IS_LOST ? "fake: GPU is lost" : "fake: other error";
}
