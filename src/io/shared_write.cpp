// One file written by all the processes of a partition together, each writing its own z-slab:
// no process ever holds the whole volume (docs/io.md, "Writing from several processes").
//
// The protocol, for every file:
//  1. rank 0 creates the temporary beside the final name (StagedFile: O_EXCL, never through a
//     link) and ITK's header; every process learns the temporary's name (its host tag, pid and
//     random token, gathered) and opens it without following links;
//  2. .nii: rank 0 writes the header, every process pwrites its planes at their offsets.
//     .nii.gz, one component at a time: every process compresses the gzip members that start in
//     its slab (member grid of plane_member_layout, independent of P; a member that runs past the
//     slab takes the following planes, fetched once from the next processes), the compressed
//     sizes are gathered and prefix-summed in rank order, and every process pwrites its members
//     at its offset; rank 0 writes its members straight into the file while compressing (its
//     offset is known: the end of the previous component), the others hold theirs until the sum;
//     .zarr: every chunk is written by the process whose slab holds its first plane (write_zarr_shared);
//  3. every process fsyncs its writes, and the outcome is agreed by all (a gather of a status
//     flag); rank 0 then hands the temporary to the open OutputSet (or renames it).
// A failure on any process in any step is agreed in the same gather: rank 0 removes the
// temporary and every other temporary of the open OutputSet, the processes wait for that, and then
// every process throws (the failed one its own error): whichever ends the job first, nothing
// remains under the final names and no temporary is left.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/partition.hpp"
#include "io/gzip_blocks.hpp"
#include "io/io_internal.hpp"
#include "io/nifti_data.hpp"
#include "io/zarr.hpp"

namespace gigareg {
namespace {

using io_detail::StagedFile;

// Test-only: the rank named by GIGAREG_TEST_FAIL_WRITE_RANK fails its part of the shared writes
// (those whose file name contains GIGAREG_TEST_FAIL_WRITE_NAME, when set) after writing some of it,
// so that the tests can check that a failed write leaves nothing behind.
void maybe_inject_failure(const Partition& part, const std::string& path) {
  const char* v = std::getenv("GIGAREG_TEST_FAIL_WRITE_RANK");
  if (v == nullptr || *v == '\0' || std::strtol(v, nullptr, 10) != part.rank()) return;
  const char* name = std::getenv("GIGAREG_TEST_FAIL_WRITE_NAME");
  const std::string file = path.substr(path.find_last_of('/') + 1);  // npos + 1 = 0
  if (name != nullptr && *name != '\0' && file.find(name) == std::string::npos) return;
  throw_error(ErrorKind::Io, path,
              "write failure injected on rank " + std::to_string(part.rank()) +
                  " (GIGAREG_TEST_FAIL_WRITE_RANK, test only)");
}

// Rank `from`'s `text` (its first 510 bytes) on every rank: packed 6 bytes per value, which
// gather_host_values carries exactly.
std::string share_text(const Partition& part, const std::string& text, int from) {
  constexpr std::size_t kValues = 85, kBytes = 6;
  std::vector<std::int64_t> mine(kValues, 0);
  for (std::size_t i = 0; i < std::min(text.size(), kValues * kBytes); ++i)
    mine[i / kBytes] |= std::int64_t(static_cast<unsigned char>(text[i])) << (8 * (i % kBytes));
  const std::vector<std::int64_t> all = part.gather_host_values(mine);
  std::string out;
  for (std::size_t i = 0; i < kValues * kBytes; ++i) {
    const char c = char((all[std::size_t(from) * kValues + i / kBytes] >> (8 * (i % kBytes))) & 0xff);
    if (c == '\0') break;
    out += c;
  }
  return out;
}

// Runs `work` on this process, then agrees with every process on the outcome. Returns the values
// of every process in rank order (`count` each) when all succeeded. Otherwise rank 0 removes the
// file's temporary (`staged`) and those of the open output set, all wait for that, and every
// process throws: the failed ones their own error, the others an Error(Io) naming the path, the
// first failed rank and its error.
std::vector<std::int64_t> agree(const Partition& part, const std::string& path, std::size_t count,
                                std::optional<StagedFile>& staged,
                                const std::function<std::vector<std::int64_t>()>& work) {
  std::vector<std::int64_t> mine(count + 1, 0);
  std::exception_ptr failure;
  try {
    const std::vector<std::int64_t> v = work();
    if (v.size() != count) throw_error(ErrorKind::Internal, path, "a shared-write step returned the wrong count");
    std::copy(v.begin(), v.end(), mine.begin() + 1);
    mine[0] = 1;
  } catch (...) {
    failure = std::current_exception();
  }
  const std::vector<std::int64_t> all = part.gather_host_values(mine);
  int failed = -1;
  for (int q = part.size() - 1; q >= 0; --q)
    if (all[std::size_t(q) * (count + 1)] == 0) failed = q;
  if (failed < 0) {
    std::vector<std::int64_t> values;
    for (int q = 0; q < part.size(); ++q)
      for (std::size_t i = 0; i < count; ++i) values.push_back(all[std::size_t(q) * (count + 1) + 1 + i]);
    return values;
  }
  // The first failed rank's message goes to every rank: whichever ends the job first (its error
  // is the one printed before the launcher kills the others) names the cause.
  std::string why;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      why = e.what();
    } catch (...) {
      why = "unknown error";
    }
  }
  const std::string cause = share_text(part, why, failed);
  if (part.rank() == 0) {
    staged.reset();
    io_detail::discard_output_set();
  }
  part.all(true);  // nobody ends the job before rank 0 has cleaned up
  if (failure) std::rethrow_exception(failure);
  throw_error(ErrorKind::Io, path,
              "not written: rank " + std::to_string(failed) + " failed to write its part (" + cause + ")");
}

// A staged temporary's name travels through agree() as the values of its TemporaryId: every
// element, so that every rank names the directory or file that rank 0 created (an id built from
// fewer values would silently zero the rest and name a temporary that does not exist).
constexpr std::size_t kIdValues = std::tuple_size<io_detail::TemporaryId>::value;

std::vector<std::int64_t> id_values(const io_detail::TemporaryId& id) {
  return std::vector<std::int64_t>(id.begin(), id.end());
}

// The temporary of `path` named by the kIdValues values of `made` from `at` (rank 0's, as
// agree() returns them first).
std::string agreed_temporary(const std::string& path, const std::vector<std::int64_t>& made, std::size_t at) {
  if (made.size() < at + kIdValues)
    throw_error(ErrorKind::Internal, path, "the temporary's name was not agreed in full");
  io_detail::TemporaryId id{};
  std::copy(made.begin() + std::ptrdiff_t(at), made.begin() + std::ptrdiff_t(at + kIdValues), id.begin());
  return io_detail::temporary_path(path, id);
}

// An open file descriptor, closed on scope exit (errors of an explicit close are reported).
struct OpenFile {
  int fd = -1;
  ~OpenFile() {
    if (fd >= 0) ::close(fd);
  }
  void open(const std::string& temp, const std::string& path) {
    fd = ::open(temp.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      throw_error(ErrorKind::Io, path,
                  "cannot open the shared temporary " + temp + ": " + std::strerror(errno));
  }
  // fsync: this process's writes are on disk (on a shared file system each client flushes its
  // own), then close.
  void sync_and_close(const std::string& path) {
    const int f = fd;
    fd = -1;
    const bool synced = ::fsync(f) == 0;
    const int err = errno;
    if (::close(f) != 0 || !synced)
      throw_error(ErrorKind::Io, path,
                  std::string("flushing the written part to disk failed: ") + std::strerror(synced ? errno : err));
  }
};

// Volumes that NIfTI's direct path cannot write (other formats, very large or one-plane grids):
// gathered whole on rank 0, which writes them alone, the outcome agreed as for shared writes.
void write_gathered(const std::string& path, const Volume<float>& local, const Partition& part,
                    PixelType pixel_type, IntegerConversion conversion) {
  const Geometry& g = local.geometry();
  Volume<float> whole = part.fetch(local, part.rank() == 0 ? Box{{0, 0, 0}, g.size} : Box{});
  std::optional<StagedFile> none;
  agree(part, path, 0, none, [&] {
    if (part.rank() != 0) return std::vector<std::int64_t>{};
    if (whole.space() != MemorySpace::Host) whole = whole.to(MemorySpace::Host);
    if (local.components() == 3)
      write_displacement_field(path, whole);
    else
      write_image(path, whole, pixel_type, conversion);
    return std::vector<std::int64_t>{};
  });
}

// .zarr: the store's metadata made by rank 0 in the temporary directory; every chunk written by
// exactly one process, the one whose slab holds the chunk's first plane (the chunk rows from
// chunk_boundary(z0) to chunk_boundary(z1)); the planes that complete its last chunk row, when its
// slab ends inside one, come from the next processes (at most one chunk row less a plane). Each
// process stages one chunk row of planes at a time: no buffer of a whole slab, none of the volume.
void write_zarr_shared(const std::string& path, const Volume<float>& local, const Partition& part,
                       PixelType pixel_type, IntegerConversion conversion) {
  const Geometry& g = local.geometry();
  const Box owned = part.owned(g.size);
  const index_t z0 = owned.lo.z, z1 = owned.lo.z + owned.size.z;
  const int components = local.components();
  std::optional<StagedFile> staged;
  // Rank 0 creates the directory and the metadata before the agreement returns anywhere (it is a
  // gather): no rank opens the store before it exists.
  const std::vector<std::int64_t> made = agree(part, path, kIdValues, staged, [&] {
    if (part.rank() != 0) return std::vector<std::int64_t>(kIdValues, 0);
    staged.emplace(path);  // a temporary directory beside the final name
    zarr::create_store(staged->temp_path(), zarr::StoreSpec::for_grid(g, components, pixel_type), path);
    return id_values(staged->temporary_id());
  });
  const std::string temp = agreed_temporary(path, made, 0);
  const index_t chunk_z = zarr::StoreSpec::for_grid(g, components, pixel_type).chunk.z;
  const index_t cz = std::max<index_t>(1, std::min(chunk_z, g.size.z));
  const index_t first = zarr::chunk_boundary(z0, cz, g.size.z);
  const index_t end = zarr::chunk_boundary(z1, cz, g.size.z);
  const bool needs_next = first < end && end > z1;  // a chunk row of mine runs past my slab
  const Volume<float> following =
      part.fetch(local, needs_next ? Box{{0, 0, z1}, {g.size.x, g.size.y, end - z1}} : Box{});
  agree(part, path, 0, staged, [&] {
    const zarr::Store store = zarr::Store::open(temp, path);
    if (store.array(0).chunk.z != cz)
      throw_error(ErrorKind::Internal, path, "the store's chunks are not the planned ones");
    const std::size_t plane = std::size_t(g.size.x) * std::size_t(g.size.y);
    std::vector<float> row;
    for (index_t a = first; a < end; a += cz) {
      const index_t n = std::min(cz, g.size.z - a);
      row.resize(std::size_t(components) * plane * std::size_t(n));
      for (int c = 0; c < components; ++c)
        for (index_t z = a; z < a + n; ++z) {  // planes from this slab or the next ones
          const Volume<float>& from = z < z1 ? local : following;
          copy_bytes(row.data() + (std::size_t(c) * std::size_t(n) + std::size_t(z - a)) * plane,
                     MemorySpace::Host,
                     from.data() + std::size_t(c) * std::size_t(from.voxel_count()) +
                         std::size_t(z - from.box().lo.z) * plane,
                     from.space(), plane * sizeof(float));
        }
      store.write_planes(0, a, n, row.data(), conversion);  // chunk files created and fsynced
      maybe_inject_failure(part, path);
    }
    return std::vector<std::int64_t>{};
  });
  if (part.rank() == 0) staged->commit();  // flushes the directories, then into the output set
}

void write_shared(const std::string& path, const Volume<float>& local, const Partition& part,
                  PixelType pixel_type, IntegerConversion conversion) {
  const Geometry& g = local.geometry();
  const Box owned = part.owned(g.size);
  const index_t z0 = owned.lo.z, z1 = owned.lo.z + owned.size.z;
  if (!local.box().contains(owned) || local.box().lo.x != 0 || local.box().lo.y != 0 ||
      local.box().size.x != g.size.x || local.box().size.y != g.size.y)
    throw_error(ErrorKind::InvalidArgument, path,
                "each process must pass whole x-y planes including the planes it owns");
  if (io_detail::is_zarr_path(path)) return write_zarr_shared(path, local, part, pixel_type, conversion);
  if (!io_detail::direct_nifti_writable(path, g))
    return write_gathered(path, local, part, pixel_type, conversion);

  // 1. The temporary and the header, on rank 0; its name to everyone.
  std::optional<StagedFile> staged;
  unsigned char prefix[io_detail::kNiftiPrefixBytes];
  const std::vector<std::int64_t> made = agree(part, path, 1 + kIdValues, staged, [&] {
    if (part.rank() != 0) return std::vector<std::int64_t>(1 + kIdValues, 0);
    staged.emplace(path);
    const bool header = io_detail::itk_header_prefix(path, g, local.components(), pixel_type, prefix);
    std::vector<std::int64_t> v{header ? 1 : 0};
    const std::vector<std::int64_t> id = id_values(staged->temporary_id());
    v.insert(v.end(), id.begin(), id.end());
    return v;
  });
  if (made[0] == 0) {  // ITK's header is not the one gigareg completes: ITK writes the file
    staged.reset();
    return write_gathered(path, local, part, pixel_type, conversion);
  }
  const std::string temp = agreed_temporary(path, made, 1);
  const bool gz = io_detail::extension_of(path) == ".nii.gz";

  // The planes that complete the gzip members starting in this slab (from the next processes).
  Volume<float> following;
  if (gz) {
    const index_t end = io_detail::gzip_part_end(g, pixel_type, z0, z1);
    following = part.fetch(local, end > z1 ? Box{{0, 0, z1}, {g.size.x, g.size.y, end - z1}} : Box{});
  }
  io_detail::NiftiPart mine;
  mine.planes = &local;
  mine.z0 = z0;
  mine.z1 = z1;
  mine.following = following.empty() ? nullptr : &following;
  mine.pixel_type = pixel_type;
  mine.conversion = conversion;
  const unsigned char* header = part.rank() == 0 ? prefix : nullptr;

  // 2. The data.
  OpenFile file;
  agree(part, path, 0, staged, [&] {
    file.open(temp, path);
    if (!gz) {
      if (header != nullptr) io_detail::pwrite_all(file.fd, header, sizeof prefix, 0, path);
      io_detail::write_plain_part(file.fd, path, mine);
      maybe_inject_failure(part, path);
    }
    return std::vector<std::int64_t>{};
  });
  if (gz) {
    std::uint64_t component_at = 0;  // where the current component's members start in the file
    for (int c = 0; c < local.components(); ++c) {
      // Other ranks: their members, by offset within the part, until the part's place is known.
      std::map<std::uint64_t, std::vector<unsigned char>> held;
      std::mutex held_mutex;
      const std::vector<std::int64_t> sizes = agree(part, path, 1, staged, [&] {
        const std::uint64_t written = io_detail::compress_gzip_part(
            path, header, mine, c, c + 1, io_detail::default_compression_level(),
            [&](std::size_t, const unsigned char* member, std::size_t bytes, std::uint64_t offset) {
              if (part.rank() == 0) {
                io_detail::pwrite_all(file.fd, member, bytes, component_at + offset, path);
                return;
              }
              std::vector<unsigned char> copy(member, member + bytes);
              std::lock_guard<std::mutex> lock(held_mutex);
              held.emplace(offset, std::move(copy));
            });
        maybe_inject_failure(part, path);
        return std::vector<std::int64_t>{std::int64_t(written)};
      });
      std::uint64_t at = component_at;  // the exclusive prefix sum of the sizes, in rank order
      for (int q = 0; q < part.rank(); ++q) at += std::uint64_t(sizes[std::size_t(q)]);
      agree(part, path, 0, staged, [&] {
        for (const auto& [offset, m] : held) io_detail::pwrite_all(file.fd, m.data(), m.size(), at + offset, path);
        return std::vector<std::int64_t>{};
      });
      for (std::int64_t s : sizes) component_at += std::uint64_t(s);
    }
  }

  // 3. On disk everywhere, then rank 0 commits (into the open output set, if any).
  agree(part, path, 0, staged, [&] {
    file.sync_and_close(path);
    return std::vector<std::int64_t>{};
  });
  if (part.rank() == 0) staged->commit();
}

}  // namespace

void write_sharded_image(const std::string& path, const ScalarVolume& local, const Partition& partition,
                         PixelType pixel_type, IntegerConversion conversion) {
  if (partition.size() == 1) return write_image(path, local, pixel_type, conversion);
  register_itk_io_factories();
  if (local.components() != 1)
    throw_error(ErrorKind::InvalidArgument, path, "expected a scalar volume");
  write_shared(path, local, partition, pixel_type, conversion);
}

void write_sharded_displacement_field(const std::string& path, const DisplacementField& local,
                                      const Partition& partition) {
  if (partition.size() == 1) return write_displacement_field(path, local);
  register_itk_io_factories();
  if (local.components() != 3)
    throw_error(ErrorKind::InvalidArgument, path, "expected a 3-component displacement field");
  write_shared(path, local, partition, PixelType::Float32, IntegerConversion::Exact);
}

}  // namespace gigareg
