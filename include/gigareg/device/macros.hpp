#pragma once
// Macros shared by host-only and CUDA translation units. Per-voxel math in include/gigareg/device/
// is written once with GIGAREG_HD so the CPU reference and the CUDA kernels run the same formula.

#if defined(__CUDACC__)
#define GIGAREG_HD __host__ __device__
#define GIGAREG_DEVICE __device__
#define GIGAREG_FORCEINLINE __forceinline__
#else
#define GIGAREG_HD
#define GIGAREG_DEVICE
#define GIGAREG_FORCEINLINE inline
#endif

#define GIGAREG_HDI GIGAREG_HD GIGAREG_FORCEINLINE
