# FindNCCL: locates NVIDIA's NCCL (nccl.h and libnccl) for redist's NCCL backend.
# Installed next to redistConfig.cmake so that find_package(redist COMPONENTS nccl) can use it too.
#
# Hints, in order: NCCL_ROOT (CMake or environment variable), CUDAToolkit_ROOT, the CUDA toolkit found by
# FindCUDAToolkit, CUDA_PATH / CUDA_HOME, /usr/local/cuda; then the system paths (Debian's libnccl-dev).
#
# Result variables: NCCL_FOUND, NCCL_VERSION (from nccl.h: NCCL_MAJOR.NCCL_MINOR.NCCL_PATCH),
#                   NCCL_INCLUDE_DIRS, NCCL_LIBRARIES.
# Cache variables:  NCCL_INCLUDE_DIR, NCCL_LIBRARY.
# Imported target:  NCCL::NCCL.

include(FindPackageHandleStandardArgs)

set(_nccl_hints "")
foreach(_nccl_dir IN ITEMS "${NCCL_ROOT}" "$ENV{NCCL_ROOT}" "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}"
                           "${CUDAToolkit_LIBRARY_ROOT}" "$ENV{CUDA_PATH}" "$ENV{CUDA_HOME}")
  if(_nccl_dir)
    list(APPEND _nccl_hints "${_nccl_dir}")
  endif()
endforeach()
if(CUDAToolkit_BIN_DIR)
  get_filename_component(_nccl_toolkit "${CUDAToolkit_BIN_DIR}" DIRECTORY)
  list(APPEND _nccl_hints "${_nccl_toolkit}")
endif()

find_path(NCCL_INCLUDE_DIR NAMES nccl.h
          HINTS ${_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
          PATH_SUFFIXES include
          PATHS /usr/local/cuda)

find_library(NCCL_LIBRARY NAMES nccl
             HINTS ${_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
             PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu lib/aarch64-linux-gnu
             PATHS /usr/local/cuda)

unset(NCCL_VERSION)
if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_version_lines
       REGEX "^#define[ \t]+NCCL_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
  foreach(_nccl_part IN ITEMS MAJOR MINOR PATCH)
    set(_nccl_${_nccl_part} "")
    foreach(_nccl_line IN LISTS _nccl_version_lines)
      if(_nccl_line MATCHES "^#define[ \t]+NCCL_${_nccl_part}[ \t]+([0-9]+)")
        set(_nccl_${_nccl_part} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  if(NOT _nccl_MAJOR STREQUAL "" AND NOT _nccl_MINOR STREQUAL "" AND NOT _nccl_PATCH STREQUAL "")
    set(NCCL_VERSION "${_nccl_MAJOR}.${_nccl_MINOR}.${_nccl_PATCH}")
  endif()
endif()

find_package_handle_standard_args(NCCL
  REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR
  VERSION_VAR NCCL_VERSION
  HANDLE_VERSION_RANGE)

if(NCCL_FOUND)
  set(NCCL_INCLUDE_DIRS "${NCCL_INCLUDE_DIR}")
  set(NCCL_LIBRARIES "${NCCL_LIBRARY}")
  if(NOT TARGET NCCL::NCCL)
    add_library(NCCL::NCCL UNKNOWN IMPORTED)
    set_target_properties(NCCL::NCCL PROPERTIES
      IMPORTED_LOCATION "${NCCL_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(NCCL_INCLUDE_DIR NCCL_LIBRARY)
unset(_nccl_hints)
unset(_nccl_dir)
unset(_nccl_toolkit)
unset(_nccl_version_lines)
unset(_nccl_line)
unset(_nccl_part)
unset(_nccl_MAJOR)
unset(_nccl_MINOR)
unset(_nccl_PATCH)
