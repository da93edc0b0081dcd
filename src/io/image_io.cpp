// Scalar images and displacement fields through ITK's ImageIO classes.
//
// Reading uses the ImageIO directly rather than itk::ImageFileReader so that the voxels land in
// the Volume's own buffer: the file's values are read into the start of the float buffer and
// widened to float in place (back to front, so no value is overwritten before it is read). The
// geometry is assembled from the ImageIO exactly as ImageFileReader<itk::Image<float,3>> does it
// (missing axes get size 1, spacing 1, origin 0 and an identity direction column); the tests
// compare both, value for value, with ImageFileReader's output.

#include <itkImageFileWriter.h>
#include <itkImageIOBase.h>
#include <itkImageIOFactory.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <type_traits>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "gigareg/memory.hpp"
#include "io/io_internal.hpp"
#include "io/nifti_data.hpp"
#include "io/pixel_convert.hpp"
#include "io/zarr.hpp"

namespace gigareg {

using io_detail::dispatch;
using io_detail::extension_of;
using io_detail::format_index;
using io_detail::integer_type;
using io_detail::itk_message;
using io_detail::StagedFile;
using io_detail::to_integer;

const char* to_string(PixelType type) {
  switch (type) {
    case PixelType::UInt8: return "uint8";
    case PixelType::Int8: return "int8";
    case PixelType::UInt16: return "uint16";
    case PixelType::Int16: return "int16";
    case PixelType::UInt32: return "uint32";
    case PixelType::Int32: return "int32";
    case PixelType::UInt64: return "uint64";
    case PixelType::Int64: return "int64";
    case PixelType::Float32: return "float32";
    case PixelType::Float64: return "float64";
  }
  return "unknown";
}

std::size_t size_of(PixelType type) {
  switch (type) {
    case PixelType::UInt8:
    case PixelType::Int8: return 1;
    case PixelType::UInt16:
    case PixelType::Int16: return 2;
    case PixelType::UInt32:
    case PixelType::Int32:
    case PixelType::Float32: return 4;
    case PixelType::UInt64:
    case PixelType::Int64:
    case PixelType::Float64: return 8;
  }
  return 0;
}

bool is_integer(PixelType type) { return type != PixelType::Float32 && type != PixelType::Float64; }

namespace {

PixelType pixel_type_of(const itk::ImageIOBase& io, const std::string& path) {
  using C = itk::IOComponentEnum;
  switch (io.GetComponentType()) {
    case C::UCHAR: return integer_type<unsigned char>();
    case C::CHAR: return integer_type<signed char>();  // ITK's CHAR is signed
    case C::USHORT: return integer_type<unsigned short>();
    case C::SHORT: return integer_type<short>();
    case C::UINT: return integer_type<unsigned int>();
    case C::INT: return integer_type<int>();
    case C::ULONG: return integer_type<unsigned long>();
    case C::LONG: return integer_type<long>();
    case C::ULONGLONG: return integer_type<unsigned long long>();
    case C::LONGLONG: return integer_type<long long>();
    case C::FLOAT: return PixelType::Float32;
    case C::DOUBLE: return PixelType::Float64;
    default: break;
  }
  throw_error(ErrorKind::InvalidInput, path,
              std::string("unsupported pixel component type '") +
                  itk::ImageIOBase::GetComponentTypeAsString(io.GetComponentType()) + "'");
}

std::size_t checked_mul(std::size_t a, std::size_t b, const std::string& path) {
  std::size_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw_error(ErrorKind::OutOfMemory, path, "the image needs more than 2^64 bytes");
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reading

struct OpenedImage {
  itk::ImageIOBase::Pointer io;
  ImageHeader header;
};

OpenedImage open_image(const std::string& path) {
  register_itk_io_factories();
  io_detail::require_readable_file(path);
  itk::ImageIOBase::Pointer io;
  try {
    io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::InvalidInput, path, "cannot identify the file format: " + itk_message(e));
  }
  if (!io)
    throw_error(ErrorKind::InvalidInput, path,
                "not an image file ITK can read (no NIfTI, NRRD, MetaImage or PNG reader "
                "recognises its name and header)");
  io->SetFileName(path);
  const std::string reader = io->GetNameOfClass();
  if (reader == "NiftiImageIO") io_detail::check_nifti_header(path);  // before ITK: bad fields crash it
  if (reader == "MetaImageIO") io_detail::check_metaimage_header(path);  // or hang it
  if (reader == "PNGImageIO") io_detail::check_png(path);                // or abort it
  try {
    io->ReadImageInformation();
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::InvalidInput, path, "cannot read the image header: " + itk_message(e));
  } catch (const std::exception& e) {
    throw_error(ErrorKind::InvalidInput, path, std::string("cannot read the image header: ") + e.what());
  }

  ImageHeader h;
  const unsigned dims = io->GetNumberOfDimensions();
  if (dims < 1) throw_error(ErrorKind::InvalidInput, path, "the header declares no image axes");
  h.dimensions = int(dims);
  h.components = int(io->GetNumberOfComponents());
  h.pixel_type = pixel_type_of(*io, path);
  // As ImageFileReader<itk::Image<float,3>>::GenerateOutputInformation: axes the file lacks get
  // size 1, spacing 1, origin 0 and an identity direction column; axes beyond the third are
  // dropped from the geometry (and counted as volumes).
  Geometry& g = h.geometry;
  for (unsigned i = 0; i < 3; ++i) {
    if (i < dims) {
      g.size[int(i)] = index_t(io->GetDimensions(i));
      g.spacing[int(i)] = io->GetSpacing(i);
      g.origin[int(i)] = io->GetOrigin(i);
      const std::vector<double> axis = io->GetDirection(i);
      for (unsigned j = 0; j < 3; ++j)
        g.direction(int(j), int(i)) = (j < dims && j < axis.size()) ? axis[j] : 0.0;
    } else {
      g.size[int(i)] = 1;
      g.spacing[int(i)] = 1.0;
      g.origin[int(i)] = 0.0;
      for (unsigned j = 0; j < 3; ++j) g.direction(int(j), int(i)) = (i == j) ? 1.0 : 0.0;
    }
  }
  h.volumes = 1;
  for (unsigned i = 3; i < dims; ++i) {
    const index_t extent = index_t(io->GetDimensions(i));
    if (extent <= 0 || __builtin_mul_overflow(h.volumes, extent, &h.volumes))
      throw_error(ErrorKind::InvalidInput, path,
                  "the size along axis " + std::to_string(i) + " is unusable");
  }
  g.validate(path);
  return {io, h};
}

// Values of T (at most 4 bytes) sit packed at the start of `buffer`; widen them to float in place.
// Back to front: float i occupies bytes [4i, 4i+4), which only overlap values i' >= i.
template <class T>
void widen_in_place(void* buffer, index_t n, const Geometry& g, const std::string& path) {
  static_assert(sizeof(T) <= sizeof(float));
  auto* bytes = static_cast<unsigned char*>(buffer);
  constexpr bool check = std::is_integral_v<T> && std::numeric_limits<T>::digits > 24;
  for (index_t i = n; i-- > 0;) {
    T v;
    std::memcpy(&v, bytes + std::size_t(i) * sizeof(T), sizeof(T));
    if constexpr (check) {
      if (!io_detail::fits_float_exactly(v)) io_detail::throw_inexact_integer(path, g, i, v);
    }
    const float f = static_cast<float>(v);
    std::memcpy(bytes + std::size_t(i) * sizeof(float), &f, sizeof(float));
  }
}

// Values of an 8-byte T in `src` -> float in `dst`.
template <class T>
void narrow(const T* src, float* dst, index_t n, const Geometry& g, const std::string& path) {
  for (index_t i = 0; i < n; ++i) {
    const T v = src[i];
    if constexpr (std::is_integral_v<T>) {
      if (!io_detail::fits_float_exactly(v)) io_detail::throw_inexact_integer(path, g, i, v);
    }
    dst[i] = static_cast<float>(v);
  }
}

// No operation of gigareg can use an infinite voxel (it spreads to NaN through interpolation and
// every sum). They come from a NIfTI scl_slope / scl_inter that scales stored values beyond
// float32's range (ITK applies it without a check), or from a float file holding them.
void reject_infinite(const float* v, index_t n, const Geometry& g, index_t z0, const std::string& path) {
  for (index_t i = 0; i < n; ++i)
    if (std::isinf(v[i]))
      throw_error(ErrorKind::InvalidInput, path,
                  "voxel " + format_index(g, z0 * g.size.x * g.size.y + i) + " is " +
                      (v[i] > 0 ? "+" : "-") +
                      "infinite (a NIfTI scl_slope / scl_inter scaling the stored value beyond the "
                      "float32 range, or an infinite value in the file); gigareg needs finite voxels");
}

using HostBuffer = std::unique_ptr<void, void (*)(void*)>;

HostBuffer allocate_host(std::size_t bytes, const std::string& path) {
  return HostBuffer(allocate_bytes(bytes, MemorySpace::Host, path),
                    [](void* p) { free_bytes(p, MemorySpace::Host); });
}

void read_region(itk::ImageIOBase& io, const itk::ImageIORegion& region, void* buffer,
                 const std::string& path);

void read_voxels(itk::ImageIOBase& io, void* buffer, const std::string& path) {
  const unsigned dims = io.GetNumberOfDimensions();
  itk::ImageIORegion region(dims);
  for (unsigned i = 0; i < dims; ++i) {
    region.SetIndex(i, 0);
    region.SetSize(i, io.GetDimensions(i));
  }
  read_region(io, region, buffer, path);
}

void read_region(itk::ImageIOBase& io, const itk::ImageIORegion& region, void* buffer,
                 const std::string& path) {
  try {
    io.SetIORegion(region);
    io.Read(buffer);
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::Io, path,
                "reading the voxel data failed (truncated or corrupt file?): " + itk_message(e));
  } catch (const std::bad_alloc&) {
    throw_error(ErrorKind::OutOfMemory, path, "ITK ran out of memory reading the voxel data");
  } catch (const std::exception& e) {
    throw_error(ErrorKind::Io, path, std::string("reading the voxel data failed: ") + e.what());
  }
}

// Host Volume<float> of a box of the grid g, with allocation errors naming the file.
Volume<float> allocate_volume(const Geometry& g, const Box& box, int components,
                              const std::string& path) {
  try {
    return Volume<float>(g, box, components, MemorySpace::Host);
  } catch (const Error& e) {
    throw_error(e.kind(), path, e.problem());
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

void require_single_file_format(const std::string& path) {
  const std::string ext = extension_of(path);
  if (ext == ".mhd" || ext == ".nhdr" || ext == ".hdr" || ext == ".img" || ext == ".img.gz" ||
      ext == ".hdr.gz")
    throw_error(ErrorKind::InvalidArgument, path,
                "'" + ext + "' is a two-file format, which gigareg does not write (a write must "
                "appear under its final name in one rename); use .nii.gz, .nii, .nrrd or .mha");
}

itk::ImageIOBase::Pointer writer_io(const StagedFile& staged) {
  itk::ImageIOBase::Pointer io;
  try {
    io = itk::ImageIOFactory::CreateImageIO(staged.temp_path().c_str(), itk::IOFileModeEnum::WriteMode);
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::InvalidArgument, staged.final_path(), "no image writer: " + itk_message(e));
  }
  if (!io)
    throw_error(ErrorKind::InvalidArgument, staged.final_path(),
                "no ITK image writer handles the extension '" + extension_of(staged.final_path()) +
                    "' (use .nii.gz, .nii, .nrrd, .mha or .png)");
  return io;
}

// Some ITK writers (NIfTI, MetaImage) return normally when the disk fills up or a write fails:
// read the temporary's header back and check that all the voxel data is there.
void verify_written(const StagedFile& staged) {
  const io_detail::WriterName name = staged.writer_name();
  const std::string& tmp = name.path();
  itk::ImageIOBase::Pointer io;
  try {
    io = itk::ImageIOFactory::CreateImageIO(tmp.c_str(), itk::IOFileModeEnum::ReadMode);
    if (io) {
      io->SetFileName(tmp);
      io->ReadImageInformation();
    }
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::Io, staged.final_path(),
                "the written file cannot be read back (disk full?): " + itk_message(e));
  }
  if (!io)
    throw_error(ErrorKind::Io, staged.final_path(),
                "the written file cannot be read back (disk full?)");
  try {
    io_detail::check_data_complete(tmp, *io, /*verify=*/false);  // its own output: length only
  } catch (const Error& e) {
    throw_error(ErrorKind::Io, staged.final_path(),
                "the write was incomplete (disk full or file size limit?): " + e.problem());
  }
}

// ITK writes `image` to the staged file's temporary (compressed when the final name ends in .gz).
template <class ImageT>
void write_itk_temporary(ImageT* image, const StagedFile& staged) {
  const itk::ImageIOBase::Pointer io = writer_io(staged);
  try {
    // Never through the temporary's name in the destination: someone with write access there
    // could swap it for a link between its creation and ITK's opening it (WriterName).
    const io_detail::WriterName name = staged.writer_name();
    auto writer = itk::ImageFileWriter<ImageT>::New();
    writer->SetFileName(name.path());
    writer->SetImageIO(io);
    writer->SetInput(image);
    const std::string ext = extension_of(staged.final_path());
    writer->SetUseCompression(ext.size() > 3 && ext.compare(ext.size() - 3, 3, ".gz") == 0);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::Io, staged.final_path(), "writing failed: " + itk_message(e));
  } catch (const std::bad_alloc&) {
    throw_error(ErrorKind::OutOfMemory, staged.final_path(), "ITK ran out of memory writing the image");
  } catch (const std::exception& e) {
    throw_error(ErrorKind::Io, staged.final_path(), std::string("writing failed: ") + e.what());
  }
}

template <class ImageT>
void write_itk_image(ImageT* image, StagedFile& staged) {
  write_itk_temporary(image, staged);
  verify_written(staged);
  staged.commit();
}

// ---------------------------------------------------------------------------------------------
// NIfTI written directly (src/io/nifti_data.cpp): ITK writes the header, gigareg the data.

// NIfTI-1 holds sizes up to 32767; the direct path also needs two planes for the header probe.
bool direct_nifti_write(const std::string& path, const Geometry& g) {
  const std::string ext = extension_of(path);
  return (ext == ".nii" || ext == ".nii.gz") && g.size.z >= 2 && g.size.x <= 32767 &&
         g.size.y <= 32767 && g.size.z <= 32767;
}

// The header and extension flag that ITK writes for an image of grid g: ITK writes a two-plane
// image of the same spacing, origin, direction, pixel type and components (uncompressed, a
// hidden temporary beside `path`, removed at once), and dim[3] is set to the real plane count.
// Only dim[3] depends on the plane count (the test DirectNiftiMatchesItk compares whole files).
// Returns false when ITK wrote something else than a 352-byte prefix (the caller then lets ITK
// write the whole image).
template <class ImageT>
bool itk_nifti_prefix(const std::string& path, typename ImageT::Pointer probe, index_t planes,
                      unsigned char* prefix) {
  const std::string ext = extension_of(path);
  StagedFile probe_file(path.substr(0, path.size() - ext.size()) + ".nii");
  write_itk_temporary(probe.GetPointer(), probe_file);
  std::FILE* f = std::fopen(probe_file.writer_name().path().c_str(), "rb");
  if (f == nullptr) return false;
  const std::size_t got = std::fread(prefix, 1, io_detail::kNiftiPrefixBytes, f);
  std::fclose(f);
  float vox_offset = 0;
  std::memcpy(&vox_offset, prefix + 108, 4);
  std::int16_t dim3 = 0;
  std::memcpy(&dim3, prefix + 46, 2);
  if (got != io_detail::kNiftiPrefixBytes || std::memcmp(prefix + 344, "n+1", 4) != 0 ||
      vox_offset != float(io_detail::kNiftiPrefixBytes) || dim3 != 2)
    return false;
  const std::int16_t nz = std::int16_t(planes);
  std::memcpy(prefix + 46, &nz, 2);
  return true;
}

Geometry two_planes(Geometry g) {
  g.size.z = 2;
  return g;
}

}  // namespace

namespace io_detail {

bool direct_nifti_writable(const std::string& path, const Geometry& g) { return direct_nifti_write(path, g); }

bool itk_header_prefix(const std::string& path, const Geometry& g, int components,
                       PixelType pixel_type, unsigned char* prefix) {
  bool ok = false;
  if (components == 3) {
    Volume<float> zeros(two_planes(g), 3, MemorySpace::Host);
    std::fill(zeros.data(), zeros.data() + 3 * zeros.voxel_count(), 0.0f);
    ok = itk_nifti_prefix<ItkDisplacementField>(path, to_itk_displacement_field(zeros), g.size.z,
                                                prefix);
  } else {
    dispatch(pixel_type, [&](auto tag) {
      using ImageT = itk::Image<decltype(tag), 3>;
      typename ImageT::Pointer probe = ImageT::New();
      set_itk_geometry(*probe, two_planes(g));
      probe->Allocate(true);
      ok = itk_nifti_prefix<ImageT>(path, probe, g.size.z, prefix);
    });
  }
  return ok;
}

}  // namespace io_detail

namespace {

// Writes `volume` through the direct path; false (nothing written) when ITK must write it.
bool write_nifti_direct(const std::string& path, const Volume<float>& volume, PixelType pixel_type,
                        IntegerConversion conversion) {
  const Geometry& g = volume.geometry();
  if (!direct_nifti_write(path, g)) return false;
  StagedFile staged(path);  // first: its checks of the destination name the final path
  unsigned char prefix[io_detail::kNiftiPrefixBytes];
  if (!io_detail::itk_header_prefix(path, g, volume.components(), pixel_type, prefix)) return false;
  io_detail::write_nifti_data(path, staged.temp_path(), prefix, volume, pixel_type, conversion);
  staged.commit();
  return true;
}

template <class T>
void write_typed(const Volume<float>& host, StagedFile& staged, IntegerConversion conversion) {
  using ImageT = itk::Image<T, 3>;
  const std::string& path = staged.final_path();
  const Geometry& g = host.geometry();
  const index_t n = host.voxel_count();
  typename ImageT::Pointer image = ImageT::New();
  set_itk_geometry(*image, g);
  if constexpr (std::is_same_v<T, float>) {
    // The writer only reads the buffer: share it instead of copying.
    auto container = ImageT::PixelContainer::New();
    container->SetImportPointer(const_cast<float*>(host.data()), itk::SizeValueType(n), false);
    image->SetPixelContainer(container);
  } else {
    require_available(checked_mul(std::size_t(n), sizeof(T), path), MemorySpace::Host, path);
    try {
      image->Allocate();
    } catch (const std::exception&) {
      throw_error(ErrorKind::OutOfMemory, path, "cannot allocate the conversion buffer");
    }
    T* out = image->GetBufferPointer();
    const float* in = host.data();
    if constexpr (std::is_floating_point_v<T>) {
      for (index_t i = 0; i < n; ++i) out[i] = static_cast<T>(in[i]);
    } else {
      for (index_t i = 0; i < n; ++i) out[i] = to_integer<T>(in[i], conversion, g, i, path);
    }
  }
  write_itk_image(image.GetPointer(), staged);
}

// The volume itself when it is on the host, else a host copy (kept alive in `copy`).
const Volume<float>& host_volume(const Volume<float>& v, Volume<float>& copy) {
  if (v.space() == MemorySpace::Host) return v;
  copy = v.to(MemorySpace::Host);
  return copy;
}

void check_writable_volume(const Volume<float>& v, int components, const std::string& path) {
  if (v.empty()) throw_error(ErrorKind::InvalidArgument, path, "the volume to write is empty");
  if (extension_of(path) == ".png" && v.geometry().size.z != 1)
    throw_error(ErrorKind::InvalidArgument, path,
                "PNG holds 2-D images but the volume has " + std::to_string(v.geometry().size.z) +
                    " slices (ITK would silently write the first one)");
  if (v.components() != components)
    throw_error(ErrorKind::InvalidArgument, path,
                "expected a volume with " + std::to_string(components) + " component(s), got " +
                    std::to_string(v.components()) +
                    (components == 1 ? " (write displacement fields with write_displacement_field)" : ""));
  if (!(v.box() == Box{{0, 0, 0}, v.geometry().size}))
    throw_error(ErrorKind::InvalidArgument, path,
                "the volume holds only a box of its grid; write whole grids");
  try {
    v.geometry().validate(path);
  } catch (const Error& e) {
    throw_error(ErrorKind::InvalidArgument, path, e.problem());
  }
}

}  // namespace

// -----------------------------------------------------------------------------------------------
// Public entry points

ImageHeader read_image_header(const std::string& path) {
  if (io_detail::is_zarr_path(path)) return zarr::Store::open(path).header();
  return open_image(path).header;
}


namespace {

// The planes [z0, z0 + nz) (all when nz < 0) of every component of a .zarr store's level 0,
// checked and allocated as the other readers do; only the chunks under the planes are read.
/// The box of planes [z0, z0 + nz) of grid g (all planes when nz < 0); InvalidArgument naming
/// `path` when they are not a non-empty part of its planes.
Box plane_box(const std::string& path, const Geometry& g, index_t z0, index_t nz) {
  if (nz < 0) {
    z0 = 0;
    nz = g.size.z;
  }
  if (nz < 1 || z0 < 0 || z0 + nz > g.size.z)
    throw_error(ErrorKind::InvalidArgument, path,
                "planes [" + std::to_string(z0) + ", " + std::to_string(z0 + nz) +
                    ") are not a non-empty part of the image's " + std::to_string(g.size.z) + " planes");
  return {{0, 0, z0}, {g.size.x, g.size.y, nz}};
}

Image read_zarr_planes(const std::string& path, int components, index_t z0, index_t nz) {
  const zarr::Store store = zarr::Store::open(path);
  const ImageHeader& h = store.header();
  if (components == 1 && h.components != 1)
    throw_error(ErrorKind::InvalidInput, path,
                "holds a displacement field (" + std::to_string(h.components) +
                    " components per voxel); a scalar image is expected");
  if (components == 3 && h.components != 3)
    throw_error(ErrorKind::InvalidInput, path,
                "is not a 3-D displacement field: it holds a scalar image; a store with a component "
                "axis of 3 (c, z, y, x) is expected");
  if (components == 3 && h.pixel_type != PixelType::Float32 && h.pixel_type != PixelType::Float64)
    throw_error(ErrorKind::InvalidInput, path,
                std::string("displacement fields must hold float32 or float64 vectors, not ") +
                    to_string(h.pixel_type));
  const Geometry& g = h.geometry;
  const Box box = plane_box(path, g, z0, nz);
  z0 = box.lo.z, nz = box.size.z;
  // The floats, and one decoded and one stored chunk per thread.
  const std::size_t chunks = checked_mul(store.array(0).chunk_bytes(),
                                         2 * std::size_t(std::max(1, omp_get_max_threads())), path);
  std::size_t need = checked_mul(checked_mul(std::size_t(box.voxel_count()), sizeof(float), path),
                                 std::size_t(components), path);
  if (__builtin_add_overflow(need, chunks, &need))
    throw_error(ErrorKind::OutOfMemory, path, "the image needs more than 2^64 bytes");
  require_available(need, MemorySpace::Host, path);
  Volume<float> planes = allocate_volume(g, box, components, path);
  store.read_planes(0, z0, nz, planes.data());
  return {std::move(planes), h.pixel_type};
}

/// read_image of the planes [z0, z0 + nz) (the whole image when nz < 0).
Image read_scalar_planes(const std::string& path, index_t z0, index_t nz) {
  if (io_detail::is_zarr_path(path)) {
    Image image = read_zarr_planes(path, 1, z0, nz);
    const Volume<float>& v = image.voxels;
    reject_infinite(v.data(), v.voxel_count(), v.geometry(), v.box().lo.z, path);
    return image;
  }
  OpenedImage opened = open_image(path);
  const ImageHeader& h = opened.header;
  if (h.volumes != 1)
    throw_error(ErrorKind::InvalidInput, path,
                "is a " + std::to_string(h.dimensions) + "-D image holding " +
                    std::to_string(h.volumes) + " volumes of " + h.geometry.describe() +
                    "; a scalar 3-D image (one volume) is expected");
  if (h.components != 1)
    throw_error(ErrorKind::InvalidInput, path,
                "has " + std::to_string(h.components) +
                    " components per voxel (a vector, tensor or colour image); a scalar image is "
                    "expected");
  const Geometry& g = h.geometry;
  const bool whole = nz < 0 || (z0 == 0 && nz == g.size.z);
  const Box box = plane_box(path, g, z0, nz);
  z0 = box.lo.z, nz = box.size.z;
  const index_t n = box.voxel_count();
  const std::size_t disk = checked_mul(std::size_t(n), size_of(h.pixel_type), path);
  const std::size_t out = checked_mul(std::size_t(n), sizeof(float), path);
  // Peak: the float volume, a separate buffer for 8-byte values, and the copy some ImageIOs
  // (NIfTI) make of the file's data while reading.
  std::size_t need = out;
  if (__builtin_add_overflow(need, disk, &need) ||
      (size_of(h.pixel_type) > sizeof(float) && __builtin_add_overflow(need, disk, &need)))
    throw_error(ErrorKind::OutOfMemory, path, "the image needs more than 2^64 bytes");
  require_available(need, MemorySpace::Host, path);
  {
    // NIfTI-1 single files: only the slab's bytes, decoded on all cores (src/io/nifti_data.cpp);
    // ITK 5.2's reader inflates the whole file on one core.
    Volume<float> planes = allocate_volume(g, box, 1, path);
    if (io_detail::read_nifti_planes(path, g, 1, z0, nz, planes.data())) {
      reject_infinite(planes.data(), planes.voxel_count(), g, z0, path);
      return {std::move(planes), h.pixel_type};
    }
  }
  if (!whole && !opened.io->CanStreamRead()) {
    // The format's reader (NRRD, PNG) reads only whole images: read it, keep the planes.
    Image all = read_scalar_planes(path, 0, -1);
    Image slab{Volume<float>(g, box, 1, MemorySpace::Host), all.pixel_type};
    const std::size_t plane = std::size_t(g.size.x * g.size.y);
    std::memcpy(slab.voxels.data(), all.voxels.data() + std::size_t(z0) * plane,
                std::size_t(nz) * plane * sizeof(float));
    return slab;
  }
  io_detail::check_data_complete(path, *opened.io);

  Volume<float> voxels;
  try {
    voxels = Volume<float>(g, box, 1, MemorySpace::Host);
  } catch (const Error& e) {
    throw_error(e.kind(), path, e.problem());
  }
  Image image{std::move(voxels), h.pixel_type};
  // The IO region: the slab's planes along the third axis, everything else whole (a file with
  // fewer than 3 axes has one plane).
  itk::ImageIOBase& io = *opened.io;
  const unsigned dims = io.GetNumberOfDimensions();
  itk::ImageIORegion region(dims);
  for (unsigned i = 0; i < dims; ++i) {
    region.SetIndex(i, i == 2 ? itk::IndexValueType(z0) : 0);
    region.SetSize(i, i == 2 ? itk::SizeValueType(nz) : io.GetDimensions(i));
  }
  float* dst = image.voxels.data();
  dispatch(h.pixel_type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (sizeof(T) <= sizeof(float)) {
      read_region(io, region, dst, path);
      if constexpr (!std::is_same_v<T, float>) widen_in_place<T>(dst, n, g, path);
    } else {
      HostBuffer raw = allocate_host(disk, path);
      read_region(io, region, raw.get(), path);
      narrow<T>(static_cast<const T*>(raw.get()), dst, n, g, path);
    }
  });
  reject_infinite(dst, n, g, z0, path);
  return image;
}

}  // namespace

Image read_image(const std::string& path) { return read_scalar_planes(path, 0, -1); }

Image read_image_slab(const std::string& path, index_t z0, index_t nz) {
  if (nz < 1) throw_error(ErrorKind::InvalidArgument, path, "an empty slab was asked for");
  return read_scalar_planes(path, z0, nz);
}

void write_image(const std::string& path, const ScalarVolume& voxels, PixelType pixel_type,
                 IntegerConversion conversion) {
  register_itk_io_factories();
  check_writable_volume(voxels, 1, path);
  require_single_file_format(path);
  if (io_detail::is_zarr_path(path)) {  // host or device: written by rows of chunks
    zarr::write_volume(path, voxels, pixel_type, conversion);
    return;
  }
  if (write_nifti_direct(path, voxels, pixel_type, conversion)) return;
  Volume<float> copy;
  const Volume<float>& host = host_volume(voxels, copy);
  StagedFile staged(path);
  dispatch(pixel_type, [&](auto tag) { write_typed<decltype(tag)>(host, staged, conversion); });
}

void write_image(const std::string& path, const Image& image, IntegerConversion conversion) {
  write_image(path, image.voxels, image.pixel_type, conversion);
}

namespace {

/// A displacement that is NaN, infinite or beyond float32 has no meaning as a position: it would
/// turn every voxel it touches into NaN (warps, Jacobians, inverses) without an error.
[[noreturn]] void bad_displacement(double v, index_t i, int component, const Geometry& g, const std::string& path) {
  throw_error(ErrorKind::InvalidInput, path,
              "the displacement at voxel " + format_index(g, i) + " (component " + std::to_string(component) +
                  ") is " + (std::isnan(v) ? "NaN" : std::isinf(v) ? "infinite" : "beyond the float32 range") +
                  "; a displacement field must hold finite displacements");
}

void reject_nonfinite_displacements(const float* planes, index_t n, const Geometry& g, const std::string& path) {
  for (int c = 0; c < 3; ++c)
    for (index_t i = 0; i < n; ++i)
      if (!std::isfinite(planes[c * n + i])) bad_displacement(planes[c * n + i], i, c, g, path);
}

}  // namespace

DisplacementField read_displacement_field(const std::string& path) {
  if (io_detail::is_zarr_path(path)) return read_zarr_planes(path, 3, 0, -1).voxels;
  OpenedImage opened = open_image(path);
  const ImageHeader& h = opened.header;
  if (h.volumes != 1 || h.components != 3)
    throw_error(ErrorKind::InvalidInput, path,
                "is not a 3-D displacement field: it has " + std::to_string(h.components) +
                    " component(s) per voxel and " + std::to_string(h.volumes) +
                    " volume(s); 3 components and one volume are expected");
  if (h.pixel_type != PixelType::Float32 && h.pixel_type != PixelType::Float64)
    throw_error(ErrorKind::InvalidInput, path,
                std::string("displacement fields must hold float32 or float64 vectors, not ") +
                    to_string(h.pixel_type));
  const index_t n = h.geometry.voxel_count();
  const std::size_t disk = checked_mul(checked_mul(std::size_t(n), 3, path), size_of(h.pixel_type), path);
  const std::size_t out = checked_mul(std::size_t(n), 3 * sizeof(float), path);
  if (disk > ~std::size_t(0) / 2 - out)
    throw_error(ErrorKind::OutOfMemory, path, "the field needs more than 2^64 bytes");
  require_available(out + 2 * disk, MemorySpace::Host, path);

  DisplacementField field = allocate_volume(h.geometry, Box{{0, 0, 0}, h.geometry.size}, 3, path);
  // NIfTI-1 single files hold the components as planes, as the field does: read them directly.
  if (io_detail::read_nifti_planes(path, h.geometry, 3, 0, h.geometry.size.z, field.data())) {
    reject_nonfinite_displacements(field.data(), n, h.geometry, path);
    return field;
  }
  // The ITK path only: the direct reader checks lengths and CRCs as it decodes, and inflating the
  // file once more here would double the time of every warp read.
  io_detail::check_data_complete(path, *opened.io);
  HostBuffer raw = allocate_host(disk, path);
  read_voxels(*opened.io, raw.get(), path);
  float* planes = field.data();
  auto deinterleave = [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(raw.get());
    for (int c = 0; c < 3; ++c)
      for (index_t i = 0; i < n; ++i) {
        const double v = double(in[3 * i + c]);
        // Checked before the conversion: a double beyond float's range converts undefinedly.
        if (!(std::abs(v) <= double(std::numeric_limits<float>::max()))) bad_displacement(v, i, c, h.geometry, path);
        planes[c * n + i] = static_cast<float>(v);
      }
  };
  if (h.pixel_type == PixelType::Float32)
    deinterleave(float{});
  else
    deinterleave(double{});
  return field;
}

void write_displacement_field(const std::string& path, const DisplacementField& field) {
  register_itk_io_factories();
  check_writable_volume(field, 3, path);
  require_single_file_format(path);
  if (io_detail::is_zarr_path(path)) {
    zarr::write_volume(path, field, PixelType::Float32, IntegerConversion::Exact);
    return;
  }
  if (write_nifti_direct(path, field, PixelType::Float32, IntegerConversion::Exact)) return;
  Volume<float> copy;
  const Volume<float>& host = host_volume(field, copy);
  require_available(std::size_t(host.bytes()), MemorySpace::Host, path);
  StagedFile staged(path);
  ItkDisplacementField::Pointer image;
  try {
    image = to_itk_displacement_field(host);
  } catch (const std::bad_alloc&) {
    throw_error(ErrorKind::OutOfMemory, path, "cannot allocate the interleaved copy of the field");
  }
  write_itk_image(image.GetPointer(), staged);
}

}  // namespace gigareg
