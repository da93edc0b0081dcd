#pragma once
// NIfTI-1 voxel data read and written without ITK (not installed).
//
// ITK stays the authority for everything a NIfTI header means (geometry, qform/sform choice,
// LPS): headers are read by ITK's NiftiImageIO, and the header gigareg writes is the one ITK
// writes for the same image (ITK writes a two-plane image of the same geometry; only dim[3]
// differs, and it is patched). What is done here is the part ITK does on one core with zlib:
// moving and converting the voxel data, and (de)compressing .nii.gz through gzip_blocks on all
// cores. docs/io.md describes the files and what was measured.

#include <cstddef>
#include <cstdint>
#include <string>

#include "gigareg/io.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::io_detail {

/// Reads the planes [z0, z0 + nz) of every component of a single-file NIfTI-1 image (.nii or
/// .nii.gz) into dst, which holds `components` planar blocks of nx * ny * nz floats. Values are
/// converted as ITK's reader converts them (static_cast, scl_slope / scl_inter in double when not
/// the identity); integers beyond 2^24 are rejected with InvalidInput. Returns false, having
/// written nothing, for files it does not handle (not NIfTI-1 single file, a datatype other than
/// the ten real types, dimensions that disagree with `g`, several volumes): the caller then reads
/// through ITK.
bool read_nifti_planes(const std::string& path, const Geometry& g, int components, index_t z0,
                       index_t nz, float* dst);

/// The bytes before the voxel data of every NIfTI-1 single file gigareg writes: the 348-byte
/// header and the 4-byte extension flag (vox_offset 352).
inline constexpr std::size_t kNiftiPrefixBytes = 352;

/// Writes `prefix` (kNiftiPrefixBytes, from ITK) and then the voxel data of a whole host or
/// device volume (1 component: a scalar image converted to `pixel_type`; 3: a displacement
/// field, float32 component planes as ITK lays them out) to `temp_path`, gzip-compressed in
/// blocks when `final_path` ends in .nii.gz. The temporary (made by StagedFile) is opened without
/// following links; the caller commits it. Errors name final_path.
void write_nifti_data(const std::string& final_path, const std::string& temp_path,
                      const unsigned char* prefix, const Volume<float>& volume,
                      PixelType pixel_type, IntegerConversion conversion);

}  // namespace gigareg::io_detail
