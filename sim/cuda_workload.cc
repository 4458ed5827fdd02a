// cuda-workload: a small CUDA driver-API program for the tests and the demo,
// built against the simulated libcuda's API (any libcuda.so.1 with these calls
// serves): it takes a context on one GPU, allocates memory, keeps the GPU
// busy at a load for a time with the simulator's "busy" kernel, and prints
// what it saw.
//
//   cuda-workload [--device N] [--mib M] [--load P] [--seconds S]
//
// Exit codes: 0 done; 1 bad arguments; 2 a CUDA call failed (its error name
// and text are printed, e.g. CUDA_ERROR_OUT_OF_MEMORY when M MiB do not fit).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sim/cuda_api.h"

namespace {

constexpr unsigned long long kMiB = 1024ULL * 1024;

// Prints the failed call with CUDA's name and text of its error; exits 2.
void Check(CUresult r, const char* call) {
  if (r == 0) return;
  const char* name = "unknown error";
  const char* text = "";
  cuGetErrorName(r, &name);
  cuGetErrorString(r, &text);
  std::printf("%s: %s: %s\n", call, name, text);
  std::fflush(stdout);
  std::exit(2);  // NOLINT(concurrency-mt-unsafe): single-threaded program
}

bool Arg(int argc, char** argv, int* i, const char* name, unsigned long* value) {
  if (std::string(argv[*i]) != name || *i + 1 >= argc) return false;
  char* end = nullptr;
  *value = std::strtoul(argv[++*i], &end, 10);
  return *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long device = 0, mib = 1024, load = 50, seconds = 1;
  for (int i = 1; i < argc; ++i) {
    if (!Arg(argc, argv, &i, "--device", &device) && !Arg(argc, argv, &i, "--mib", &mib) &&
        !Arg(argc, argv, &i, "--load", &load) && !Arg(argc, argv, &i, "--seconds", &seconds)) {
      std::fprintf(stderr,
                   "usage: cuda-workload [--device N] [--mib M] [--load P] [--seconds S]\n");
      return 1;
    }
  }
  if (load > 100) {
    std::fprintf(stderr, "--load is a percentage, 0 to 100\n");
    return 1;
  }
  Check(cuInit(0), "cuInit");
  int count = 0;
  Check(cuDeviceGetCount(&count), "cuDeviceGetCount");
  CUdevice dev = 0;
  Check(cuDeviceGet(&dev, static_cast<int>(device)), "cuDeviceGet");
  char name[256] = {};
  Check(cuDeviceGetName(name, sizeof name, dev), "cuDeviceGetName");
  CUuuid uuid{};
  Check(cuDeviceGetUuid(&uuid, dev), "cuDeviceGetUuid");
  std::printf("devices: %d; device %lu: %s GPU-", count, device, name);
  for (int b = 0; b < 16; ++b) {
    std::printf("%02x%s", static_cast<unsigned char>(uuid.bytes[b]),
                b == 3 || b == 5 || b == 7 || b == 9 ? "-" : "");
  }
  std::printf("\n");
  CUcontext ctx = nullptr;
  Check(cuCtxCreate_v2(&ctx, 0, dev), "cuCtxCreate");
  CUdeviceptr ptr = 0;
  Check(cuMemAlloc_v2(&ptr, mib * kMiB), "cuMemAlloc");
  size_t free = 0, total = 0;
  Check(cuMemGetInfo_v2(&free, &total), "cuMemGetInfo");
  std::printf("allocated %lu MiB; free %llu MiB of %llu MiB\n", mib,
              static_cast<unsigned long long>(free / kMiB),
              static_cast<unsigned long long>(total / kMiB));
  CUmodule module = nullptr;
  Check(cuModuleLoadData(&module, "gpusim:busy"), "cuModuleLoadData");
  CUfunction busy = nullptr;
  Check(cuModuleGetFunction(&busy, module, "busy"), "cuModuleGetFunction");
  unsigned percent = static_cast<unsigned>(load);
  unsigned ms = static_cast<unsigned>(seconds * 1000);
  void* params[] = {&percent, &ms};
  std::printf("running at %lu%% for %lu s\n", load, seconds);
  std::fflush(stdout);
  Check(cuLaunchKernel(busy, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr), "cuLaunchKernel");
  Check(cuCtxSynchronize(), "cuCtxSynchronize");
  Check(cuMemFree_v2(ptr), "cuMemFree");
  Check(cuCtxDestroy_v2(ctx), "cuCtxDestroy");
  std::printf("done\n");
  return 0;
}
