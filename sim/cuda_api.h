// The CUDA driver API calls the simulated libcuda has (sim/cuda_sim.cc), with
// the types and signatures cuda.h gives them (it is not included: no CUDA
// toolkit is needed to build the simulator). A program built against these
// runs against any libcuda.so.1 that has the calls.
#pragma once

#include <cstddef>

extern "C" {
typedef int CUresult;                    // NOLINT(modernize-use-using): C declarations
typedef int CUdevice;                    // NOLINT(modernize-use-using)
typedef struct CUctx_st* CUcontext;      // NOLINT(modernize-use-using)
typedef unsigned long long CUdeviceptr;  // NOLINT(modernize-use-using)
typedef struct CUmod_st* CUmodule;       // NOLINT(modernize-use-using)
typedef struct CUfunc_st* CUfunction;    // NOLINT(modernize-use-using)
typedef struct CUstream_st* CUstream;    // NOLINT(modernize-use-using)
typedef struct {                         // NOLINT(modernize-use-using)
  char bytes[16];
} CUuuid;
CUresult cuInit(unsigned int flags);
CUresult cuDeviceGetCount(int* count);
CUresult cuDeviceGet(CUdevice* device, int ordinal);
CUresult cuDeviceGetName(char* name, int len, CUdevice device);
CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice device);
CUresult cuCtxCreate_v2(CUcontext* ctx, unsigned int flags, CUdevice device);
CUresult cuCtxDestroy_v2(CUcontext ctx);
CUresult cuCtxSynchronize();
CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes);
CUresult cuMemFree_v2(CUdeviceptr ptr);
CUresult cuMemGetInfo_v2(size_t* free, size_t* total);
CUresult cuModuleLoadData(CUmodule* module, const void* image);
CUresult cuModuleGetFunction(CUfunction* f, CUmodule module, const char* name);
CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                        unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared,
                        CUstream stream, void** params, void** extra);
CUresult cuGetErrorName(CUresult error, const char** name);
CUresult cuGetErrorString(CUresult error, const char** text);
CUresult cuDriverGetVersion(int* version);
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device);
CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device);
CUresult cuCtxSetCurrent(CUcontext ctx);
CUresult cuCtxGetCurrent(CUcontext* ctx);
CUresult cuModuleUnload(CUmodule module);
}
