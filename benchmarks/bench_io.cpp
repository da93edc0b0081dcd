// File I/O of a 256^3 displacement field (192 MiB of float32, the size of a registration's Warp
// output): gigareg's writer at several deflate levels and its reader, against ITK's own writer
// and reader of the same file (zlib on one core). Wall time (real time), median of repetitions;
// counters: uncompressed MB/s and the compressed size over the raw size. The files go to
// $TMPDIR (or /tmp): page-cache speed, as a registration's outputs usually are.
// The floor of a write is not the disk but deflate itself: libdeflate's per-core speed at the
// level times the cores (docs/io.md records both).
#include <benchmark/benchmark.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <filesystem>
#include <string>

#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "gigareg/phantom.hpp"

namespace {

using namespace gigareg;

const Volume<float>& field() {
  static const Volume<float> u = [] {
    Geometry g;
    g.size = {256, 256, 256};
    g.spacing = {1, 1, 1};
    SmoothDeformationSpec spec;
    spec.max_displacement_mm = 6.0;
    spec.wavelength_mm = 40.0;
    return make_smooth_deformation(g, spec);
  }();
  return u;
}

std::string scratch(const std::string& name) {
  const char* t = std::getenv("TMPDIR");
  return std::string(t && *t ? t : "/tmp") + "/gigareg_bench_io_" + name;
}

void report(benchmark::State& state, const std::string& path) {
  const double raw = double(field().bytes());
  state.counters["MB/s"] = benchmark::Counter(raw / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["size/raw"] = double(std::filesystem::file_size(path)) / raw;
}

void BM_WriteField(benchmark::State& state) {
  const int level = int(state.range(0));
  const std::string path = scratch(level < 0 ? "w.nii" : "w.nii.gz");
  const int before = compression_level();
  if (level >= 0) set_compression_level(level);
  for (auto _ : state) write_displacement_field(path, field());
  set_compression_level(before);
  report(state, path);
  std::filesystem::remove(path);
}
BENCHMARK(BM_WriteField)->ArgName("level")->Arg(-1)->Arg(0)->Arg(1)->Arg(3)->Arg(6)->Arg(9)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3)
    ->ReportAggregatesOnly(true);

// What `gigareg register` writes at 256^3, side by side as it does (pipeline.cpp: one thread per
// output): the warp, the inverse warp and a float warped image (here a copy of the field's first
// component, so it does not compress like a brain on a zero background), side by side (1) or one
// after the other (0), at level 1 or auto (-1, the default: the fields' members are stored).
void BM_WriteRegistrationOutputs(benchmark::State& state) {
  const bool side_by_side = state.range(0) == 1;
  const Volume<float>& u = field();
  Volume<float> image(u.geometry(), 1);
  std::copy(u.data(), u.data() + image.element_count(), image.data());
  const std::string warp = scratch("o1.nii.gz"), inverse = scratch("o2.nii.gz"), warped = scratch("o3.nii.gz");
  const int before = compression_level();
  set_compression_level(int(state.range(1)));
  for (auto _ : state) {
    if (side_by_side) {
      auto a = std::async(std::launch::async, [&] { write_displacement_field(warp, u); });
      auto b = std::async(std::launch::async, [&] { write_displacement_field(inverse, u); });
      auto c = std::async(std::launch::async, [&] { write_image(warped, image); });
      a.get();
      b.get();
      c.get();
    } else {
      write_displacement_field(warp, u);
      write_displacement_field(inverse, u);
      write_image(warped, image);
    }
  }
  set_compression_level(before);
  const double raw = double(2 * u.bytes() + image.bytes());
  state.counters["MB/s"] = benchmark::Counter(raw / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  for (const std::string& p : {warp, inverse, warped}) std::filesystem::remove(p);
}
BENCHMARK(BM_WriteRegistrationOutputs)->ArgNames({"side_by_side", "level"})->ArgsProduct({{0, 1}, {1, -1}})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3)
    ->ReportAggregatesOnly(true);

void BM_WriteFieldItk(benchmark::State& state) {
  register_itk_io_factories();
  const std::string path = scratch("itk.nii.gz");
  auto image = to_itk_displacement_field(field());
  for (auto _ : state) {
    auto w = itk::ImageFileWriter<ItkDisplacementField>::New();
    w->SetFileName(path);
    w->SetInput(image);
    w->SetUseCompression(true);
    w->Update();
  }
  report(state, path);
}
BENCHMARK(BM_WriteFieldItk)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)
    ->Repetitions(3)->ReportAggregatesOnly(true);

// Reads: gigareg's block file (parallel members), ITK's single-member file through gigareg
// (libdeflate in one pass) and through ITK's reader.
void BM_ReadField(benchmark::State& state) {
  const bool itk_file = state.range(0) == 1;
  const std::string path = scratch(itk_file ? "itk.nii.gz" : "r.nii.gz");
  if (!itk_file) write_displacement_field(path, field());
  if (!std::filesystem::exists(path)) {
    state.SkipWithError("run BM_WriteFieldItk first (it writes the ITK file)");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(read_displacement_field(path).data());
  report(state, path);
}
BENCHMARK(BM_ReadField)->ArgName("itk_file")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)
    ->UseRealTime()->Iterations(1)->Repetitions(3)->ReportAggregatesOnly(true);

// The files the reads share outlive the repetitions (each repetition is a new call) and go when
// the program ends.
struct ScratchFiles {
  ~ScratchFiles() {
    for (const char* name : {"itk.nii.gz", "r.nii.gz"}) std::filesystem::remove(scratch(name));
  }
} scratch_files;

void BM_ReadFieldItk(benchmark::State& state) {
  register_itk_io_factories();
  const std::string path = scratch("itk.nii.gz");
  if (!std::filesystem::exists(path)) {
    state.SkipWithError("run BM_WriteFieldItk first (it writes the ITK file)");
    return;
  }
  for (auto _ : state) {
    auto r = itk::ImageFileReader<ItkDisplacementField>::New();
    r->SetFileName(path);
    r->Update();
    benchmark::DoNotOptimize(r->GetOutput()->GetBufferPointer());
  }
  report(state, path);
}
BENCHMARK(BM_ReadFieldItk)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)
    ->Repetitions(3)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
