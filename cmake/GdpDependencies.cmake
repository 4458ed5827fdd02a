# Third-party libraries, all from Debian 12's packages (hack/deps.sh installs them).
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)       # needs protobuf-compiler-grpc on Debian
find_package(absl CONFIG REQUIRED)       # Status / StatusOr, thread annotations
find_package(yaml-cpp REQUIRED)          # config file
find_package(nlohmann_json REQUIRED)     # JSON (CDI specs, API server, endpoints)
find_package(spdlog REQUIRED)            # structured logs
find_package(CLI11 REQUIRED)             # command line
find_package(GTest REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # HTTP in tests and tools
include(GdpStaticDeps)

# The pinned NVML header (hack/deps.sh fetches it).
set(NVML_INCLUDE_DIR "$ENV{HOME}/.cache/gpu-device-plugin/nvml-dev-13.0.87/include"
    CACHE PATH "Directory holding the pinned nvml.h")
if(NOT EXISTS ${NVML_INCLUDE_DIR}/nvml.h)
  message(FATAL_ERROR "nvml.h not found in ${NVML_INCLUDE_DIR}; run hack/deps.sh")
endif()
add_library(nvml_headers INTERFACE)
target_include_directories(nvml_headers SYSTEM INTERFACE ${NVML_INCLUDE_DIR})
include(GoogleTest)
