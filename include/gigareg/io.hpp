#pragma once
// Reading and writing images, displacement fields and affine transforms through ITK.
//
// Images: any scalar image ITK reads (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage .mha/.mhd,
// PNG) becomes a Volume<float> with the Geometry ITK reports (LPS; NIfTI qform/sform and
// scl_slope/scl_inter applied exactly as itk::ImageFileReader applies them). The type of the
// values in the file is remembered so that label maps are written back as integers.
//
// Displacement fields: planar 3-component Volume<float> of physical LPS displacements in mm,
// written as ANTs writes its warps: itk::Image<itk::Vector<float,3>,3> through ITK's writers, which
// for NIfTI gives intent_code NIFTI_INTENT_VECTOR (1007), dim[0] = 5, dim[4] = 1, dim[5] = 3 and
// float32 data, component planes on disk. ITK stores the vectors as they are (LPS), as ANTs does.
//
// Affine transforms: ITK transform files (.mat as ANTs writes prefix0GenericAffine.mat, .txt/.tfm,
// .h5) holding one AffineTransform / MatrixOffsetTransformBase (or any linear subclass of it).
//
// Fast NIfTI: .nii and .nii.gz single files (of at least two planes) are read and written by
// gigareg itself for the voxel data, with ITK's header (src/io/nifti_data.cpp): .nii.gz is written
// as independent gzip members of 4 MiB compressed on all cores with libdeflate (any gzip reader
// decodes it as one stream; gzip -t, ITK and nibabel read it) and read member by member on all
// cores; other .nii.gz files are read with libdeflate in one pass. docs/io.md has the layout.
//
// Every write goes to a temporary file in the destination directory (same extension, so ITK picks
// the same writer: `dir/.name.tmp-<host>-<pid>-<n>.nii.gz`) and is renamed over the final name only
// after ITK succeeded and the file was checked; on failure the temporary is removed (see
// OutputSet for several files written as one set). No partial file ever exists under the final
// name. Two-file formats (.mhd, .nhdr, .hdr/.img) are readable but not writable for that reason.
//
// OME-Zarr: a path ending in .zarr (a directory) is an NGFF 0.4 image on Zarr v2, read and written
// by gigareg itself (NGFF 0.5 on Zarr v3, without sharding, is read too) (src/io/zarr.hpp, docs/zarr.md) wherever a .nii or .nii.gz path is accepted:
// images keep their pixel type, displacement fields have a component axis (c, z, y, x), and the
// geometry (including the direction, which NGFF 0.4 cannot express) round-trips exactly. A store
// is staged as a hidden temporary directory and renamed into place like every other output.
//
// Every entry point registers ITK's I/O factories first (register_itk_io_factories), so programs
// need neither ITK_USE_FILE nor ITK's factory register managers.
//
// Errors: gigareg::Error whose where() is the file path. Kinds: Io (missing, not a regular file,
// unreadable, truncated or failing data, failed write/rename), InvalidInput (not an image ITK
// recognises, header that ITK rejects, bad geometry, 4-D or vector data where a scalar 3-D image
// is expected, integer values beyond float precision, unsupported pixel type), OutOfMemory (the
// header announces more voxels than the host can hold: checked before anything is allocated),
// InvalidArgument (a caller asked for something impossible: unsupported output extension,
// non-integer values for an integer pixel type, ...).

#include <cstddef>
#include <string>

#include "gigareg/device/math.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

class Partition;  // gigareg/partition.hpp

/// Type of the values stored in an image file.
enum class PixelType { UInt8, Int8, UInt16, Int16, UInt32, Int32, UInt64, Int64, Float32, Float64 };

const char* to_string(PixelType type);  // "uint8", "int16", "float32", ...
std::size_t size_of(PixelType type);    // bytes per value
bool is_integer(PixelType type);

/// The deflate level of every .nii.gz gigareg writes from now on, in this process: 0 (stored, no
/// compression) to 12 (smallest, slowest), libdeflate's scale, or kCompressionAuto, the default:
/// each 4 MiB member at level 1 (the fastest), except members that a probe of four 16 KiB windows
/// shows deflate would shrink by less than 10%, which are stored. A registration's forward warp
/// shrinks by only 3-8% at any level (float mantissas are noise), so auto stores it at the disk's
/// speed instead of spending all cores on deflate; inverse warps (equal values in the
/// background), label maps and masked images still compress. The choice depends on the bytes only (deterministic). docs/io.md has the figures.
/// InvalidArgument otherwise. Thread-safe; writes already under way keep their level.
inline constexpr int kCompressionAuto = -1;
void set_compression_level(int level);
int compression_level();

/// How the .zarr stores gigareg writes from now on, in this process, are chunked and compressed
/// (docs/zarr.md). Chunks are compressed with Blosc and byte shuffle; "none" stores them raw.
struct ZarrOptions {
  Index3 chunk{64, 64, 64};    // voxels per chunk along x, y, z (clipped to the grid)
  std::string codec = "zstd";  // "zstd", "lz4" or "none"
  int level = 1;               // Blosc's clevel, 0-9 (1: fast; displacement fields hardly compress)
};
/// InvalidArgument for a chunk size below 1 or above 4096, a chunk of more than 1 GiB of float64,
/// an unknown codec or a level outside 0-9. Thread-safe.
void set_zarr_options(const ZarrOptions& options);
ZarrOptions zarr_options();
/// For a .zarr store, a line on how it is stored ("OME-Zarr (NGFF 0.4, Zarr v2): 3 levels, chunks
/// 64x64x64 voxels, blosc/zstd:1 shuffle"); empty for other files. Throws as read_image_header.
std::string describe_storage(const std::string& path);
/// "64" (a cube) or "XxYxZ" ("128x128x32") -> chunk sizes; InvalidArgument naming --zarr-chunk.
Index3 parse_zarr_chunk(const std::string& text);

/// Registers the image I/O factories (NIfTI, NRRD, MetaImage, PNG) and the transform I/O
/// factories (.mat, .txt/.tfm, .h5) with ITK. Thread-safe; the work is done once per process, and
/// a factory that is already registered (e.g. by ITK_USE_FILE in the calling program) is skipped.
void register_itk_io_factories();

/// What an image file's header says, read without touching the voxel data.
struct ImageHeader {
  Geometry geometry;                        // of the first three axes, as ITK reports it
  PixelType pixel_type = PixelType::Float32;  // values as ITK delivers them (after scl_slope)
  int components = 1;                       // values per voxel (3 for a displacement field)
  int dimensions = 3;                       // axes in the file (2 for PNG, 4 for a time series)
  index_t volumes = 1;                      // product of the sizes beyond the third axis
};

/// Reads and checks the header: throws if the file is missing or unreadable, or its geometry is
/// unusable (Geometry::validate). Does not check components or dimensions.
ImageHeader read_image_header(const std::string& path);

/// A scalar image as read from a file: the voxels as float and the type they had in the file.
struct Image {
  ScalarVolume voxels;
  PixelType pixel_type = PixelType::Float32;
};

/// Reads a scalar 2-D or 3-D image (a 4-D file is accepted only if it holds one volume).
///  * Values are converted to float exactly as itk::ImageFileReader<itk::Image<float,3>> does
///    (static_cast). Integer files whose values do not all fit float exactly (|v| > 2^24, possible
///    for uint32/int32/uint64/int64) are rejected with InvalidInput instead of being rounded
///    silently; float64 values are rounded to the nearest float, as ITK does.
///  * NIfTI scl_slope/scl_inter are applied by ITK; such files report pixel_type Float32 (the
///    scaled values are not integers), which is the type they are written back with.
///  * Memory: the header is checked (geometry, voxel count, bytes against available host memory)
///    before anything is allocated. Types of at most 4 bytes are converted in place in the output
///    buffer; 8-byte types need one extra buffer of the file's size.
Image read_image(const std::string& path);

/// The x-y planes [z0, z0 + nz) of a scalar image: a volume whose box is that slab of the image's
/// grid (the geometry is the whole image's), read as read_image reads. Only the slab is held in
/// memory and, where the format allows, only its bytes are read: uncompressed NIfTI reads the
/// slab's byte range (what a rank of a distributed run reads); a .nii.gz written by gigareg
/// decodes the gzip members under the slab, others are decoded as a stream up to the slab's end;
/// a .zarr store reads only the chunks the slab overlaps. InvalidArgument when the range is empty or outside the grid.
Image read_image_slab(const std::string& path, index_t z0, index_t nz);

/// How float voxels become integers when an integer pixel type is written.
enum class IntegerConversion {
  Exact,          // every value must be an integer within range (and not NaN): else InvalidArgument
  RoundAndClamp,  // round to nearest (halves away from zero), clamp to the range, NaN -> 0
};

/// Writes a scalar host or device volume (its whole grid) with the given pixel type.
void write_image(const std::string& path, const ScalarVolume& voxels,
                 PixelType pixel_type = PixelType::Float32,
                 IntegerConversion conversion = IntegerConversion::Exact);
/// Writes an image with the pixel type it was read with (label maps stay integers).
void write_image(const std::string& path, const Image& image,
                 IntegerConversion conversion = IntegerConversion::Exact);

/// Reads a 3-component vector image (ANTs warp, float32 or float64 on disk) into a planar
/// 3-component volume: displacements in mm, LPS. The file's interleaved vectors are copied into
/// component planes.
DisplacementField read_displacement_field(const std::string& path);
/// Writes a planar 3-component volume (physical LPS displacements in mm) as a float32 vector image,
/// the way ANTs writes prefix1Warp.nii.gz.
void write_displacement_field(const std::string& path, const DisplacementField& field);

/// What `gigareg convert` does besides copying.
struct ConvertOptions {
  int pyramid = 0;      // extra NGFF pyramid levels (each halving the grid) in a .zarr output
  bool labels = false;  // a label map: pyramid levels take the mode of each 2x2x2 block, not the mean
};
/// Copies an image or displacement field between .nii, .nii.gz and .zarr (or any format
/// read_image / write_image handle), keeping the pixel type, the components and the geometry
/// exactly. A file with 3 components per voxel is copied as a displacement field. The output
/// appears complete or not at all. InvalidArgument for a pyramid outside 0-16 or one asked of a
/// non-.zarr output, or --labels on a float image.
void convert_image_file(const std::string& input, const std::string& output,
                        const ConvertOptions& options = {});
/// A volume held in z-slabs by the processes of `partition`, written as one file by all of them
/// together: collective (every process calls it with the same path, in the same order as its
/// other collectives). `local` holds whole x-y planes including the process's owned planes
/// (partition.owned), in the partition's memory (host, or the device with NCCL). .nii and
/// .nii.gz: each process writes its own planes (uncompressed at their offsets; the gzip members
/// that start in its slab, placed by a prefix sum of their sizes), so that no process holds the
/// whole volume, and the bytes are those one process writes (docs/io.md). Other formats, and
/// grids that only ITK writes, are gathered on rank 0, which writes them. The file appears under
/// its name (or joins rank 0's open OutputSet) only when every process wrote its part; if any
/// failed, every process throws and no temporary remains. One process: write_image /
/// write_displacement_field.
void write_sharded_image(const std::string& path, const ScalarVolume& local, const Partition& partition,
                         PixelType pixel_type = PixelType::Float32,
                         IntegerConversion conversion = IntegerConversion::Exact);
void write_sharded_displacement_field(const std::string& path, const DisplacementField& local,
                                      const Partition& partition);

/// An affine transform with ITK's parameterisation: y = matrix * (x - center) + translation + center,
/// mapping fixed-space LPS points x to moving-space points y.
struct ItkAffine {
  Mat3d matrix = Mat3d::identity();
  Vec3d translation{0, 0, 0};
  Vec3d center{0, 0, 0};  // ITK's fixed parameters

  /// ITK's offset: translation + center - matrix * center, so that y = matrix * x + offset().
  Vec3d offset() const;
  Affined affine() const { return {matrix, offset()}; }
};

/// Writes an itk::AffineTransform<double,3> (AffineTransform_double_3_3) to .mat (ITK's Matlab
/// format, as ANTs writes prefix0GenericAffine.mat), .txt/.tfm or .h5.
void write_affine_transform(const std::string& path, const Mat3d& matrix, const Vec3d& translation,
                            const Vec3d& center = {0, 0, 0});
void write_affine_transform(const std::string& path, const ItkAffine& transform);

/// Reads a file holding one affine transform: AffineTransform or MatrixOffsetTransformBase (or a
/// linear subclass: Euler, Similarity, VersorRigid, ...), float or double, 3-D; also a composite
/// transform holding exactly one such transform. Anything else is InvalidInput.
ItkAffine read_affine_transform(const std::string& path);

/// The files written by this process while an OutputSet is open form one set that appears under
/// its final names together, or not at all (the whole process's writes, from every thread, while it
/// is open). Each write still goes to its own temporary (created
/// with O_EXCL, never through a link) and is checked there, but is not renamed when it returns:
/// commit() flushes every temporary to disk (fsync), then renames them all and syncs their
/// directories. Destroying the set without commit() (an exception in a later write or in the work
/// between writes) removes every temporary of the set, so that no output of a failed command
/// remains.
/// A set opened while another is open joins it: its commit() does nothing and the outer set
/// renames (or removes) everything. A crash between two renames of commit() leaves the files
/// renamed so far (each complete).
class OutputSet {
 public:
  OutputSet();
  ~OutputSet();
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;
  void commit();

 private:
  bool outer_ = false;
};

/// The kinds of file that gigareg writes, for check_output_path.
enum class OutputKind { Image, Transform, CompositeTransform, Png };

/// Checks, before the work that produces it, that `path` can be written as `kind`: an extension
/// gigareg writes (Image: .nii.gz, .nii, .nrrd, .mha, .zarr (a directory store); Transform: .mat, .txt, .tfm,
/// .h5; CompositeTransform: .h5; Png: .png), not a directory, and a directory (created if
/// missing) in which a file can be created (a probe file is created and removed: a read-only
/// mount or a missing permission fails here). Throws Error naming `path`.
void check_output_path(const std::string& path, OutputKind kind);

/// Removes the temporaries of the writes in progress. Async-signal-safe: for signal handlers.
/// A process killed by SIGKILL cannot do this; the temporaries it leaves (hidden names
/// `.name.tmp-<host>-<pid>-<n>.ext`) are removed by the next write of the same name on that host.
void remove_pending_temporaries() noexcept;

/// Installs handlers of SIGINT, SIGTERM and SIGHUP (those still at their default action) that call
/// remove_pending_temporaries() and then end the process by the same signal. For programs.
void install_temporary_cleanup_handlers();

}  // namespace gigareg
