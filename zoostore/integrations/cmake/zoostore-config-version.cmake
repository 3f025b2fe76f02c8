# zoostore-config-version.cmake: find_package(zoostore <version> CONFIG) checks the installed
# zoostore against <version>. Compatible: the same major version and at least <version>; while
# the major version is 0, the same minor version too (0.2 may break 0.1's CMake functions).
# PACKAGE_VERSION is zoostore.__version__ (tests/test_cmake.py keeps the two equal).
set(PACKAGE_VERSION "0.1.0")

if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _zoostore_mm "${PACKAGE_VERSION}")
  set(_zoostore_major "${CMAKE_MATCH_1}")
  set(_zoostore_minor "${CMAKE_MATCH_2}")
  if(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL _zoostore_major)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  elseif(_zoostore_major STREQUAL "0" AND NOT PACKAGE_FIND_VERSION_MINOR STREQUAL _zoostore_minor)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
    if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
      set(PACKAGE_VERSION_EXACT TRUE)
    endif()
  endif()
endif()
