# Finds zstd (Debian: libzstd-dev) and defines the imported target Zstd::Zstd: the "zstd" chunk
# codec of Zarr v3 stores (src/io/zarr/codec.cpp). A plain header/library search, as
# FindLibdeflate.cmake does, so that machines without pkg-config and prefixes such as /opt/gdeps
# (CMAKE_PREFIX_PATH) work alike.
find_path(Zstd_INCLUDE_DIR zstd.h)
find_library(Zstd_LIBRARY NAMES zstd libzstd)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Zstd REQUIRED_VARS Zstd_LIBRARY Zstd_INCLUDE_DIR)
if(Zstd_FOUND AND NOT TARGET Zstd::Zstd)
  add_library(Zstd::Zstd UNKNOWN IMPORTED)
  set_target_properties(Zstd::Zstd PROPERTIES
    IMPORTED_LOCATION "${Zstd_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Zstd_INCLUDE_DIR}")
endif()
mark_as_advanced(Zstd_INCLUDE_DIR Zstd_LIBRARY)
