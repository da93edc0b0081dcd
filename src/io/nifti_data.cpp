#include "io/nifti_data.hpp"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <utility>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"
#include "io/gzip_blocks.hpp"
#include "io/io_internal.hpp"
#include "io/pixel_convert.hpp"

namespace gigareg::io_detail {
namespace {

constexpr std::size_t kNifti1HeaderBytes = 348;

bool gzip_name(const std::string& path) { return extension_of(path) == ".nii.gz"; }

// An open file descriptor, closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// pread of the whole range, in parallel chunks for large ranges (page-cache copies are
// memory-bound and one core does not saturate them).
void pread_all(int fd, unsigned char* dst, std::uint64_t offset, std::size_t bytes,
               const std::string& path) {
  constexpr std::size_t kChunk = std::size_t(64) << 20;
  const std::size_t chunks = (bytes + kChunk - 1) / kChunk;
  std::vector<int> failed(chunks, 0);
#pragma omp parallel for schedule(dynamic, 1) if (chunks > 1)
  for (std::int64_t k = 0; k < std::int64_t(chunks); ++k) {
    std::size_t at = std::size_t(k) * kChunk;
    const std::size_t end = std::min(bytes, at + kChunk);
    while (at < end) {
      const ssize_t got = ::pread(fd, dst + at, end - at, off_t(offset + at));
      if (got <= 0) {
        failed[std::size_t(k)] = got == 0 ? -1 : errno;
        break;
      }
      at += std::size_t(got);
    }
  }
  for (int e : failed) {
    if (e == -1) throw_error(ErrorKind::Io, path, "the file is truncated (its voxel data end early)");
    if (e != 0) throw_error(ErrorKind::Io, path, std::string("reading failed: ") + std::strerror(e));
  }
}

// The bytes of a file's content (decompressed for .nii.gz) in one or more ranges.
class ContentReader {
 public:
  explicit ContentReader(const std::string& path) : path_(path) {
    file_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file_.fd < 0) throw_error(ErrorKind::Io, path, std::string("cannot open: ") + std::strerror(errno));
    if (gzip_name(path)) {
      const off_t size = ::lseek(file_.fd, 0, SEEK_END);
      if (size < 0) throw_error(ErrorKind::Io, path, "cannot determine the file size");
      compressed_ = HostBytes(std::size_t(size), path);
      pread_all(file_.fd, compressed_.data(), 0, std::size_t(size), path);
    }
  }
  void read(std::uint64_t begin, std::size_t bytes, unsigned char* out) const {
    if (compressed_.size() == 0) return pread_all(file_.fd, out, begin, bytes, path_);
    gunzip_range(compressed_.data(), compressed_.size(), begin, begin + bytes, out, path_);
  }

 private:
  std::string path_;
  Fd file_;
  HostBytes compressed_;
};

// What the reader needs of a NIfTI-1 header; nullopt for anything it leaves to ITK.
struct NiftiLayout {
  bool swap = false;
  std::int16_t datatype = 0;
  std::uint64_t vox_offset = 0;
  double slope = 1.0, inter = 0.0;
  bool rescale = false;
};

template <class T>
T load(const unsigned char* h, std::size_t offset, bool swap) {
  T v;
  std::memcpy(&v, h + offset, sizeof v);
  if (swap) {
    auto* b = reinterpret_cast<unsigned char*>(&v);
    std::reverse(b, b + sizeof v);
  }
  return v;
}

std::size_t datatype_bytes(std::int16_t datatype) {
  switch (datatype) {
    case 2: case 256: return 1;
    case 4: case 512: return 2;
    case 8: case 16: case 768: return 4;
    case 64: case 1024: case 1280: return 8;
    default: return 0;
  }
}

std::optional<NiftiLayout> parse_layout(const unsigned char* h, const Geometry& g, int components) {
  NiftiLayout l;
  const std::int32_t sizeof_hdr = load<std::int32_t>(h, 0, false);
  l.swap = sizeof_hdr != 348;
  if (load<std::int32_t>(h, 0, l.swap) != 348 || std::memcmp(h + 344, "n+1", 4) != 0) return {};
  std::int16_t dim[8];
  for (int i = 0; i < 8; ++i) dim[i] = load<std::int16_t>(h, 40 + 2 * std::size_t(i), l.swap);
  if (dim[0] < 1 || dim[0] > 7) return {};
  auto extent = [&](int axis) { return axis <= dim[0] ? dim[axis] : std::int16_t(1); };
  for (int a = 0; a < 3; ++a)
    if (index_t(extent(a + 1)) != g.size[a]) return {};
  // Scalars: nothing beyond z. Fields: ITK's vector layout, dim[4] = 1 and dim[5] = 3.
  for (int axis = 4; axis <= 7; ++axis) {
    const int expected = (components == 3 && axis == 5) ? 3 : 1;
    if (extent(axis) != expected) return {};
  }
  l.datatype = load<std::int16_t>(h, 70, l.swap);
  const std::size_t bytes = datatype_bytes(l.datatype);
  if (bytes == 0 || load<std::int16_t>(h, 72, l.swap) != std::int16_t(8 * bytes)) return {};
  const float vox = load<float>(h, 108, l.swap);
  if (!(vox >= float(kNiftiPrefixBytes)) || vox > 1e15f || vox != std::floor(vox)) return {};
  l.vox_offset = std::uint64_t(vox);
  // As niftilib and ITK: non-finite scale fields read as 0, a zero slope means no scaling.
  auto finite_or_zero = [](float v) { return std::isfinite(v) ? double(v) : 0.0; };
  l.slope = finite_or_zero(load<float>(h, 112, l.swap));
  l.inter = finite_or_zero(load<float>(h, 116, l.swap));
  if (l.slope == 0.0) l.slope = 1.0;
  l.rescale = !(l.slope == 1.0 && l.inter == 0.0);
  return l;
}

// Raw values of T (file byte order) -> float, as ITK converts them; the first voxel whose
// integer cannot be held exactly is reported (the lowest index, whatever the thread count).
template <class T>
void convert_values(const unsigned char* raw, float* dst, std::size_t n, const NiftiLayout& l,
                    const Geometry& g, index_t first_voxel, const std::string& path) {
  constexpr bool check = std::is_integral_v<T> && std::numeric_limits<T>::digits > 24;
  std::int64_t bad = std::numeric_limits<std::int64_t>::max();
#pragma omp parallel for schedule(static) reduction(min : bad)
  for (std::int64_t i = 0; i < std::int64_t(n); ++i) {
    T v = load<T>(raw, std::size_t(i) * sizeof(T), l.swap);
    if constexpr (check) {
      if (!fits_float_exactly(v)) {
        bad = std::min(bad, i);
        continue;
      }
    }
    float x = static_cast<float>(v);
    if (l.rescale) x = static_cast<float>(static_cast<double>(x) * l.slope + l.inter);
    dst[i] = x;
  }
  if constexpr (check) {
    if (bad != std::numeric_limits<std::int64_t>::max())
      throw_inexact_integer(path, g, first_voxel + index_t(bad),
                            load<T>(raw, std::size_t(bad) * sizeof(T), l.swap));
  }
}

}  // namespace

bool read_nifti_planes(const std::string& path, const Geometry& g, int components, index_t z0,
                       index_t nz, float* dst) {
  const std::string ext = extension_of(path);
  if (ext != ".nii" && ext != ".nii.gz") return false;
  ContentReader content(path);
  unsigned char header[kNifti1HeaderBytes];
  content.read(0, sizeof header, header);
  const std::optional<NiftiLayout> layout = parse_layout(header, g, components);
  if (!layout) return false;
  const std::size_t plane = std::size_t(g.size.x) * std::size_t(g.size.y);
  const std::size_t slab = plane * std::size_t(nz);
  const std::size_t value_bytes = datatype_bytes(layout->datatype);
  HostBytes raw(slab * value_bytes, path);
  for (int c = 0; c < components; ++c) {
    const std::uint64_t first = std::uint64_t(c) * std::uint64_t(g.voxel_count()) +
                                std::uint64_t(z0) * plane;
    content.read(layout->vox_offset + first * value_bytes, raw.size(), raw.data());
    float* out = dst + std::size_t(c) * slab;
    const index_t first_voxel = z0 * index_t(plane);
    dispatch_datatype(layout->datatype, [&](auto tag) {
      convert_values<decltype(tag)>(raw.data(), out, slab, *layout, g, first_voxel, path);
    });
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
namespace {

// The values [first, first + n) of component c (linear voxel indices of the whole grid, x
// fastest) in the file's pixel type, converted into `out`. They come from the part's own volume
// below plane z1 and from the following planes above; device volumes are copied through `staging`.
void convert_range(const NiftiPart& part, const std::string& path, int c, std::uint64_t first,
                   std::uint64_t n, unsigned char* out, std::vector<float>& staging) {
  const Geometry& g = part.planes->geometry();
  const std::uint64_t plane = std::uint64_t(g.size.x) * std::uint64_t(g.size.y);
  const std::size_t value = size_of(part.pixel_type);
  while (n > 0) {
    const index_t z = index_t(first / plane);
    const bool own = z < part.z1;
    const Volume<float>* source = own ? part.planes : part.following;
    // The source's planes from z on: up to z1 for the part's own volume, to its end for the next.
    const index_t source_end =
        source == nullptr ? z : own ? part.z1 : source->box().lo.z + source->box().size.z;
    if (source == nullptr || source->box().lo.z > z || source_end <= z ||
        source->box().lo.z + source->box().size.z < source_end)
      throw_error(ErrorKind::Internal, path, "the planes of a gzip member are not at hand");
    const std::uint64_t m = std::min(n, std::uint64_t(source_end) * plane - first);
    const float* src = source->data() + std::size_t(c) * std::size_t(source->voxel_count()) +
                       std::size_t(first - std::uint64_t(source->box().lo.z) * plane);
    if (source->space() != MemorySpace::Host) {
      staging.resize(std::size_t(m));
      copy_bytes(staging.data(), MemorySpace::Host, src, source->space(), std::size_t(m) * sizeof(float));
      src = staging.data();
    }
    dispatch(part.pixel_type, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, float>) {
        std::memcpy(out, src, std::size_t(m) * sizeof(float));
      } else {
        convert_from_float<T>(src, reinterpret_cast<T*>(out), std::size_t(m), part.conversion, g,
                              index_t(first), path);
      }
    });
    out += std::size_t(m) * value;
    first += m;
    n -= m;
  }
}

// The planes [z0, z0 + nz) of component c, converted as convert_range does.
void convert_planes(const NiftiPart& part, const std::string& path, int c, index_t z0, index_t nz,
                    unsigned char* out, std::vector<float>& staging) {
  const std::uint64_t plane = std::uint64_t(part.planes->geometry().size.x) *
                              std::uint64_t(part.planes->geometry().size.y);
  convert_range(part, path, c, std::uint64_t(z0) * plane, std::uint64_t(nz) * plane, out, staging);
}

// Asks the kernel to start writing [offset, offset + bytes) of fd to disk now, without waiting
// (Linux sync_file_range): the disk works while the next members are compressed, and the fsync
// at commit waits for what remains instead of the whole file. Advice only: errors are left to
// the fsync, which reports them.
void start_writeback(int fd, std::uint64_t offset, std::size_t bytes) {
#ifdef __linux__
  (void)::sync_file_range(fd, off64_t(offset), off64_t(bytes), SYNC_FILE_RANGE_WRITE);
#else
  (void)fd, (void)offset, (void)bytes;
#endif
}

[[noreturn]] void write_failed(const std::string& path, int error) {
  throw_error(ErrorKind::Io, path, std::string("writing failed (disk full?): ") + std::strerror(error));
}

}  // namespace

void pwrite_all(int fd, const void* data, std::size_t bytes, std::uint64_t offset,
                const std::string& path) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t put = ::pwrite(fd, p, bytes, off_t(offset));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) write_failed(path, put == 0 ? ENOSPC : errno);
    p += put;
    bytes -= std::size_t(put);
    offset += std::uint64_t(put);
  }
}

index_t gzip_part_end(const Geometry& g, PixelType pixel_type, index_t z0, index_t z1) {
  const std::size_t plane = std::size_t(g.size.x) * std::size_t(g.size.y) * size_of(pixel_type);
  const index_t k = plane_member_layout(plane).planes_per_member;
  const index_t last_start = ((z1 - 1) / k) * k;  // the last member start at or before z1 - 1
  if (last_start < z0) return z1;                  // no member starts in the part
  return std::min(g.size.z, last_start + k);
}

// .nii: slabs of 16 MiB converted and written at their offsets by all cores (page-cache writes of
// tens of GB are memory-bound; one writer thread reaches a fraction of the bandwidth).
void write_plain_part(int fd, const std::string& path, const NiftiPart& part) {
  const Geometry& g = part.planes->geometry();
  const std::size_t plane = std::size_t(g.size.x) * std::size_t(g.size.y);
  const std::size_t value = size_of(part.pixel_type);
  const index_t slab_planes = std::max<index_t>(1, index_t((std::size_t(16) << 20) / (plane * value)));
  const index_t planes = part.z1 - part.z0;
  const index_t slabs_per_component = (planes + slab_planes - 1) / slab_planes;
  const std::int64_t slabs = std::int64_t(slabs_per_component) * part.planes->components();
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(slabs));
#pragma omp parallel
  {
    std::vector<float> staging;
    std::vector<unsigned char> converted;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t k = 0; k < slabs; ++k) {
      try {
        const int c = int(k / slabs_per_component);
        const index_t z0 = part.z0 + (k % slabs_per_component) * slab_planes;
        const index_t nz = std::min(slab_planes, part.z1 - z0);
        converted.resize(std::size_t(nz) * plane * value);
        convert_planes(part, path, c, z0, nz, converted.data(), staging);
        const std::uint64_t at = kNiftiPrefixBytes +
                                 (std::uint64_t(c) * std::uint64_t(g.voxel_count()) +
                                  std::uint64_t(z0) * plane) * value;
        pwrite_all(fd, converted.data(), converted.size(), at, path);
        start_writeback(fd, at, converted.size());
      } catch (...) {
        errors[std::size_t(k)] = std::current_exception();
      }
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

// .nii.gz: the members of components [c0, c1) that start in planes [z0, z1), on the grid of
// plane_member_layout: each fill converts its own member's values (straight from the device for
// device volumes), so that conversion and compression run on all cores, and write_gzip_members
// writes each batch while the next is compressed.
std::uint64_t compress_gzip_part(const std::string& path, const unsigned char* prefix, const NiftiPart& part,
                                 int c0, int c1, int level, const MemberPut& put) {
  const Geometry& g = part.planes->geometry();
  const std::size_t value = size_of(part.pixel_type);
  const std::size_t plane_bytes = std::size_t(g.size.x) * std::size_t(g.size.y) * value;
  const PlaneMemberLayout layout = plane_member_layout(plane_bytes);
  const index_t k = layout.planes_per_member;
  struct Member {
    int c;                   // its component
    index_t z;               // its first plane
    std::size_t at, bytes;   // its data: bytes from byte `at` of plane z on (whole planes, or a piece)
  };
  std::vector<Member> members;  // file order: the components one after the other
  for (int c = c0; c < c1; ++c)
    for (index_t start = ((part.z0 + k - 1) / k) * k; start < part.z1; start += k) {
      if (plane_bytes <= layout.piece_bytes) {
        members.push_back({c, start, 0, std::size_t(std::min(k, g.size.z - start)) * plane_bytes});
        continue;
      }
      for (std::size_t at = 0; at < plane_bytes; at += layout.piece_bytes)
        members.push_back({c, start, at, std::min(layout.piece_bytes, plane_bytes - at)});
    }
  const std::uint64_t plane = std::uint64_t(g.size.x) * std::uint64_t(g.size.y);
  auto first_value = [&](const Member& m) { return std::uint64_t(m.z) * plane + m.at / value; };
  std::vector<std::vector<float>> staging(std::size_t(std::max(1, omp_get_max_threads())));
  const MemberFill fill = [&](std::size_t j, unsigned char* raw) {
    const Member& m = members[j];
    std::size_t head = 0;
    if (prefix != nullptr && m.c == 0 && m.z == 0 && m.at == 0) {  // the header goes in front of the first member
      std::memcpy(raw, prefix, kNiftiPrefixBytes);
      head = kNiftiPrefixBytes;
    }
    convert_range(part, path, m.c, first_value(m), m.bytes / value, raw + head,
                  staging[std::size_t(omp_get_thread_num())]);
    return head + m.bytes;
  };
  return write_gzip_members(members.size(), layout.piece_bytes + kNiftiPrefixBytes, level, fill, put, path);
}

void write_nifti_data(const std::string& final_path, const std::string& temp_path,
                      const unsigned char* prefix, const Volume<float>& volume,
                      PixelType pixel_type, IntegerConversion conversion) {
  // StagedFile created the temporary exclusively; O_NOFOLLOW: never write through a link.
  Fd file;
  file.fd = ::open(temp_path.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
  if (file.fd < 0)
    throw_error(ErrorKind::Io, final_path, std::string("cannot create the file: ") + std::strerror(errno));
  PhaseClock clock;
  // One process owns every plane: the part of rank 0 of 1 (the bytes P processes write together).
  NiftiPart part;
  part.planes = &volume;
  part.z0 = 0;
  part.z1 = volume.geometry().size.z;
  part.pixel_type = pixel_type;
  part.conversion = conversion;
  if (gzip_name(final_path)) {
    // All components in one stream of members: the writes of one batch overlap the compression
    // of the next across component boundaries too.
    compress_gzip_part(final_path, prefix, part, 0, volume.components(), default_compression_level(),
                       [&](std::size_t, const unsigned char* member, std::size_t bytes, std::uint64_t offset) {
                         pwrite_all(file.fd, member, bytes, offset, final_path);
                         start_writeback(file.fd, offset, bytes);
                       });
  } else {
    pwrite_all(file.fd, prefix, kNiftiPrefixBytes, 0, final_path);
    write_plain_part(file.fd, final_path, part);
  }
  const int fd = file.fd;
  file.fd = -1;
  if (::close(fd) != 0) write_failed(final_path, errno);
  clock.mark("voxel data of " + final_path + " converted, compressed and written");
}

}  // namespace gigareg::io_detail
