# The libraries libimgnorm links against, found the same way by the build (CMakeLists.txt) and by
# the installed package (imgnormConfig.cmake). They are PRIVATE to imgnorm::imgnorm, but a static
# libimgnorm.a still needs them at the consumer's link: CMake records them in the exported target
# as $<LINK_ONLY:name>, so a consumer must define the very same target names. Defines
#
#   PkgConfig::IMGNORM_JPEG, _SPNG, _WEBP,          libjpeg-turbo, libspng, libwebp, OpenBLAS
#   _OPENBLAS, _LAPACKE                             and LAPACKE (pkg-config;
#                                                   prefixed so that a consumer's own
#                                                   PkgConfig::JPEG can never stand in for ours)
#   TBB::tbb, fmt::fmt                              their own CMake packages
#   imgnorm::opencv_core, imgnorm::opencv_imgproc   found directly: Debian ships OpenCVConfig.cmake
#                                                   only in libopencv-dev, which pulls every module
#
# and sets IMGNORM_MISSING_DEPENDENCIES to the names of those not found (empty when all were).
# Cache entries OPENCV_INCLUDE_DIR, OPENCV_CORE_LIB and OPENCV_IMGPROC_LIB can point at another
# OpenCV. Nothing here is REQUIRED: the caller decides how to fail.

set(IMGNORM_MISSING_DEPENDENCIES "")

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  foreach(_imgnorm_dep IN ITEMS "IMGNORM_JPEG;libjpeg" "IMGNORM_SPNG;spng" "IMGNORM_WEBP;libwebp"
                                  "IMGNORM_OPENBLAS;openblas" "IMGNORM_LAPACKE;lapacke")
    list(GET _imgnorm_dep 0 _imgnorm_prefix)
    list(GET _imgnorm_dep 1 _imgnorm_module)
    pkg_check_modules(${_imgnorm_prefix} QUIET IMPORTED_TARGET ${_imgnorm_module})
    if(NOT TARGET PkgConfig::${_imgnorm_prefix})
      list(APPEND IMGNORM_MISSING_DEPENDENCIES ${_imgnorm_module})
    endif()
  endforeach()
else()
  list(APPEND IMGNORM_MISSING_DEPENDENCIES pkg-config)
endif()

foreach(_imgnorm_pkg IN ITEMS TBB fmt)
  find_package(${_imgnorm_pkg} QUIET)
  if(NOT ${_imgnorm_pkg}_FOUND)
    list(APPEND IMGNORM_MISSING_DEPENDENCIES ${_imgnorm_pkg})
  endif()
endforeach()

find_path(OPENCV_INCLUDE_DIR opencv2/imgproc.hpp PATH_SUFFIXES opencv4)
find_library(OPENCV_CORE_LIB opencv_core)
find_library(OPENCV_IMGPROC_LIB opencv_imgproc)
if(OPENCV_INCLUDE_DIR AND OPENCV_CORE_LIB AND OPENCV_IMGPROC_LIB)
  if(NOT TARGET imgnorm::opencv_core)
    add_library(imgnorm::opencv_core UNKNOWN IMPORTED)
    set_target_properties(imgnorm::opencv_core PROPERTIES
      IMPORTED_LOCATION "${OPENCV_CORE_LIB}" INTERFACE_INCLUDE_DIRECTORIES "${OPENCV_INCLUDE_DIR}")
    add_library(imgnorm::opencv_imgproc UNKNOWN IMPORTED)
    set_target_properties(imgnorm::opencv_imgproc PROPERTIES
      IMPORTED_LOCATION "${OPENCV_IMGPROC_LIB}" INTERFACE_LINK_LIBRARIES imgnorm::opencv_core)
  endif()
else()
  list(APPEND IMGNORM_MISSING_DEPENDENCIES "OpenCV core+imgproc")
endif()
