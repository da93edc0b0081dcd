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
#include <functional>
#include <string>

#include "gigareg/io.hpp"
#include "gigareg/volume.hpp"
#include "io/gzip_blocks.hpp"

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

/// The part of a NIfTI-1 file's voxel data that one process writes: planes [z0, z1) of every
/// component (one process owns all planes; each of P processes writing one file together owns a
/// z-slab, docs/io.md "Writing from several processes").
struct NiftiPart {
  const Volume<float>* planes = nullptr;  // holds whole x-y planes [z0, z1) (host or device)
  index_t z0 = 0, z1 = 0;
  /// .nii.gz: the planes [z1, gzip_part_end(...)) that complete the gzip members starting in the
  /// part (owned by the next processes); nullptr when the part's members end by z1.
  const Volume<float>* following = nullptr;
  PixelType pixel_type = PixelType::Float32;
  IntegerConversion conversion = IntegerConversion::Exact;
};

/// The plane after the last one that the gzip members starting in planes [z0, z1) cover (the
/// member grid of plane_member_layout; z1 when no member starts there or the last ends by z1).
index_t gzip_part_end(const Geometry& g, PixelType pixel_type, index_t z0, index_t z1);

/// .nii: converts the part's planes to the file's type and pwrites them at their offsets in fd
/// (after the prefix), on all cores. Errors name `path`.
void write_plain_part(int fd, const std::string& path, const NiftiPart& part);

/// .nii.gz: the gzip members of components [c0, c1) that start in the part, in file order (with
/// `prefix` in front of the file's first member when given: the process that owns plane 0),
/// converted and compressed on all cores and handed to `put` (write_gzip_members: offsets from
/// the first of them). Returns their compressed size. Errors name `path`.
std::uint64_t compress_gzip_part(const std::string& path, const unsigned char* prefix, const NiftiPart& part,
                                 int c0, int c1, int level, const MemberPut& put);

/// True when gigareg writes the voxel data of `path` itself (.nii / .nii.gz of 2 to 32767 planes
/// and at most 32767 voxels along x and y); else ITK writes the whole file.
bool direct_nifti_writable(const std::string& path, const Geometry& g);

/// The header and extension flag (kNiftiPrefixBytes) that ITK writes for an image of grid g with
/// `components` (1, or 3 for a displacement field) and `pixel_type` (image_io.cpp). False when
/// ITK wrote something else (then ITK must write the whole file).
bool itk_header_prefix(const std::string& path, const Geometry& g, int components,
                       PixelType pixel_type, unsigned char* prefix);

/// pwrite(2) of all the bytes, retried on short writes; Error(Io) naming `path` on failure.
void pwrite_all(int fd, const void* data, std::size_t bytes, std::uint64_t offset,
                const std::string& path);

/// Writes `prefix` (kNiftiPrefixBytes, from ITK) and then the voxel data of a whole host or
/// device volume (1 component: a scalar image converted to `pixel_type`; 3: a displacement
/// field, float32 component planes as ITK lays them out) to `temp_path`, gzip-compressed in
/// members when `final_path` ends in .nii.gz: the part of a single process (the bytes that P
/// processes write together). The temporary (made by StagedFile) is opened without following
/// links; the caller commits it. Errors name final_path.
void write_nifti_data(const std::string& final_path, const std::string& temp_path,
                      const unsigned char* prefix, const Volume<float>& volume,
                      PixelType pixel_type, IntegerConversion conversion);

}  // namespace gigareg::io_detail
