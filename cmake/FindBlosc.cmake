# Finds c-blosc 1 (Debian: libblosc-dev) and defines the imported target Blosc::Blosc: the chunk
# codec of OME-Zarr (src/io/zarr/). A plain header/library search, as FindLibdeflate.cmake does, so
# that machines without pkg-config and prefixes such as /opt/gdeps (CMAKE_PREFIX_PATH) work alike.
find_path(Blosc_INCLUDE_DIR blosc.h)
find_library(Blosc_LIBRARY NAMES blosc libblosc)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Blosc REQUIRED_VARS Blosc_LIBRARY Blosc_INCLUDE_DIR)
if(Blosc_FOUND AND NOT TARGET Blosc::Blosc)
  add_library(Blosc::Blosc UNKNOWN IMPORTED)
  set_target_properties(Blosc::Blosc PROPERTIES
    IMPORTED_LOCATION "${Blosc_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Blosc_INCLUDE_DIR}")
endif()
mark_as_advanced(Blosc_INCLUDE_DIR Blosc_LIBRARY)
