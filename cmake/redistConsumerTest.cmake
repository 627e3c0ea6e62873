# Drives the consumer-project tests (tests/consumer): a project outside redist's tree that uses redist.
#   -DMODE=install: a fresh `cmake --install BUILD_DIR --prefix PREFIX`
#   -DMODE=consume: configure CONSUMER_DIR in a fresh WORK_DIR with REDIST_CONSUME=HOW (find_package |
#                   subdirectory | fetchcontent), build it, run the consumer program
# The generator, make program, compiler, flags and configuration are those of the build that runs the tests.
cmake_minimum_required(VERSION 3.25)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " shown)
    message("${out}")
    message(FATAL_ERROR "consumer: ${what} failed (${rc}): ${shown}")
  endif()
  message(STATUS "consumer: ${what}: ok")
endfunction()

set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")  # a header removed from the tree must not linger in the prefix
  run_step("install into ${PREFIX}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args})
  return()
endif()

if(NOT MODE STREQUAL "consume")
  message(FATAL_ERROR "redistConsumerTest: MODE must be install or consume, not '${MODE}'")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
set(configure "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DREDIST_CONSUME=${HOW}"
    "-DREDIST_SOURCE_DIR=${REDIST_DIR}" "-DREDIST_CONSUME_COMPONENTS=${COMPONENTS}")
if(MAKE_PROGRAM)
  list(APPEND configure "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CONFIG)
  list(APPEND configure "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
if(HOW STREQUAL "find_package")
  # Only the fresh install: never a redist from the system or the user's package registry.
  list(APPEND configure "-DCMAKE_PREFIX_PATH=${PREFIX}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
       -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
endif()
run_step("configure (${HOW})" ${configure})
run_step("build (${HOW})" "${CMAKE_COMMAND}" --build "${WORK_DIR}" ${config_args})

set(program "${WORK_DIR}/redist_consumer")
if(CONFIG AND EXISTS "${WORK_DIR}/${CONFIG}/redist_consumer")  # multi-config generators
  set(program "${WORK_DIR}/${CONFIG}/redist_consumer")
endif()
run_step("run (${HOW})" "${program}")
