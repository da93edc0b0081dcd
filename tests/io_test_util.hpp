#pragma once
// Helpers for the I/O tests: a scratch directory, small synthetic volumes, ITK's own reader as the
// reference, and an expectation that a call throws gigareg::Error of a given kind naming a path.

#include <gtest/gtest.h>
#include <itkImageFileReader.h>
#include <nifti1.h>  // ITK's bundled copy of the NIfTI-1 header definition
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/io.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents at the end of the scope.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/gigareg-io-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Names of the entries in the directory (hidden ones included), sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// A NIfTI-1 header for a single-file (.nii) scalar image: identity qform (code 1), 1 mm voxels,
/// data right after the 4-byte extension flag (vox_offset 352).
inline nifti_1_header nifti_header(short nx, short ny, short nz, short datatype, short bitpix) {
  nifti_1_header h;
  std::memset(&h, 0, sizeof(h));
  h.sizeof_hdr = 348;
  const short dims[8] = {3, nx, ny, nz, 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) {
    h.dim[i] = dims[i];
    h.pixdim[i] = 1.0f;
  }
  h.datatype = datatype;
  h.bitpix = bitpix;
  h.vox_offset = 352.0f;
  h.scl_slope = 1.0f;
  h.xyzt_units = NIFTI_UNITS_MM;
  h.qform_code = NIFTI_XFORM_SCANNER_ANAT;
  std::memcpy(h.magic, "n+1\0", 4);
  return h;
}

/// The bytes of a .nii file: header, a zero extension flag, then `data`.
inline std::string nifti_file(const nifti_1_header& h, const std::string& data) {
  std::string bytes(reinterpret_cast<const char*>(&h), sizeof(h));
  bytes += std::string(4, '\0');
  return bytes + data;
}

/// An oblique, anisotropic geometry (a rotation about all three axes).
inline Geometry oblique_geometry(Index3 size) {
  const double ax = 0.3, ay = -0.2, az = 0.7;
  const double cx = std::cos(ax), sx = std::sin(ax), cy = std::cos(ay), sy = std::sin(ay),
               cz = std::cos(az), sz = std::sin(az);
  const Mat3d rx{{1, 0, 0, 0, cx, -sx, 0, sx, cx}};
  const Mat3d ry{{cy, 0, sy, 0, 1, 0, -sy, 0, cy}};
  const Mat3d rz{{cz, -sz, 0, sz, cz, 0, 0, 0, 1}};
  Geometry g;
  g.size = size;
  g.spacing = {0.86, 1.1, 2.4};
  g.origin = {-97.3, 120.1, -35.5};
  g.direction = rz * ry * rx;
  return g;
}

/// Random floats (uniform in [lo, hi)) or, with `integers`, random integers in [lo, hi].
inline Volume<float> random_volume(const Geometry& g, int components, double lo, double hi,
                                   bool integers, unsigned seed = 7) {
  Volume<float> v(g, components);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::uniform_int_distribution<long long> ui((long long)lo, (long long)hi);
  for (index_t i = 0; i < v.element_count(); ++i)
    v.data()[i] = integers ? float(ui(rng)) : float(u(rng));
  return v;
}

/// Bitwise equality of two host volumes' elements; reports the first difference.
inline ::testing::AssertionResult same_voxels(const Volume<float>& a, const Volume<float>& b) {
  if (a.element_count() != b.element_count())
    return ::testing::AssertionFailure() << "element counts differ: " << a.element_count() << " vs "
                                         << b.element_count();
  for (index_t i = 0; i < a.element_count(); ++i)
    if (std::memcmp(&a.data()[i], &b.data()[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure() << "element " << i << " differs: " << a.data()[i]
                                           << " vs " << b.data()[i];
  return ::testing::AssertionSuccess();
}

/// Geometry equality with a message.
inline ::testing::AssertionResult same_geometry(const Geometry& a, const Geometry& b,
                                                double tolerance = 0.0) {
  bool ok = a.size == b.size;
  for (int i = 0; i < 3 && ok; ++i)
    ok = std::abs(a.spacing[i] - b.spacing[i]) <= tolerance &&
         std::abs(a.origin[i] - b.origin[i]) <= tolerance;
  for (int i = 0; i < 9 && ok; ++i) ok = std::abs(a.direction.m[i] - b.direction.m[i]) <= tolerance;
  if (ok) return ::testing::AssertionSuccess();
  auto dir = [](const Geometry& g) {
    std::string s;
    for (double d : g.direction.m) s += std::to_string(d) + " ";
    return s;
  };
  return ::testing::AssertionFailure() << a.describe() << " dir " << dir(a) << "\n vs "
                                       << b.describe() << " dir " << dir(b);
}

/// The geometry ITK's image reports.
template <class ImageT>
Geometry geometry_of(const ImageT& image) {
  Geometry g;
  for (unsigned a = 0; a < 3; ++a) {
    g.size[int(a)] = index_t(image.GetLargestPossibleRegion().GetSize(a));
    g.spacing[int(a)] = image.GetSpacing()[a];
    g.origin[int(a)] = image.GetOrigin()[a];
    for (unsigned c = 0; c < 3; ++c) g.direction(int(a), int(c)) = image.GetDirection()(a, c);
  }
  return g;
}

/// ITK's own reading of `path` as itk::Image<float,3>.
inline itk::Image<float, 3>::Pointer itk_read_float(const std::string& path) {
  register_itk_io_factories();
  auto reader = itk::ImageFileReader<itk::Image<float, 3>>::New();
  reader->SetFileName(path);
  reader->Update();
  return reader->GetOutput();
}

/// Runs `f`, expects gigareg::Error of `kind` whose what() names `path` and contains `needle`.
inline ::testing::AssertionResult throws_error(const std::function<void()>& f, ErrorKind kind,
                                               const std::string& path,
                                               const std::string& needle = "") {
  try {
    f();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (e.kind() != kind)
      return ::testing::AssertionFailure() << "kind '" << to_string(e.kind()) << "', expected '"
                                           << to_string(kind) << "': " << what;
    if (what.find(path) == std::string::npos)
      return ::testing::AssertionFailure() << "message does not name " << path << ": " << what;
    if (!needle.empty() && what.find(needle) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks '" << needle << "': " << what;
    std::cout << "  [error as expected] " << what << "\n";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-gigareg exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace gigareg::testing
