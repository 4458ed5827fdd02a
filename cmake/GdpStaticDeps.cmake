# Links gRPC, protobuf, abseil, c-ares, re2 and yaml-cpp from Debian's static
# archives instead of their shared libraries (GDP_STATIC_DEPS, on by default).
#
# Why: the daemon runs on every GPU node, and its resident memory is mostly the
# pages of the libraries it maps. With 89 shared libraries (about 60 of them
# abseil's and gRPC's), each one costs relocated data pages and partly used
# code pages, and the dynamic loader spends a quarter of the start-up time
# resolving them. Linked statically, only the objects the daemon uses are in
# the binary, in one mapping: idle RSS drops by about 4.5 MiB and start-up
# loads about 50 fewer libraries (docs/benchmarks.md).
#
# The imported targets keep their names (absl::status, gRPC::grpc++_unsecure,
# ...), so the components' CMakeLists do not change: each target's location
# is pointed at its .a, and every one of them also links one group of all the
# archives, so the order and the cycles between them do not matter. OpenSSL,
# libstdc++ and glibc stay shared (security updates come with the distribution).
#
# The tsan preset turns it off: ThreadSanitizer ignores what uninstrumented
# libraries do only when they are modules of their own
# (ignore_noninstrumented_modules, hack/test.sh).
#
# Shared objects we build (the simulator's libnvidia-ml.so.1) cannot take
# Debian's archives, which are not position-independent; they link
# gdp_shared_deps, abseil and yaml-cpp as shared libraries, in either mode.
option(GDP_STATIC_DEPS "Link gRPC, protobuf, abseil and yaml-cpp statically" ON)

add_library(gdp_shared_deps INTERFACE)
if(NOT GDP_STATIC_DEPS)
  target_link_libraries(gdp_shared_deps INTERFACE absl::status absl::statusor absl::strings
                        absl::str_format absl::synchronization yaml-cpp Threads::Threads)
  return()
endif()

set(_gdp_static_targets gRPC::grpc++_unsecure gRPC::grpc_unsecure gRPC::gpr gRPC::upb
    gRPC::address_sorting c-ares::cares protobuf::libprotobuf yaml-cpp)
get_directory_property(_imported IMPORTED_TARGETS)
foreach(t ${_imported})
  if(t MATCHES "^absl::")
    get_target_property(_type ${t} TYPE)
    if(NOT _type STREQUAL "INTERFACE_LIBRARY")
      list(APPEND _gdp_static_targets ${t})
    endif()
  endif()
endforeach()

set(_gdp_archives)
set(_gdp_shared)
foreach(t ${_gdp_static_targets})
  if(NOT TARGET ${t})
    message(FATAL_ERROR "GDP_STATIC_DEPS: no imported target ${t}; is its -dev package installed "
                        "(hack/deps.sh)? Or configure with -DGDP_STATIC_DEPS=OFF.")
  endif()
  get_target_property(_configs ${t} IMPORTED_CONFIGURATIONS)
  if(NOT _configs)
    set(_configs "")
  endif()
  set(_archive "")
  foreach(cfg "" ${_configs})
    if(cfg STREQUAL "")
      set(_prop IMPORTED_LOCATION)
    else()
      set(_prop IMPORTED_LOCATION_${cfg})
    endif()
    get_target_property(_loc ${t} ${_prop})
    if(_loc)
      if(t MATCHES "^absl::" OR t STREQUAL "yaml-cpp")
        list(APPEND _gdp_shared "${_loc}")
      endif()
      string(REGEX REPLACE "\\.so(\\.[0-9.]+)?$" ".a" _a "${_loc}")
      if(NOT EXISTS "${_a}")
        message(FATAL_ERROR "GDP_STATIC_DEPS: ${t} has no static archive ${_a}; "
                            "configure with -DGDP_STATIC_DEPS=OFF")
      endif()
      set_target_properties(${t} PROPERTIES ${_prop} "${_a}")
      set(_archive "${_a}")
    endif()
  endforeach()
  if(_archive STREQUAL "")
    message(FATAL_ERROR "GDP_STATIC_DEPS: cannot find where ${t} is installed")
  endif()
  list(APPEND _gdp_archives "${_archive}")
endforeach()
# gRPC's Findre2 makes re2::re2 an interface target over -lre2 (pkg-config).
find_library(GDP_RE2_ARCHIVE NAMES libre2.a REQUIRED)
set_target_properties(re2::re2 PROPERTIES INTERFACE_LINK_LIBRARIES "${GDP_RE2_ARCHIVE}")
list(APPEND _gdp_static_targets re2::re2)
list(APPEND _gdp_archives "${GDP_RE2_ARCHIVE}")
list(REMOVE_DUPLICATES _gdp_archives)

list(REMOVE_DUPLICATES _gdp_shared)
target_link_libraries(gdp_shared_deps INTERFACE "-Wl,--push-state,--as-needed" ${_gdp_shared}
                      "-Wl,--pop-state" Threads::Threads)

add_library(gdp_static_deps INTERFACE)
target_link_libraries(gdp_static_deps INTERFACE "-Wl,--start-group" ${_gdp_archives}
                      "-Wl,--end-group" ZLIB::ZLIB Threads::Threads rt dl m atomic)
foreach(t ${_gdp_static_targets})
  set_property(TARGET ${t} APPEND PROPERTY INTERFACE_LINK_LIBRARIES gdp_static_deps)
endforeach()
