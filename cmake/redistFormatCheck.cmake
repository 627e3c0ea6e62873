# Checks (or with -DFIX=ON rewrites) the formatting of every C++/CUDA file under include/, tests/, examples/,
# tracked or not, against the root .clang-format. Files are listed when the test runs, so new ones count.
#   cmake -DCLANG_FORMAT=clang-format-14 -DSOURCE_DIR=<repo> [-DFIX=ON] -P redistFormatCheck.cmake
cmake_minimum_required(VERSION 3.25)

if(NOT CLANG_FORMAT OR NOT SOURCE_DIR)
  message(FATAL_ERROR "redistFormatCheck: give -DCLANG_FORMAT=<program> -DSOURCE_DIR=<repository root>")
endif()

set(patterns "")
foreach(dir IN ITEMS include tests examples)
  foreach(ext IN ITEMS hpp cpp cuh cu h)
    list(APPEND patterns "${SOURCE_DIR}/${dir}/*.${ext}")
  endforeach()
endforeach()
file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE "${SOURCE_DIR}" ${patterns})
# Build trees someone made inside the source folders (relative paths, so a checkout under /x/build/ still works).
list(FILTER files EXCLUDE REGEX "(^|/)(build[^/]*|CMakeFiles|_deps|\\.cache)/")
list(SORT files)
list(LENGTH files count)
if(count EQUAL 0)
  message(FATAL_ERROR "redistFormatCheck: no files under ${SOURCE_DIR}/{include,tests,examples}")
endif()

if(FIX)
  execute_process(COMMAND "${CLANG_FORMAT}" -i --style=file ${files} WORKING_DIRECTORY "${SOURCE_DIR}"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${CLANG_FORMAT} -i failed (${rc})")
  endif()
  message(STATUS "formatted ${count} files with ${CLANG_FORMAT}")
  return()
endif()

execute_process(COMMAND "${CLANG_FORMAT}" --dry-run -Werror --ferror-limit=3 --style=file ${files}
                WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  string(REGEX MATCHALL "[^\n:]+:[0-9]+:[0-9]+: error:" hits "${out}")
  set(bad "")
  foreach(hit IN LISTS hits)
    string(REGEX REPLACE ":[0-9]+:[0-9]+: error:$" "" hit "${hit}")
    list(APPEND bad "${hit}")
  endforeach()
  list(REMOVE_DUPLICATES bad)
  list(JOIN bad "\n  " bad)
  message("${out}")
  message(FATAL_ERROR "clang-format: these files are not formatted (fix: ${CLANG_FORMAT} -i <file>, or "
                      "cmake --build <build dir> --target redist_format):\n  ${bad}")
endif()
message(STATUS "${count} files formatted as .clang-format says (${CLANG_FORMAT})")
