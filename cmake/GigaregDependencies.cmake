# Every dependency comes from the system's packages (scripts/install-deps.sh installs them).

find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)   # src/io checks gzip trailers of NIfTI/MetaImage files
# libdeflate: .nii.gz written and read as parallel gzip members (src/io/gzip_blocks.cpp).
find_package(Libdeflate REQUIRED)  # cmake/FindLibdeflate.cmake
# OME-Zarr (src/io/zarr/): chunks through c-blosc, metadata through nlohmann's JSON (header only,
# used privately: the installed package needs Blosc only, for the static library's link).
find_package(Blosc REQUIRED)  # cmake/FindBlosc.cmake
find_package(Zstd REQUIRED)   # cmake/FindZstd.cmake: Zarr v3's zstd chunks
find_package(nlohmann_json 3 REQUIRED CONFIG)

# ITK: explicit modules, linked by name; I/O factories are registered in code
# (src/io/itk_factories.cpp), so neither ITK_USE_FILE nor ITK_LIBRARIES is used: those pull in
# GDCM, MINC and DCMTK, which we do not need.
set(GIGAREG_ITK_COMPONENTS
  ITKCommon ITKIOImageBase ITKIONIFTI ITKIONRRD ITKIOMeta ITKIOPNG
  ITKIOTransformBase ITKIOTransformMatlab ITKIOTransformInsightLegacy ITKIOTransformHDF5
  ITKTransform ITKImageFunction ITKImageGrid ITKImageIntensity ITKImageFilterBase)
find_package(ITK 5 REQUIRED COMPONENTS ${GIGAREG_ITK_COMPONENTS})
set(GIGAREG_ITK_LIBRARIES
  ITKCommon ITKIOImageBase ITKIONIFTI ITKIONRRD ITKIOMeta ITKIOPNG
  ITKIOTransformBase ITKIOTransformMatlab ITKIOTransformInsightLegacy ITKIOTransformHDF5
  ITKTransform
  # libpng itself (ITK's own, ITKPNG): the QC picture is encoded in memory with it
  # (src/registration/qc.cpp), since ITK's PNG writer crashes when the disk is full.
  ${ITKPNG_LIBRARIES}
  # HDF5 itself (the system's, which ITK uses): .h5 transforms are written with its C API
  # (src/io/hdf5_transform.cpp) so that they hold no timestamps.
  ${ITKHDF5_LIBRARIES})

find_package(CLI11 QUIET CONFIG)

if(GIGAREG_CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

if(GIGAREG_DISTRIBUTED)
  find_package(MPI REQUIRED COMPONENTS CXX)
  if(GIGAREG_CUDA)
    # NCCL ships with the CUDA toolkit here (include/nccl.h, lib64/libnccl.so).
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
    if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
      message(FATAL_ERROR "GIGAREG_DISTRIBUTED with CUDA needs NCCL (nccl.h, libnccl)")
    endif()
  endif()
endif()

if(GIGAREG_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(GIGAREG_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
