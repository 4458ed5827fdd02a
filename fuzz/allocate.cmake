# Fuzz target for Allocate / GetPreferredAllocation request handling
# (src/resources). include()d from fuzz/CMakeLists.txt.
#
# Built only in the fuzz preset (GDP_FUZZ=ON, clang-14). The sanitizer build
# that `make test` runs registers a bounded run when GDP_FUZZ_BIN_DIR points
# at the fuzz build's fuzz/ directory: 20 s over the seed corpus and every
# input that ever crashed it (fuzz/regressions/allocate/). New inputs go to a
# scratch corpus in the build tree, never into the source tree.
if(GDP_FUZZ)
  add_executable(fuzz_allocate ${CMAKE_CURRENT_LIST_DIR}/fuzz_allocate.cc)
  target_link_libraries(fuzz_allocate PRIVATE gdp::resources gdp::kubelet_api absl::strings)
  target_link_options(fuzz_allocate PRIVATE -fsanitize=fuzzer)
endif()

if(GDP_FUZZ_BIN_DIR)
  set(_fuzz_allocate_work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_allocate_corpus)
  add_test(NAME fuzz_allocate
           COMMAND sh -c "mkdir -p '${_fuzz_allocate_work}' && exec '${GDP_FUZZ_BIN_DIR}/fuzz_allocate' -max_total_time=20 -max_len=1024 -timeout=10 -print_final_stats=1 '${_fuzz_allocate_work}' '${CMAKE_CURRENT_LIST_DIR}/corpus/allocate' '${CMAKE_CURRENT_LIST_DIR}/regressions/allocate'")
  set_tests_properties(fuzz_allocate PROPERTIES TIMEOUT 120 LABELS fuzz)
endif()
