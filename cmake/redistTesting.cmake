# redistTesting: the helpers that build and register redist's own tests and examples (never installed).
# Included by the root CMakeLists.txt when REDIST_BUILD_TESTS or REDIST_BUILD_EXAMPLES is ON.
#
#   redist_add_unit_test(<name> <source>)              executable unit_<name> + CTest test unit_<name>
#   redist_add_mpi_test(<name> <source> [NP n...])     executable mpi_<name>, tests mpi_<name>.np<n> (n: 1 2 3 4 8)
#   redist_add_mpi_run(<test> <target> <np> [EXPECT_FAILURE <regex>] [args...])
#                                                      one extra mpirun registration of an existing target
#   redist_add_example(<name> [MPI] [NP n...])         examples/<name>.cpp -> example_<name>[.np<n>]
#   redist_add_cuda_example(<name>)                    examples/<name>.cu with nvcc -> example_<name> (label gpu)
#   redist_add_compile_fail_test(<source>)             compile_fail_<name>: compiling must fail, matching the
#                                                      regex on the file's first line "// expect: <regex>"
#   redist_add_header_check()                          redist_header_check: one TU per public header
#   redist_add_format_check()                          format_check: clang-format --dry-run -Werror
#   redist_add_consumer_tests()                        consumer_install + consumer_{find_package,subdirectory,
#                                                      fetchcontent}: a project outside the tree uses redist
#
# MPI runs: ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} <np> ${REDIST_MPIEXEC_PREFLAGS} <exe>
# ${MPIEXEC_POSTFLAGS} [args], with REDIST_MPI_TEST_ENVIRONMENT, TIMEOUT 60. With Open MPI the preflags add
# --oversubscribe (8 ranks on 2 cores) and, when configured as root, --allow-run-as-root; the environment
# says the same, so a bare `ctest` works as root without anything exported.

include_guard(GLOBAL)

set(_redist_cmake_dir "${CMAKE_CURRENT_LIST_DIR}")

# Every target of ours is ISO C++20 (-std=c++20, not gnu++20), including those that do not link redist (the
# doctest mains): code that needs an extension or a newer standard fails here.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)

# Warnings are ours, never the user's: PRIVATE to our tests and examples through this (unexported) target.
add_library(redist_warnings INTERFACE)
target_compile_options(redist_warnings INTERFACE
  "$<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang,AppleClang>:-Wall;-Wextra;-Wpedantic;-Wconversion;-Wshadow;-Werror>"
  # nvcc: its own warnings and the host compiler's, as errors.
  "$<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings;-Xcompiler=-Wall,-Wextra,-Wshadow,-Werror>")

set(REDIST_MPI_TEST_NPROCS 1 2 3 4 8 CACHE STRING "Rank counts at which every MPI test and example is run")
set(REDIST_TEST_TIMEOUT 120 CACHE STRING "CTest TIMEOUT (s) of one-process tests")
set(REDIST_MPI_TEST_TIMEOUT 60 CACHE STRING "CTest TIMEOUT (s) of one mpirun")
set(REDIST_MPI_RANKS_PER_SLOT 4 CACHE STRING "MPI ranks counted as one CTest processor slot (1: one core each)")
mark_as_advanced(REDIST_TEST_TIMEOUT REDIST_MPI_TEST_TIMEOUT REDIST_MPI_RANKS_PER_SLOT)

# ---- how MPI programs are launched ----------------------------------------------------------------------------
set(REDIST_MPIEXEC_PREFLAGS ${MPIEXEC_PREFLAGS})
set(REDIST_MPI_TEST_ENVIRONMENT "")
if(REDIST_ENABLE_MPI)
  execute_process(COMMAND "${MPIEXEC_EXECUTABLE}" --version OUTPUT_VARIABLE _redist_mpiexec_version
                  ERROR_VARIABLE _redist_mpiexec_version RESULT_VARIABLE _redist_rc TIMEOUT 20)
  if(_redist_mpiexec_version MATCHES "Open MPI|OpenRTE")
    # More ranks than cores is the point of the 8-rank runs; Open MPI refuses both that and root by default.
    list(APPEND REDIST_MPIEXEC_PREFLAGS --oversubscribe)
    execute_process(COMMAND id -u OUTPUT_VARIABLE _redist_uid OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _redist_rc ERROR_QUIET)
    if(_redist_rc EQUAL 0 AND _redist_uid STREQUAL "0")
      list(APPEND REDIST_MPIEXEC_PREFLAGS --allow-run-as-root)
    endif()
    # The same in the environment, so a test whose command is not ours (or a ctest run by root from a tree
    # configured by someone else) still launches.
    set(REDIST_MPI_TEST_ENVIRONMENT OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        OMPI_MCA_rmaps_base_oversubscribe=1)
  endif()
  list(REMOVE_DUPLICATES REDIST_MPIEXEC_PREFLAGS)
endif()

# ---- unit tests -------------------------------------------------------------------------------------------------
function(redist_add_unit_test name source)
  add_executable(unit_${name} "${source}")
  target_link_libraries(unit_${name} PRIVATE redist_doctest_main redist::redist redist_warnings)
  add_test(NAME unit_${name} COMMAND unit_${name})
  set_tests_properties(unit_${name} PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} LABELS unit)
endfunction()

# ---- MPI tests --------------------------------------------------------------------------------------------------
# One registration of <target> under mpirun at <np> ranks. The caller may change the properties afterwards
# (set_tests_properties(<test> PROPERTIES WILL_FAIL ON ...)). EXPECT_FAILURE <regex>: the test passes only when
# the run exits non-zero AND its output matches <regex> (no ';' in the regex), e.g. for a test that must fail.
function(redist_add_mpi_run test_name target np)
  cmake_parse_arguments(PARSE_ARGV 3 arg "" "EXPECT_FAILURE" "")
  set(command "${MPIEXEC_EXECUTABLE}" ${MPIEXEC_NUMPROC_FLAG} ${np} ${REDIST_MPIEXEC_PREFLAGS}
      "$<TARGET_FILE:${target}>" ${MPIEXEC_POSTFLAGS} ${arg_UNPARSED_ARGUMENTS})
  if(DEFINED arg_EXPECT_FAILURE)
    set(command "${CMAKE_COMMAND}" "-DEXPECT=${arg_EXPECT_FAILURE}" -P "${_redist_cmake_dir}/redistExpectFailure.cmake"
        -- ${command})
  endif()
  add_test(NAME ${test_name} COMMAND ${command})
  # PROCESSORS: how many `ctest -jN` slots the run occupies. Our runs mostly wait (launch, collectives) and
  # oversubscribed Open MPI yields, so a slot holds REDIST_MPI_RANKS_PER_SLOT ranks: under -j2 two runs of up
  # to 4 ranks share the machine and an 8-rank run has it alone. (One slot per rank made the suite ~1.5x
  # slower on 2 cores; no PROCESSORS at all stacks 8-rank runs.)
  math(EXPR slots "(${np} + ${REDIST_MPI_RANKS_PER_SLOT} - 1) / ${REDIST_MPI_RANKS_PER_SLOT}")
  set_tests_properties(${test_name} PROPERTIES TIMEOUT ${REDIST_MPI_TEST_TIMEOUT} PROCESSORS ${slots} LABELS mpi)
  if(REDIST_MPI_TEST_ENVIRONMENT)
    set_property(TEST ${test_name} APPEND PROPERTY ENVIRONMENT ${REDIST_MPI_TEST_ENVIRONMENT})
  endif()
  # A doctest run passes on its last line, which rank 0 prints once every rank has run every test; what follows
  # is MPI_Finalize. Open MPI 4.1 under load at times reports a rank that finalized as "exiting improperly"
  # (pid 0) and exits non-zero, so the exit status is not the verdict; a sanitizer's report or a signal is.
  get_target_property(links ${target} LINK_LIBRARIES)
  if(NOT DEFINED arg_EXPECT_FAILURE AND "redist_doctest_mpi_main" IN_LIST links)
    set_tests_properties(${test_name} PROPERTIES PASS_REGULAR_EXPRESSION "mpi doctest: ${np} ranks, 0 failed"
                         FAIL_REGULAR_EXPRESSION "Sanitizer|runtime error:|exited on signal|ranks, [1-9]")
  endif()
endfunction()

function(redist_add_mpi_test name source)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "NP")
  if(NOT arg_NP)
    set(arg_NP ${REDIST_MPI_TEST_NPROCS})
  endif()
  add_executable(mpi_${name} "${source}")
  target_link_libraries(mpi_${name} PRIVATE redist_doctest_mpi_main redist::mpi redist_warnings)
  foreach(np IN LISTS arg_NP)
    redist_add_mpi_run(mpi_${name}.np${np} mpi_${name} ${np})
  endforeach()
endfunction()

# ---- examples ---------------------------------------------------------------------------------------------------
# examples/<name>.cpp -> executable example_<name>. An MPI example is run as example_<name>.np<n> for each n of
# NP (default REDIST_MPI_TEST_NPROCS) and skipped when MPI is off; any other as example_<name>.
function(redist_add_example name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "MPI" "" "NP")
  set(source "${PROJECT_SOURCE_DIR}/examples/${name}.cpp")
  if(NOT EXISTS "${source}")
    message(FATAL_ERROR "redist_add_example(${name}): ${source} does not exist")
  endif()
  if(arg_MPI AND NOT REDIST_ENABLE_MPI)
    message(STATUS "redist: example ${name} needs MPI, which is off: skipped")
    return()
  endif()
  add_executable(example_${name} "${source}")
  target_link_libraries(example_${name} PRIVATE redist::redist redist_warnings)
  if(arg_MPI)
    target_link_libraries(example_${name} PRIVATE redist::mpi)
    if(NOT arg_NP)
      set(arg_NP ${REDIST_MPI_TEST_NPROCS})
    endif()
    foreach(np IN LISTS arg_NP)
      redist_add_mpi_run(example_${name}.np${np} example_${name} ${np})
      set_property(TEST example_${name}.np${np} APPEND PROPERTY LABELS example)
    endforeach()
  else()
    add_test(NAME example_${name} COMMAND example_${name})
    set_tests_properties(example_${name} PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} LABELS example)
  endif()
endfunction()

# A CUDA program examples/<name>.cu (REDIST_ENABLE_CUDA), one process, test example_<name> labelled gpu: it
# exits 77 without a GPU, which CTest reports as skipped.
function(redist_add_cuda_example name)
  if(NOT REDIST_ENABLE_CUDA)
    return()
  endif()
  add_executable(example_${name} "${PROJECT_SOURCE_DIR}/examples/${name}.cu")
  target_link_libraries(example_${name} PRIVATE redist::nccl redist_warnings)
  add_test(NAME example_${name} COMMAND example_${name})
  set_tests_properties(example_${name} PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} LABELS "example;gpu"
                       SKIP_RETURN_CODE 77)
endfunction()

# ---- compile-failure tests ----------------------------------------------------------------------------------------
# The file's first line is "// expect: <regex>". Its object library is EXCLUDE_FROM_ALL; the test builds it
# with `cmake --build` and passes only if the build fails and the compiler's output matches the regex (read at
# test time, so editing it needs no reconfigure). The tests share one RESOURCE_LOCK: two build tool runs in
# one build tree at once could corrupt its logs.
function(redist_add_compile_fail_test source)
  get_filename_component(name "${source}" NAME_WE)
  file(READ "${source}" head LIMIT 4096)
  string(REGEX MATCH "^[^\r\n]*" first_line "${head}")
  if(NOT first_line MATCHES "^// expect: .+")
    message(FATAL_ERROR "redist: ${source}: the first line must be \"// expect: <regex>\" (got \"${first_line}\")")
  endif()
  set(target compile_fail_${name})
  add_library(${target} OBJECT EXCLUDE_FROM_ALL "${source}")
  target_link_libraries(${target} PRIVATE redist::redist redist_warnings)
  if(REDIST_ENABLE_MPI)
    target_link_libraries(${target} PRIVATE redist::mpi)
  endif()
  set(build_command "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target ${target})
  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
  if(multi_config)
    list(APPEND build_command --config $<CONFIG>)
  endif()
  add_test(NAME ${target}
           COMMAND "${CMAKE_COMMAND}" "-DEXPECT_FROM=${source}" -P "${_redist_cmake_dir}/redistExpectFailure.cmake"
                   -- ${build_command})
  set_tests_properties(${target} PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} RESOURCE_LOCK redist_build_tree
                                            LABELS compile_fail)
endfunction()

# ---- header self-containment ------------------------------------------------------------------------------------
# One generated TU per public header, holding only `#include "redist/<header>"` (twice: #pragma once must hold).
# Headers that need MPI (comm/mpi*, <mpi.h>, or including such a header) are compiled with redist::mpi, those
# that need CUDA/NCCL (comm/nccl*, *.cuh, CUDA/NCCL includes) with redist::nccl, and the rest with nothing but
# redist::redist: so a core header that needs MPI's include path fails here. Each group is its own object
# library (one target has one set of include paths): redist_header_check_core, _mpi, _nccl, _mpi_nccl,
# _nccl_cuda, _torch (redist/adapters/torch.hpp, with libtorch); the target redist_header_check builds them
# all and is part of the default build.
function(redist_add_header_check)
  set(include_dir "${PROJECT_SOURCE_DIR}/include")
  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/header_check")
  set(headers "")
  foreach(path IN LISTS REDIST_PUBLIC_HEADERS)
    file(RELATIVE_PATH header "${include_dir}" "${path}")
    list(APPEND headers "${header}")
    string(MAKE_C_IDENTIFIER "${header}" id)
    set(mpi_${id} FALSE)
    set(cuda_${id} FALSE)
    set(deps_${id} "")
    if(header MATCHES "^redist/comm/mpi")
      set(mpi_${id} TRUE)
    endif()
    if(header MATCHES "^redist/comm/nccl" OR header MATCHES "\\.cuh$")
      set(cuda_${id} TRUE)
    endif()
    file(STRINGS "${path}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line IN LISTS includes)
      if(line MATCHES "[<\"]mpi\\.h[>\"]")
        set(mpi_${id} TRUE)
      elseif(line MATCHES "[<\"](nccl\\.h|cuda[a-zA-Z0-9_]*\\.h|cuda/|thrust/|cub/)")
        set(cuda_${id} TRUE)
      elseif(line MATCHES "[<\"](redist/[^>\"]+)[>\"]")
        list(APPEND deps_${id} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()

  # A header that includes one needing MPI or CUDA needs it too: propagate until nothing changes.
  set(changed TRUE)
  while(changed)
    set(changed FALSE)
    foreach(header IN LISTS headers)
      string(MAKE_C_IDENTIFIER "${header}" id)
      foreach(dep IN LISTS deps_${id})
        string(MAKE_C_IDENTIFIER "${dep}" dep_id)
        foreach(need IN ITEMS mpi cuda)
          if(${need}_${dep_id} AND NOT ${need}_${id})
            set(${need}_${id} TRUE)
            set(changed TRUE)
          endif()
        endforeach()
      endforeach()
    endforeach()
  endwhile()

  set(groups "")
  set(skipped "")
  foreach(header IN LISTS headers)
    string(MAKE_C_IDENTIFIER "${header}" id)
    # The data model, the planner and the umbrella never need a backend (DESIGN.md): compile them without
    # one, so an <mpi.h> or CUDA include that creeps in, even through another header, breaks the build.
    # core/cuda/ is the CUDA half of the memory spaces, which needs the CUDA runtime.
    if((header MATCHES "^redist/(core|plan)/" AND NOT header MATCHES "^redist/core/cuda/")
       OR header STREQUAL "redist/redist.hpp")
      set(mpi_${id} FALSE)
      set(cuda_${id} FALSE)
    endif()
    if((mpi_${id} AND NOT REDIST_ENABLE_MPI) OR (cuda_${id} AND NOT REDIST_ENABLE_NCCL)
       OR (header MATCHES "\\.cuh$" AND NOT CMAKE_CUDA_COMPILER_LOADED))
      list(APPEND skipped "${header}")
      continue()
    endif()
    set(group "")
    if(header MATCHES "^redist/adapters/torch")  # needs libtorch's headers, and nothing else
      if(NOT REDIST_ENABLE_TORCH)
        list(APPEND skipped "${header}")
        continue()
      endif()
      set(group "_torch")
    endif()
    if(mpi_${id})
      string(APPEND group "_mpi")
    endif()
    if(cuda_${id})
      string(APPEND group "_nccl")
    endif()
    set(extension cpp)
    if(header MATCHES "\\.cuh$")
      set(group "${group}_cuda")
      set(extension cu)
    endif()
    set(tu "${out_dir}/${id}.${extension}")
    # file(CONFIGURE) rewrites only on change: reconfiguring does not recompile every header.
    file(CONFIGURE OUTPUT "${tu}" CONTENT "#include \"${header}\"\n#include \"${header}\"\n" @ONLY)
    list(APPEND sources${group} "${tu}")
    if(NOT group IN_LIST groups)
      list(APPEND groups "${group}")
    endif()
  endforeach()
  if(skipped)
    list(LENGTH skipped count)
    message(STATUS "redist: header check skips ${count} header(s) whose backend is off: ${skipped}")
  endif()

  add_custom_target(redist_header_check ALL)
  foreach(group IN LISTS groups)
    set(target redist_header_check${group})
    if(group STREQUAL "")
      set(target redist_header_check_core)
    endif()
    add_library(${target} OBJECT ${sources${group}})
    target_link_libraries(${target} PRIVATE redist::redist)
    if(group MATCHES "_mpi")
      target_link_libraries(${target} PRIVATE redist::mpi)
    endif()
    if(group MATCHES "_nccl")
      target_link_libraries(${target} PRIVATE redist::nccl)
    endif()
    if(group MATCHES "_torch")
      target_link_libraries(${target} PRIVATE ${TORCH_LIBRARIES})
    endif()
    target_link_libraries(${target} PRIVATE redist_warnings)
    add_dependencies(redist_header_check ${target})
  endforeach()
endfunction()

# ---- clang-format -----------------------------------------------------------------------------------------------
function(redist_add_format_check)
  find_program(REDIST_CLANG_FORMAT NAMES clang-format-14 clang-format DOC "clang-format for the format_check test")
  if(NOT REDIST_CLANG_FORMAT)
    message(STATUS "redist: clang-format not found, no format_check test")
    return()
  endif()
  set(script "${_redist_cmake_dir}/redistFormatCheck.cmake")
  add_test(NAME format_check COMMAND "${CMAKE_COMMAND}" "-DCLANG_FORMAT=${REDIST_CLANG_FORMAT}"
                                     "-DSOURCE_DIR=${PROJECT_SOURCE_DIR}" -P "${script}")
  set_tests_properties(format_check PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} LABELS format)
  # `cmake --build <dir> --target redist_format` rewrites the files in place.
  add_custom_target(redist_format COMMAND "${CMAKE_COMMAND}" "-DCLANG_FORMAT=${REDIST_CLANG_FORMAT}"
                                          "-DSOURCE_DIR=${PROJECT_SOURCE_DIR}" -DFIX=ON -P "${script}"
                    VERBATIM USES_TERMINAL)
endfunction()

# ---- consumer project -------------------------------------------------------------------------------------------
# tests/consumer is configured, built and run as a separate project, with this build's generator, compiler,
# flags and build type. find_package mode uses the prefix that consumer_install fills (a fixture).
function(redist_add_consumer_tests)
  set(script "${_redist_cmake_dir}/redistConsumerTest.cmake")
  set(work "${CMAKE_CURRENT_BINARY_DIR}/consumer")
  set(prefix "${work}/prefix")
  add_test(NAME consumer_install COMMAND "${CMAKE_COMMAND}" -DMODE=install "-DBUILD_DIR=${CMAKE_BINARY_DIR}"
                                         "-DPREFIX=${prefix}" -DCONFIG=$<CONFIG> -P "${script}")
  set_tests_properties(consumer_install PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} FIXTURES_SETUP redist_installed
                                                   LABELS consumer)
  string(REPLACE ";" "," components "${REDIST_EXPORTED_COMPONENTS}")
  foreach(how IN ITEMS find_package subdirectory fetchcontent)
    add_test(NAME consumer_${how}
             COMMAND "${CMAKE_COMMAND}" -DMODE=consume "-DHOW=${how}"
                     "-DCONSUMER_DIR=${PROJECT_SOURCE_DIR}/tests/consumer" "-DREDIST_DIR=${PROJECT_SOURCE_DIR}"
                     "-DWORK_DIR=${work}/${how}" "-DPREFIX=${prefix}" "-DCOMPONENTS=${components}"
                     "-DGENERATOR=${CMAKE_GENERATOR}" "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
                     "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}" "-DCXX_FLAGS=${CMAKE_CXX_FLAGS}"
                     -DCONFIG=$<CONFIG> -P "${script}")
    set_tests_properties(consumer_${how} PROPERTIES TIMEOUT ${REDIST_TEST_TIMEOUT} LABELS consumer)
  endforeach()
  set_tests_properties(consumer_find_package PROPERTIES FIXTURES_REQUIRED redist_installed)
endfunction()
