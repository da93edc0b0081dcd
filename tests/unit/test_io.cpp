// ITK I/O on synthetic data: round trips of every pixel type and format, integer exactness,
// scl_slope, displacement fields in ANTs' layout, affine transform files, atomic writes, factory
// registration, and the zero-copy itk::Image adapters.
#include <gtest/gtest.h>
#include <itkAffineTransform.h>
#include <itkEuler3DTransform.h>
#include <itkImageFileWriter.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkObjectFactoryBase.h>
#include <itkTransformFileReader.h>
#include <itkTransformFileWriter.h>

#include <cstring>
#include <limits>
#include <random>
#include <thread>

#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "io_test_util.hpp"

using namespace gigareg;
using namespace gigareg::testing;

namespace {

template <class T>
void itk_write(const typename itk::Image<T, 3>::Pointer& image, const std::string& path) {
  register_itk_io_factories();
  auto writer = itk::ImageFileWriter<itk::Image<T, 3>>::New();
  writer->SetFileName(path);
  writer->SetInput(image);
  writer->Update();
}

template <class T>
typename itk::Image<T, 3>::Pointer itk_image(const Geometry& g, const std::vector<T>& values) {
  auto image = itk::Image<T, 3>::New();
  set_itk_geometry(*image, g);
  image->Allocate();
  std::copy(values.begin(), values.end(), image->GetBufferPointer());
  return image;
}

// Checks our read of `path` against ITK's own ImageFileReader<itk::Image<float,3>>: geometry and
// values identical.
void expect_same_as_itk(const std::string& path, const Image& ours) {
  const auto ref = itk_read_float(path);
  EXPECT_TRUE(same_geometry(ours.voxels.geometry(), geometry_of(*ref)));
  Volume<float> theirs = wrap_itk_image(ref.GetPointer());
  EXPECT_TRUE(same_voxels(ours.voxels, theirs));
}

int count_factories(const char* name) {
  int n = 0;
  for (auto* f : itk::ObjectFactoryBase::GetRegisteredFactories())
    if (std::strcmp(f->GetNameOfClass(), name) == 0) ++n;
  return n;
}

}  // namespace

TEST(IoPixelType, NamesSizesAndKinds) {
  EXPECT_STREQ(to_string(PixelType::UInt8), "uint8");
  EXPECT_STREQ(to_string(PixelType::Int32), "int32");
  EXPECT_STREQ(to_string(PixelType::Float64), "float64");
  EXPECT_EQ(size_of(PixelType::Int16), 2u);
  EXPECT_EQ(size_of(PixelType::UInt64), 8u);
  EXPECT_TRUE(is_integer(PixelType::Int8));
  EXPECT_FALSE(is_integer(PixelType::Float32));
}

TEST(IoFactories, RegisteredOnceFromManyThreads) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back([] { register_itk_io_factories(); });
  for (auto& t : threads) t.join();
  register_itk_io_factories();
  for (const char* name : {"NiftiImageIOFactory", "NrrdImageIOFactory", "MetaImageIOFactory",
                           "PNGImageIOFactory", "MatlabTransformIOFactory", "TxtTransformIOFactory",
                           "HDF5TransformIOFactory"})
    EXPECT_EQ(count_factories(name), 1) << name;
}

TEST(IoImage, Float32RoundTripsInEveryFormat) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({13, 11, 7});
  const Volume<float> v = random_volume(g, 1, -1000, 1000, false);
  for (const char* ext : {".nii.gz", ".nii", ".nrrd", ".mha"}) {
    SCOPED_TRACE(ext);
    const std::string path = dir.file(std::string("img") + ext);
    write_image(path, v);
    const Image back = read_image(path);
    EXPECT_EQ(back.pixel_type, PixelType::Float32);
    EXPECT_TRUE(same_voxels(back.voxels, v));
    // NIfTI stores the orientation in float32: equal to single precision, not double.
    EXPECT_TRUE(same_geometry(back.voxels.geometry(), g, 2e-5));
    expect_same_as_itk(path, back);
  }
}

TEST(IoImage, IntegerTypesRoundTripAndKeepTheirType) {
  ScratchDir dir;
  Geometry g = oblique_geometry({9, 8, 5});
  struct Case {
    PixelType type;
    double lo, hi;
  };
  const double big = double(1 << 24);
  const Case cases[] = {{PixelType::UInt8, 0, 255},           {PixelType::Int8, -128, 127},
                        {PixelType::UInt16, 0, 65535},        {PixelType::Int16, -32768, 32767},
                        {PixelType::UInt32, 0, big},          {PixelType::Int32, -big, big},
                        {PixelType::UInt64, 0, big},          {PixelType::Int64, -big, big}};
  for (const Case& c : cases) {
    for (const char* ext : {".nii.gz", ".nrrd"}) {
      SCOPED_TRACE(std::string(to_string(c.type)) + ext);
      Volume<float> v = random_volume(g, 1, c.lo, c.hi, true);
      v.data()[0] = float(c.lo);  // the extremes of the range survive exactly
      v.data()[1] = float(c.hi);
      const std::string path = dir.file(std::string("labels_") + to_string(c.type) + ext);
      write_image(path, v, c.type);
      const Image back = read_image(path);
      EXPECT_EQ(back.pixel_type, c.type);
      EXPECT_TRUE(same_voxels(back.voxels, v));
      expect_same_as_itk(path, back);
      // Written again with the remembered type, read again: still the same type and values.
      const std::string again = dir.file(std::string("again_") + to_string(c.type) + ext);
      write_image(again, back);
      const Image back2 = read_image(again);
      EXPECT_EQ(back2.pixel_type, c.type);
      EXPECT_TRUE(same_voxels(back2.voxels, v));
    }
  }
}

TEST(IoImage, IntegersBeyondFloatPrecisionAreRejected) {
  ScratchDir dir;
  Geometry g;
  g.size = {4, 3, 2};
  const std::int32_t limit = 1 << 24;
  {
    std::vector<std::int32_t> values(24, 5);
    values[0] = limit;
    values[1] = -limit;
    const std::string ok = dir.file("ok.nii.gz");
    itk_write<std::int32_t>(itk_image<std::int32_t>(g, values), ok);
    const Image img = read_image(ok);
    EXPECT_EQ(img.pixel_type, PixelType::Int32);
    EXPECT_EQ(img.voxels.data()[0], float(limit));
    EXPECT_EQ(img.voxels.data()[1], -float(limit));
  }
  {
    std::vector<std::int32_t> values(24, 5);
    values[13] = limit + 1;  // voxel (1, 0, 1)
    const std::string bad = dir.file("bad_int32.nii.gz");
    itk_write<std::int32_t>(itk_image<std::int32_t>(g, values), bad);
    EXPECT_TRUE(throws_error([&] { read_image(bad); }, ErrorKind::InvalidInput, bad, "2^24"));
    EXPECT_TRUE(throws_error([&] { read_image(bad); }, ErrorKind::InvalidInput, bad, "(1, 0, 1)"));
  }
  {
    std::vector<std::int64_t> values(24, 5);
    values[23] = -std::int64_t(limit) - 1;
    const std::string bad = dir.file("bad_int64.nrrd");
    itk_write<std::int64_t>(itk_image<std::int64_t>(g, values), bad);
    EXPECT_TRUE(throws_error([&] { read_image(bad); }, ErrorKind::InvalidInput, bad, "2^24"));
  }
  {
    std::vector<std::uint32_t> values(24, 5);
    values[2] = 4000000000u;
    const std::string bad = dir.file("bad_uint32.mha");
    itk_write<std::uint32_t>(itk_image<std::uint32_t>(g, values), bad);
    EXPECT_TRUE(throws_error([&] { read_image(bad); }, ErrorKind::InvalidInput, bad, "4000000000"));
  }
}

TEST(IoImage, Float64IsNarrowedAsItkDoes) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({6, 5, 4});
  std::vector<double> values(120);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> n(0, 1e3);
  for (double& v : values) v = n(rng);
  const std::string path = dir.file("double.nii.gz");
  itk_write<double>(itk_image<double>(g, values), path);
  const Image img = read_image(path);
  EXPECT_EQ(img.pixel_type, PixelType::Float64);
  for (std::size_t i = 0; i < values.size(); ++i) ASSERT_EQ(img.voxels.data()[i], float(values[i]));
  expect_same_as_itk(path, img);
}

TEST(IoImage, WritingIntegersChecksOrRoundsValues) {
  ScratchDir dir;
  Geometry g;
  g.size = {5, 1, 1};
  Volume<float> v(g);
  const std::string path = dir.file("labels.nii.gz");
  const float bad_values[] = {1.5f, 256.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()};
  for (float bad : bad_values) {
    v.fill(3);
    v.data()[2] = bad;
    EXPECT_TRUE(throws_error([&] { write_image(path, v, PixelType::UInt8); },
                             ErrorKind::InvalidArgument, path, "(2, 0, 0)"));
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  EXPECT_TRUE(dir.entries().empty());

  const float in[5] = {1.5f, -0.4f, 300.0f, -5.0f, std::numeric_limits<float>::quiet_NaN()};
  std::copy(in, in + 5, v.data());
  write_image(path, v, PixelType::UInt8, IntegerConversion::RoundAndClamp);
  const Image back = read_image(path);
  EXPECT_EQ(back.pixel_type, PixelType::UInt8);
  const float expected[5] = {2, 0, 255, 0, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back.voxels.data()[i], expected[i]) << i;
}

TEST(IoImage, NiftiSlopeAndInterceptAreAppliedAsItkDoes) {
  ScratchDir dir;
  nifti_1_header h = nifti_header(4, 3, 2, NIFTI_TYPE_UINT8, 8);
  h.scl_slope = 2.0078432f;
  h.scl_inter = -1.25f;
  std::string data(24, '\0');
  for (int i = 0; i < 24; ++i) data[std::size_t(i)] = char(10 * i);
  const std::string path = dir.file("scaled.nii");
  write_bytes(path, nifti_file(h, data));
  const Image img = read_image(path);
  EXPECT_EQ(img.pixel_type, PixelType::Float32);  // scaled values are not integers
  for (int i = 0; i < 24; ++i)
    EXPECT_NEAR(img.voxels.data()[i], 10.0 * i * 2.0078432 - 1.25, 1e-3) << i;
  expect_same_as_itk(path, img);
}

TEST(IoImage, PngIsReadAsASingleSlice) {
  ScratchDir dir;
  Geometry g;
  g.size = {17, 9, 1};
  const Volume<float> v = random_volume(g, 1, 0, 255, true);
  const std::string path = dir.file("slice.png");
  write_image(path, v, PixelType::UInt8);
  const Image back = read_image(path);
  EXPECT_EQ(back.pixel_type, PixelType::UInt8);
  EXPECT_EQ(back.voxels.geometry().size, g.size);
  EXPECT_TRUE(same_voxels(back.voxels, v));
  const ImageHeader h = read_image_header(path);
  EXPECT_EQ(h.dimensions, 2);
  expect_same_as_itk(path, back);
}

TEST(IoImage, HeaderReportsComponentsAndVolumes) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({5, 4, 3});
  const std::string field = dir.file("warp.nii.gz");
  write_displacement_field(field, random_volume(g, 3, -2, 2, false));
  const ImageHeader hf = read_image_header(field);
  EXPECT_EQ(hf.components, 3);
  EXPECT_EQ(hf.volumes, 1);
  EXPECT_EQ(hf.pixel_type, PixelType::Float32);
  EXPECT_TRUE(same_geometry(hf.geometry, g, 2e-5));

  const std::string label = dir.file("label.nii.gz");
  write_image(label, random_volume(g, 1, 0, 10, true), PixelType::Int16);
  const ImageHeader hl = read_image_header(label);
  EXPECT_EQ(hl.components, 1);
  EXPECT_EQ(hl.dimensions, 3);
  EXPECT_EQ(hl.pixel_type, PixelType::Int16);
}

TEST(IoAtomicWrite, LeavesOnlyTheFinalFileAndReplacesOldContents) {
  ScratchDir dir;
  Geometry g;
  g.size = {4, 4, 4};
  const Volume<float> a = random_volume(g, 1, 0, 1, false, 1);
  const Volume<float> b = random_volume(g, 1, 0, 1, false, 2);
  write_image(dir.file("a.nii.gz"), a);
  write_image(dir.file("b.mha"), a);
  write_affine_transform(dir.file("t.mat"), Mat3d::identity(), {1, 2, 3});
  write_displacement_field(dir.file("w.nii.gz"), random_volume(g, 3, -1, 1, false));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"a.nii.gz", "b.mha", "t.mat", "w.nii.gz"}));
  write_image(dir.file("a.nii.gz"), b);  // overwrite
  EXPECT_TRUE(same_voxels(read_image(dir.file("a.nii.gz")).voxels, b));
  EXPECT_EQ(dir.entries().size(), 4u);
}

TEST(IoDisplacementField, WrittenAsAntsWritesWarps) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({7, 6, 5});
  const DisplacementField u = random_volume(g, 3, -5, 5, false);
  const index_t n = u.voxel_count();
  const std::string path = dir.file("prefix1Warp.nii");
  write_displacement_field(path, u);

  // The NIfTI header: a 5-D vector image with one time point and 3 components, float32.
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), sizeof(nifti_1_header));
  nifti_1_header h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  EXPECT_EQ(h.dim[0], 5);
  EXPECT_EQ(h.dim[1], 7);
  EXPECT_EQ(h.dim[2], 6);
  EXPECT_EQ(h.dim[3], 5);
  EXPECT_EQ(h.dim[4], 1);
  EXPECT_EQ(h.dim[5], 3);
  EXPECT_EQ(h.intent_code, NIFTI_INTENT_VECTOR);
  EXPECT_EQ(h.datatype, NIFTI_TYPE_FLOAT32);
  // On disk the components are planes, like gigareg's layout: the file's data is our buffer.
  const std::size_t off = std::size_t(h.vox_offset);
  ASSERT_EQ(bytes.size(), off + std::size_t(3 * n) * sizeof(float));
  EXPECT_EQ(std::memcmp(bytes.data() + off, u.data(), std::size_t(3 * n) * sizeof(float)), 0);

  // ITK reads it as interleaved vectors, component c of voxel i = plane c at i.
  register_itk_io_factories();
  auto reader = itk::ImageFileReader<ItkDisplacementField>::New();
  reader->SetFileName(path);
  reader->Update();
  const auto* vec = reader->GetOutput()->GetBufferPointer();
  for (index_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(vec[i][unsigned(c)], u.data()[c * n + i]);

  for (const char* name : {"prefix1Warp.nii", "w.nii.gz", "w.nrrd", "w.mha"}) {
    SCOPED_TRACE(name);
    if (std::string(name) != "prefix1Warp.nii") write_displacement_field(dir.file(name), u);
    const DisplacementField back = read_displacement_field(dir.file(name));
    EXPECT_EQ(back.components(), 3);
    EXPECT_TRUE(same_voxels(back, u));
    EXPECT_TRUE(same_geometry(back.geometry(), g, 2e-5));
  }
}

TEST(IoDisplacementField, ReadsFloat64Vectors) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({4, 3, 2});
  using Field64 = itk::Image<itk::Vector<double, 3>, 3>;
  auto image = Field64::New();
  set_itk_geometry(*image, g);
  image->Allocate();
  for (int i = 0; i < 24; ++i)
    for (unsigned c = 0; c < 3; ++c) image->GetBufferPointer()[i][c] = 0.1 * i + c / 3.0;
  const std::string path = dir.file("warp64.nii.gz");
  register_itk_io_factories();
  auto writer = itk::ImageFileWriter<Field64>::New();
  writer->SetFileName(path);
  writer->SetInput(image);
  writer->Update();
  const DisplacementField u = read_displacement_field(path);
  for (int i = 0; i < 24; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(u.data()[c * 24 + i], float(0.1 * i + c / 3.0));
}

// ------------------------------------------------------------------------------------------------
// Transforms

namespace {

Mat3d random_matrix(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-0.3, 0.3);
  Mat3d m = Mat3d::identity();
  for (double& x : m.m) x += u(rng);
  return m;
}

}  // namespace

TEST(IoTransform, AffineRoundTripsInEveryFormat) {
  ScratchDir dir;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-50, 50);
  for (const char* ext : {".mat", ".txt", ".tfm", ".h5"}) {
    SCOPED_TRACE(ext);
    const Mat3d m = random_matrix(rng);
    const Vec3d t{u(rng), u(rng), u(rng)};
    const Vec3d c{u(rng), u(rng), u(rng)};
    const std::string path = dir.file(std::string("prefix0GenericAffine") + ext);
    write_affine_transform(path, m, t, c);
    const ItkAffine back = read_affine_transform(path);
    for (int i = 0; i < 9; ++i) EXPECT_DOUBLE_EQ(back.matrix.m[i], m.m[i]);
    for (int a = 0; a < 3; ++a) {
      EXPECT_DOUBLE_EQ(back.translation[a], t[a]);
      EXPECT_DOUBLE_EQ(back.center[a], c[a]);
    }
    // ITK's reader sees an AffineTransform_double_3_3 that maps points as our affine() does.
    auto reader = itk::TransformFileReaderTemplate<double>::New();
    reader->SetFileName(path);
    reader->Update();
    ASSERT_EQ(reader->GetTransformList()->size(), 1u);
    const auto* itk_t = reader->GetTransformList()->front().GetPointer();
    EXPECT_STREQ(itk_t->GetNameOfClass(), "AffineTransform");
    const auto* aff = dynamic_cast<const itk::AffineTransform<double, 3>*>(itk_t);
    ASSERT_NE(aff, nullptr);
    const Vec3d x{12.5, -40.25, 7.0};
    itk::Point<double, 3> px;
    for (unsigned a = 0; a < 3; ++a) px[a] = x[int(a)];
    const auto py = aff->TransformPoint(px);
    const Vec3d ours = back.affine()(x);
    for (unsigned a = 0; a < 3; ++a) EXPECT_NEAR(ours[int(a)], py[a], 1e-9);
  }
}

TEST(IoTransform, OffsetIsItksOffset) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-50, 50);
  ItkAffine a{random_matrix(rng), {u(rng), u(rng), u(rng)}, {u(rng), u(rng), u(rng)}};
  auto t = itk::AffineTransform<double, 3>::New();
  itk::AffineTransform<double, 3>::MatrixType m;
  itk::AffineTransform<double, 3>::InputPointType c;
  itk::AffineTransform<double, 3>::OutputVectorType tr;
  for (unsigned r = 0; r < 3; ++r) {
    c[r] = a.center[int(r)];
    tr[r] = a.translation[int(r)];
    for (unsigned k = 0; k < 3; ++k) m(r, k) = a.matrix(int(r), int(k));
  }
  t->SetCenter(c);
  t->SetMatrix(m);
  t->SetTranslation(tr);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a.offset()[i], t->GetOffset()[unsigned(i)], 1e-12);
}

TEST(IoTransform, ReadsAntsMatrixOffsetFloatAndEulerFiles) {
  ScratchDir dir;
  register_itk_io_factories();
  std::mt19937_64 rng(17);
  const Mat3d m = random_matrix(rng);
  {  // ANTs' prefix0GenericAffine.mat: MatrixOffsetTransformBase_double_3_3
    using MOTB = itk::MatrixOffsetTransformBase<double, 3, 3>;
    auto t = MOTB::New();
    MOTB::MatrixType mm;
    MOTB::InputPointType c;
    MOTB::OutputVectorType tr;
    for (unsigned r = 0; r < 3; ++r) {
      c[r] = 10.0 * r - 3;
      tr[r] = 1.5 * r + 0.25;
      for (unsigned k = 0; k < 3; ++k) mm(r, k) = m(int(r), int(k));
    }
    t->SetCenter(c);
    t->SetMatrix(mm);
    t->SetTranslation(tr);
    const std::string path = dir.file("ants0GenericAffine.mat");
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    writer->SetFileName(path);
    writer->SetInput(t);
    writer->Update();
    const ItkAffine a = read_affine_transform(path);
    for (int i = 0; i < 9; ++i) EXPECT_DOUBLE_EQ(a.matrix.m[i], m.m[i]);
    for (int r = 0; r < 3; ++r) {
      EXPECT_DOUBLE_EQ(a.center[r], 10.0 * r - 3);
      EXPECT_DOUBLE_EQ(a.translation[r], 1.5 * r + 0.25);
    }
  }
  {  // float precision (antsRegistration --float 1)
    using AF = itk::AffineTransform<float, 3>;
    auto t = AF::New();
    AF::MatrixType mm;
    for (unsigned r = 0; r < 3; ++r)
      for (unsigned k = 0; k < 3; ++k) mm(r, k) = float(m(int(r), int(k)));
    t->SetMatrix(mm);
    const std::string path = dir.file("float.mat");
    auto writer = itk::TransformFileWriterTemplate<float>::New();
    writer->SetFileName(path);
    writer->SetInput(t);
    writer->Update();
    const ItkAffine a = read_affine_transform(path);
    for (int i = 0; i < 9; ++i) EXPECT_EQ(a.matrix.m[i], double(float(m.m[i])));
  }
  {  // a rigid transform is linear: read as its matrix and translation
    using Euler = itk::Euler3DTransform<double>;
    auto t = Euler::New();
    t->SetRotation(0.1, -0.2, 0.3);
    Euler::OutputVectorType tr;
    tr[0] = 1;
    tr[1] = 2;
    tr[2] = 3;
    t->SetTranslation(tr);
    const std::string path = dir.file("rigid.txt");
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    writer->SetFileName(path);
    writer->SetInput(t);
    writer->Update();
    const ItkAffine a = read_affine_transform(path);
    for (unsigned r = 0; r < 3; ++r) {
      EXPECT_NEAR(a.translation[int(r)], tr[r], 1e-12);
      for (unsigned k = 0; k < 3; ++k) EXPECT_NEAR(a.matrix(int(r), int(k)), t->GetMatrix()(r, k), 1e-12);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Adapters

TEST(ItkAdapters, ToItkImageSharesTheBufferAndGeometry) {
  const Geometry g = oblique_geometry({6, 5, 4});
  Volume<float> v = random_volume(g, 1, 0, 1, false);
  auto image = to_itk_image(v);
  EXPECT_EQ(image->GetBufferPointer(), v.data());
  EXPECT_TRUE(same_geometry(geometry_of(*image), g));
  itk::Index<3> idx{{3, 2, 1}};
  EXPECT_EQ(image->GetPixel(idx), v(3, 2, 1));
  image->SetPixel(idx, 42.0f);
  EXPECT_EQ(v(3, 2, 1), 42.0f);
  itk::Point<double, 3> p;
  image->TransformIndexToPhysicalPoint(idx, p);
  const Vec3d q = g.index_to_physical({3, 2, 1});
  for (unsigned a = 0; a < 3; ++a) EXPECT_NEAR(p[a], q[int(a)], 1e-12);
  image = nullptr;  // the image does not own the memory: the volume stays valid
  EXPECT_EQ(v(3, 2, 1), 42.0f);
}

TEST(ItkAdapters, WrapItkImageSharesTheBufferAndGeometry) {
  const Geometry g = oblique_geometry({6, 5, 4});
  auto image = ItkScalarImage::New();
  set_itk_geometry(*image, g);
  image->Allocate();
  image->FillBuffer(2.5f);
  Volume<float> v = wrap_itk_image(image.GetPointer());
  EXPECT_EQ(v.data(), image->GetBufferPointer());
  EXPECT_FALSE(v.owns_memory());
  EXPECT_TRUE(same_geometry(v.geometry(), g));
  v(1, 2, 3) = -1.0f;
  EXPECT_EQ(image->GetPixel({{1, 2, 3}}), -1.0f);
}

TEST(ItkAdapters, SlabBecomesTheBufferedRegion) {
  const Geometry g = oblique_geometry({6, 5, 8});
  Volume<float> slab(g, Box{{0, 0, 3}, {6, 5, 2}}, 1);
  for (index_t i = 0; i < slab.element_count(); ++i) slab.data()[i] = float(i);
  auto image = to_itk_image(slab);
  EXPECT_EQ(image->GetLargestPossibleRegion().GetSize(2), 8u);
  EXPECT_EQ(image->GetBufferedRegion().GetIndex(2), 3);
  EXPECT_EQ(image->GetBufferedRegion().GetSize(2), 2u);
  EXPECT_EQ(image->GetPixel({{4, 1, 4}}), slab(4, 1, 4));
  // Wrapping it back gives the slab as a grid of its own, at the same physical place.
  Volume<float> back = wrap_itk_image(image.GetPointer());
  EXPECT_EQ(back.geometry().size, (Index3{6, 5, 2}));
  const Vec3d p = g.index_to_physical({4, 1, 4});
  const Vec3d q = back.geometry().index_to_physical({4, 1, 1});
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(p[a], q[a], 1e-9);
  EXPECT_EQ(back(4, 1, 1), slab(4, 1, 4));
}

TEST(ItkAdapters, DisplacementFieldsAreCopiedBetweenPlanesAndVectors) {
  const Geometry g = oblique_geometry({5, 4, 3});
  const DisplacementField u = random_volume(g, 3, -3, 3, false);
  auto image = to_itk_displacement_field(u);
  const index_t n = u.voxel_count();
  for (index_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(image->GetBufferPointer()[i][unsigned(c)], u.data()[c * n + i]);
  const DisplacementField back = from_itk_displacement_field(image.GetPointer());
  EXPECT_TRUE(same_voxels(back, u));
  EXPECT_TRUE(same_geometry(back.geometry(), g));
}
