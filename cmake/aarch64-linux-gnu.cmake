# Cross-compiling for linux/arm64 with Debian's cross toolchain (crossbuild-essential-arm64)
# and the arm64 libraries unpacked by hack/sysroot.sh into GDP_SYSROOT. Used by hack/image.sh:
#   cmake -S . -B build/arm64 -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake \
#     -DGDP_SYSROOT=$(hack/sysroot.sh | tail -n 1)
# Programs that run during the build (protoc, grpc_cpp_plugin) are the host's; tests run
# under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR), which finds the toolchain's loader
# and glibc under /usr/aarch64-linux-gnu and the libraries in the sysroot.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT GDP_SYSROOT)
  set(GDP_SYSROOT "$ENV{GDP_SYSROOT}")
endif()
if(NOT GDP_SYSROOT OR NOT EXISTS "${GDP_SYSROOT}/usr/lib/aarch64-linux-gnu")
  message(FATAL_ERROR "GDP_SYSROOT='${GDP_SYSROOT}' is not an arm64 sysroot: pass "
                      "-DGDP_SYSROOT=$(hack/sysroot.sh | tail -n 1)")
endif()
set(GDP_SYSROOT "${GDP_SYSROOT}" CACHE PATH "the arm64 libraries (hack/sysroot.sh)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES GDP_SYSROOT)

# Libraries, headers and CMake packages from the sysroot only; programs from the host.
set(CMAKE_FIND_ROOT_PATH "${GDP_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${GDP_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR}
    "${GDP_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${GDP_SYSROOT}/usr/share/pkgconfig")

# The sysroot's headers after the toolchain's, and its libraries for the linker, including
# the ones other libraries need (rpath-link).
set(_gdp_libdirs "${GDP_SYSROOT}/usr/lib/aarch64-linux-gnu" "${GDP_SYSROOT}/usr/lib")
foreach(_d ${_gdp_libdirs})
  string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT " -L${_d} -Wl,-rpath-link,${_d}")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT " -L${_d} -Wl,-rpath-link,${_d}")
endforeach()
include_directories(SYSTEM "${GDP_SYSROOT}/usr/include/aarch64-linux-gnu" "${GDP_SYSROOT}/usr/include")

set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-aarch64 -L /usr/aarch64-linux-gnu -E
    "LD_LIBRARY_PATH=${GDP_SYSROOT}/usr/lib/aarch64-linux-gnu:${GDP_SYSROOT}/usr/lib")
