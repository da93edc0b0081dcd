#pragma once
// Helpers shared by the ITK readers and writers in src/io (not installed).

#include <itkImageIOBase.h>
#include <itkMacro.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkTransformBase.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "gigareg/io.hpp"
#include "gigareg/memory.hpp"

namespace gigareg::io_detail {

/// The useful part of an ITK exception (its description, without ITK's file/line banner).
std::string itk_message(const itk::ExceptionObject& e);

/// The parameters of a linear ITK transform read from `path`; InvalidInput naming `path` when any
/// of them is not finite (NaN in a .mat would otherwise surface far from the file, e.g. as a
/// singular matrix in a later inversion).
ItkAffine itk_affine_parameters(const itk::MatrixOffsetTransformBase<double, 3, 3>& linear,
                                const std::string& path);

/// Writes `transform` into `file` laid out as ITK's HDF5TransformIO writes it, without the object
/// timestamps that make ITK's files differ between identical runs (src/io/hdf5_transform.cpp).
/// Errors name `path` (the final name).
void write_transform_h5(const std::string& file, const std::string& path,
                        const itk::TransformBaseTemplate<double>* transform);

class StagedFile;
/// Writes `transform` to the staged temporary: .h5 by write_transform_h5, the other formats by
/// ITK's TransformFileWriter. Errors name the final path.
void write_itk_transform(const StagedFile& staged, const itk::TransformBaseTemplate<double>* transform);

/// Before ITK reads a transform file: require_readable_file, then for .mat that the file is whole
/// (complete MAT variables: ITK's reader does not check), and for .txt/.tfm that each linear
/// transform's Parameters / FixedParameters hold the number of values its type takes (ITK reads
/// too few beyond its array). Error(InvalidInput) naming `path` otherwise.
void check_transform_file(const std::string& path);

/// Throws Error(Io) naming `path` unless it is an existing regular file that can be opened.
void require_readable_file(const std::string& path);

/// Throws Error(Io) naming `path` if the voxel data of a NIfTI or MetaImage file (as opened by
/// `io`, header read) is shorter than its header announces: ITK's readers and writers for these
/// formats do not notice (src/io/completeness.cpp), or, with `verify` (reads), if compressed data
/// is corrupt (gzip CRC-32 or length, a MetaImage zlib stream): ITK reads those without noticing.
/// Other formats: nothing to do.
void check_data_complete(const std::string& path, const itk::ImageIOBase& io, bool verify = true);

/// Throws Error(InvalidInput) naming `path` if it is a NIfTI file whose header holds values that
/// ITK's NIfTI reader mishandles (crash, undefined behaviour or silently wrong voxels): a
/// non-finite qform/sform in use, a vox_offset that is not a non-negative whole number, a bitpix
/// that contradicts the datatype (src/io/nifti_checks.cpp). Anything else: nothing to do.
/// For files that ITK's NiftiImageIO has claimed (NIfTI-1, NIfTI-2 and Analyze 7.5): a sizeof_hdr
/// that is neither 348 nor 540 in either byte order is refused too (the NIfTI library reads such
/// headers anyway, by their magic).
void check_nifti_header(const std::string& path);

/// Throws Error(InvalidInput) naming `path` if its MetaImage header holds values that ITK's
/// MetaIO mishandles before any check of its own: NDims or DimSize that are not small positive
/// whole numbers (NDims -1 hangs it), non-finite spacing, origin or matrix, a CompressedDataSize of
/// 0, data in a LIST or numbered files (src/io/completeness.cpp).
void check_metaimage_header(const std::string& path);

/// Throws Error(InvalidInput) naming `path` unless libpng decodes the whole PNG file without an
/// error: ITK's PNG reader aborts the process on some damaged chunks (src/io/completeness.cpp).
void check_png(const std::string& path);

/// A 64-bit fingerprint of the file's size and sampled bytes (headers, trailer and blocks spread
/// over the file; a few hundred kB read): equal for the same file, different for files that differ
/// in size, header or content (src/io/fingerprint.cpp).
std::uint64_t file_fingerprint(const std::string& path);

/// The file name's extension in lower case, including a compression suffix: "x.nii.gz" ->
/// ".nii.gz", "y.MHA" -> ".mha", "z" -> "".
std::string extension_of(const std::string& path);

/// Whether `path` names an OME-Zarr store (extension .zarr: a directory, src/io/zarr.hpp): the one
/// test of the format that the image readers and writers, output checks and staging dispatch on.
bool is_zarr_path(const std::string& path);
/// What names a temporary: this host's tag, the process id and the 64 random bits of its token in
/// two 32-bit halves (the numbers in `.stem.tmp-<host>-<pid>-<token>.ext`). Processes writing one
/// file together learn the temporary that rank 0 created from it.
using TemporaryId = std::array<std::int64_t, 4>;
/// The temporary's path for `final_path` and `id` (the one StagedFile creates).
std::string temporary_path(const std::string& final_path, const TemporaryId& id);

/// A write that appears under its final name only once complete: the writer writes temp_path()
/// (same directory, same extension, hidden name `.stem.tmp-<host>-<pid>-<token>.ext`, created empty
/// here with O_EXCL | O_NOFOLLOW so that no planted file or link is written through), then
/// commit() flushes it to disk (fsync) and renames it over the final path, or, while an OutputSet
/// is open, hands it to the set, which renames all its files together. If commit() is not reached,
/// the destructor removes the temporary.
/// A .zarr name (is_zarr_path) is staged as a temporary *directory* (created empty with mkdir,
/// which never follows a link); the writer fills it (its files created with O_EXCL | O_NOFOLLOW
/// and flushed), commit() flushes its directories and moves it into place: over a missing name by
/// rename, over an existing store by an atomic exchange (renameat2 RENAME_EXCHANGE), after which
/// the old store is removed. An existing directory that is not a Zarr store is never replaced. Temporaries are also removed by
/// remove_pending_temporaries() (signal handlers), and ones left by a killed process of this host
/// are removed the next time the same final name is written.
/// The file that a temporary's name gave when it was created, held open: a later lstat of the name
/// must find this file (device and inode), not a link or a file put there by someone else. Open,
/// its inode cannot be freed and reused by a file created under the name.
class HeldFile {
 public:
  explicit HeldFile(int fd) : fd_(fd) {}
  ~HeldFile();
  HeldFile(const HeldFile&) = delete;
  HeldFile& operator=(const HeldFile&) = delete;
  /// Empty when `path` is still this regular file (not followed if it is a link); else what it is.
  std::string mismatch(const std::string& path) const;
  int fd() const { return fd_; }

 private:
  int fd_;
};

/// A name under which a writer that opens its file by name (ITK's image and transform writers,
/// HDF5) reaches exactly the temporary that StagedFile created, whatever happens meanwhile to the
/// names in the destination directory: `/proc/self/fd/<D>/<n><ext>`, where D is a private
/// directory (mode 0700, made once per process under $TMPDIR or /tmp, held open) and the entry a
/// symbolic link, made here, to `/proc/self/fd/<F>`, F the temporary held open since its
/// creation. No other user can add or replace an entry of D, and both steps go through open
/// descriptors: a temporary swapped for a link by someone with write access to the destination is
/// never written through (commit() then refuses it). Without /proc or a private directory the
/// temporary's own path is used (commit()'s check remains). The destructor removes the link.
class WriterName {
 public:
  WriterName(const HeldFile& file, const std::string& ext, const std::string& temp_path);
  ~WriterName();
  WriterName(const WriterName&) = delete;
  WriterName& operator=(const WriterName&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string link_;  // the link's name in the private directory; empty for the fallback
};

class StagedFile {
 public:
  /// Creates the temporary: `dir/.stem.tmp-<host>-<pid>-<64 random bits in hex>.ext`, exclusively
  /// (O_EXCL) and never through a link (O_NOFOLLOW). The random part makes the name unguessable,
  /// so that nobody can plant a link under it beforehand; the stem is shortened when the name
  /// would exceed the file system's limit. Throws Error(Io) naming `final_path` if its directory
  /// does not exist or does not let a file be created (with the system's reason), its name is
  /// too long, or it is a directory.
  explicit StagedFile(std::string final_path);
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;

  const std::string& temp_path() const { return temp_; }
  const std::string& final_path() const { return final_; }
  const TemporaryId& temporary_id() const { return id_; }
  /// The name to give writers that open the temporary by name (WriterName); files, not stores.
  WriterName writer_name() const;
  /// Makes the temporary hold exactly `bytes`, written through the descriptor held since its
  /// creation (never through a name). Error(Io) naming the final path on a short write (disk full,
  /// file size limit).
  void write_through_held(const void* bytes, std::size_t size) const;
  /// Renames the temporary into place (or hands it to the open OutputSet); throws Error(Io) if
  /// the writer left no file, the temporary is no longer the file created (replaced by a link or
  /// another file in the destination while it was written), or flushing / renaming fails (the temporary is
  /// then removed).
  void commit();

 private:
  std::string final_;
  std::string temp_;
  TemporaryId id_{};
  std::shared_ptr<const HeldFile> created_;  // shared with the open OutputSet
  bool directory_ = false;  // a .zarr store
  bool committed_ = false;
};

/// Removes, now, the temporaries that the open OutputSet holds (none of them will be renamed):
/// a process that learns that another one failed its part of a shared write cleans up before
/// the job is ended, since the end may kill it before its stack unwinds.
void discard_output_set() noexcept;

/// An owned host byte buffer whose allocation failure names the file it is for.
class HostBytes {
 public:
  HostBytes() = default;
  HostBytes(std::size_t bytes, const std::string& path)
      : data_(bytes ? static_cast<unsigned char*>(allocate_bytes(bytes, MemorySpace::Host, path))
                    : nullptr),
        size_(bytes) {}
  ~HostBytes() { free_bytes(data_, MemorySpace::Host); }
  HostBytes(HostBytes&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; o.size_ = 0; }
  HostBytes& operator=(HostBytes&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Writes `bytes` to the temporary of `staged` with checked write(2) calls (a full disk or a file
/// size limit is an Error(Io) naming the final path), then commits it.
void write_staged_bytes(StagedFile& staged, const void* bytes, std::size_t size);

/// Writes all `size` bytes to `fd` (retrying short writes and EINTR); 0, or the errno of the
/// failure (ENOSPC when the system wrote nothing without saying why).
int write_fully(int fd, const void* data, std::size_t size);

}  // namespace gigareg::io_detail
