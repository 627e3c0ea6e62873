# Runs a command that must fail: passes only when it exits non-zero AND its output matches a regex.
# (CTest's PASS_REGULAR_EXPRESSION alone ignores the exit status, WILL_FAIL alone ignores the output.)
#   cmake -DEXPECT=<regex> -P redistExpectFailure.cmake -- <command> [args...]
#   cmake -DEXPECT_FROM=<file> -P ...   the regex is the rest of the file's first line after "// expect: "
# With EXPECT_FROM (compile-fail tests) the build tool's own lines (progress, "FAILED: <target>" and the
# compile command after it) are dropped before matching, so the regex cannot match a file or target name there.
cmake_minimum_required(VERSION 3.25)

set(command "")
set(in_command FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(in_command)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(in_command TRUE)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "redistExpectFailure: no command after --")
endif()

if(DEFINED EXPECT_FROM)
  file(READ "${EXPECT_FROM}" head LIMIT 4096)
  if(NOT head MATCHES "^// expect: ([^\r\n]+)")
    message(FATAL_ERROR "${EXPECT_FROM}: the first line must be \"// expect: <regex>\"")
  endif()
  set(EXPECT "${CMAKE_MATCH_1}")
endif()
if(NOT DEFINED EXPECT OR EXPECT STREQUAL "")
  message(FATAL_ERROR "redistExpectFailure: give -DEXPECT=<regex> or -DEXPECT_FROM=<file>")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)

set(checked "${out}")
if(DEFINED EXPECT_FROM)
  # Ninja prints "[i/n] Building ...", then on failure "FAILED: <outputs>" and the command line; Make prints
  # "Building CXX object ..." and "make[2]: *** ..." lines.
  string(REGEX REPLACE "FAILED: [^\n]*\n[^\n]*\n" "" checked "${checked}")
  string(REGEX REPLACE "\\[[0-9]+/[0-9]+\\] [^\n]*\n" "" checked "${checked}")
  string(REGEX REPLACE "[^\n]*(Building CXX object|make\\[[0-9]+\\]:|gmake\\[[0-9]+\\]:)[^\n]*\n" "" checked
         "${checked}")
endif()

list(JOIN command " " shown)
if(rc EQUAL 0)
  message("${out}")
  message(FATAL_ERROR "expected failure, but it succeeded: ${shown}")
endif()
if(NOT checked MATCHES "${EXPECT}")
  message("${out}")
  message(FATAL_ERROR "it failed (${rc}) as expected, but its output does not match \"${EXPECT}\"")
endif()
message(STATUS "failed as expected (${rc}) with output matching \"${EXPECT}\"")
