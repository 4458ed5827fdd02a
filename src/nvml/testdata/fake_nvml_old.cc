// Test stand-in for an old libnvidia-ml.so.1: only unversioned entry points,
// no nvmlErrorString. Declarations come from the pinned nvml.h (with the
// unversioned names declared), so the signatures cannot drift.
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

nvmlReturn_t nvmlInit(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlDeviceGetCount(unsigned int* count) {
  *count = 1;
  return NVML_SUCCESS;
}
