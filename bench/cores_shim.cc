// cores-shim: an LD_PRELOAD library for the benchmarks only. sysconf() answers
// $GDP_FAKE_CORES for _SC_NPROCESSORS_CONF and _SC_NPROCESSORS_ONLN, so a run
// on this machine shows the threads a process would start on a node with that
// many cores: gRPC sizes its thread pools from sysconf(_SC_NPROCESSORS_CONF)
// (src/core/lib/gpr/cpu_linux.cc), which a cpuset or a container's CPU limit
// does not change. Every other name goes to the C library's sysconf.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

extern "C" long sysconf(int name) noexcept {
  using Sysconf = long (*)(int);
  static const auto real = reinterpret_cast<Sysconf>(dlsym(RTLD_NEXT, "sysconf"));
  if (name == _SC_NPROCESSORS_CONF || name == _SC_NPROCESSORS_ONLN) {
    const char* cores = std::getenv("GDP_FAKE_CORES");
    if (cores != nullptr && *cores != '\0') return std::strtol(cores, nullptr, 10);
  }
  return real(name);
}
