// gigareg._gigareg: the extension module under the Python package (python/gigareg). It hands
// NumPy arrays to the library and back, and runs the tool's commands; everything Pythonic (the
// Image class, conversions to SimpleITK / ITK / nibabel, the result object) is in the package's
// Python code, which docs/python.md describes.
//
// Arrays: a scalar volume is a float32 array of shape (nz, ny, nx), C order: the library's
// x-fastest layout, so array[z, y, x] is voxel (x, y, z) and no copy is needed either way. A
// displacement field is float32 (3, nz, ny, nx): the library's three component planes (x, y, z
// displacements in mm, LPS). Volumes the library returns become NumPy arrays that own the
// library's buffer (no copy); arrays the library reads are wrapped in place. Arrays of another
// dtype, order, shape or device are refused with a TypeError / ValueError that says what to pass:
// the Python layer converts explicitly, so a copy or an axis permutation never happens here
// unnoticed.
//
// Geometry: spacing, origin (x, y, z order) and the direction matrix (row-major, its columns the
// directions of the index axes), ITK's LPS convention: p = origin + D diag(spacing) index.
//
// The GIL is released while the library works; the progress callback takes it back for each
// iteration and also lets Ctrl-C (or an exception raised by the callback) stop a registration.
// gigareg::Error becomes ValueError (invalid argument or input), OSError (I/O), MemoryError or
// RuntimeError, with the message the command line prints after "gigareg: error: ".
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/register_command.hpp"
#include "gigareg/registration.hpp"
#include "tool.hpp"

#if GIGAREG_WITH_CUDA
#include <cuda_runtime_api.h>  // cudaGetDevice: an op's arrays must be on the current device
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace gigareg::python {
namespace {

using Vec3 = std::array<double, 3>;
using Mat3 = std::array<double, 9>;  // row-major
using FloatArray = nb::ndarray<nb::numpy, float>;

// ---------------------------------------------------------------------------------------------
// Geometry and arrays

Geometry make_geometry(const Index3& size, const Vec3& spacing, const Vec3& origin,
                       const Mat3& direction, const std::string& where) {
  Geometry g;
  g.size = size;
  g.spacing = {spacing[0], spacing[1], spacing[2]};
  g.origin = {origin[0], origin[1], origin[2]};
  for (int i = 0; i < 9; ++i) g.direction.m[i] = direction[std::size_t(i)];
  g.validate(where);  // NaN or non-positive spacing, singular direction: InvalidInput -> ValueError
  return g;
}

/// (spacing, origin, direction) of a geometry, the order the Python layer takes them.
nb::tuple geometry_tuple(const Geometry& g) {
  const Vec3 spacing{g.spacing.x, g.spacing.y, g.spacing.z};
  const Vec3 origin{g.origin.x, g.origin.y, g.origin.z};
  Mat3 direction;
  for (int i = 0; i < 9; ++i) direction[std::size_t(i)] = g.direction.m[i];
  return nb::make_tuple(spacing, origin, direction);
}

std::string dtype_name(const nb::dlpack::dtype& t) {
  const char* kind = t.code == uint8_t(nb::dlpack::dtype_code::Float)  ? "float"
                     : t.code == uint8_t(nb::dlpack::dtype_code::Int)  ? "int"
                     : t.code == uint8_t(nb::dlpack::dtype_code::UInt) ? "uint"
                     : t.code == uint8_t(nb::dlpack::dtype_code::Bool) ? "bool"
                                                                       : "complex";
  return std::string(kind) + std::to_string(t.bits);
}

/// The grid size of a float32 C-contiguous array of 3 axes (z, y, x), or of 4 (3, z, y, x) for a
/// field, in whatever memory. Anything else is refused with a message that names `name` and the fix.
Index3 array_grid_size(const nb::ndarray<>& a, int components, const std::string& name) {
  const std::size_t ndim = components == 1 ? 3 : 4;
  if (a.dtype() != nb::dtype<float>())
    throw nb::type_error((name + ": expected a float32 array, got " + dtype_name(a.dtype()) +
                          " (convert it with numpy.asarray(a, dtype=numpy.float32) or tensor.float())")
                             .c_str());
  if (a.ndim() != ndim) {
    const std::string expected = components == 1 ? "3 axes (z, y, x)" : "4 axes (3, z, y, x)";
    throw nb::value_error((name + ": expected " + expected + ", got " + std::to_string(a.ndim()) +
                           " axes")
                              .c_str());
  }
  if (components != 1 && a.shape(0) != std::size_t(components))
    throw nb::value_error((name + ": a displacement field has 3 component planes first, shape (3, z, y, x); "
                                  "got " + std::to_string(a.shape(0)) + " on the first axis")
                              .c_str());
  for (std::size_t i = 0; i < ndim; ++i)
    if (a.shape(i) == 0) throw nb::value_error((name + ": the array is empty").c_str());
  // C order: the last axis (x) fastest, each stride the product of the later extents.
  int64_t expected_stride = 1;
  for (std::size_t i = ndim; i-- > 0;) {
    if (a.shape(i) > 1 && a.stride(i) != expected_stride)
      throw nb::value_error((name + ": the array is not C-contiguous (x fastest); pass "
                                    "numpy.ascontiguousarray(a) (tensor.contiguous()), or the Image class, which converts")
                                .c_str());
    expected_stride *= int64_t(a.shape(i));
  }
  const std::size_t first = ndim - 3;
  return {index_t(a.shape(first + 2)), index_t(a.shape(first + 1)), index_t(a.shape(first))};
}

/// A host float32 C-contiguous array (see array_grid_size) as a volume over its memory.
Volume<float> wrap_array(const nb::ndarray<>& a, int components, const Vec3& spacing, const Vec3& origin,
                         const Mat3& direction, const std::string& name) {
  if (a.device_type() != nb::device::cpu::value)
    throw nb::value_error((name + ": the array is not in host memory (pass a NumPy array)").c_str());
  const Geometry g = make_geometry(array_grid_size(a, components, name), spacing, origin, direction, name);
  return Volume<float>::wrap(static_cast<float*>(a.data()), g, components);
}

/// A volume of the library (whole grid) as a NumPy array that owns it: no copy on the host.
FloatArray to_numpy(Volume<float>&& v) {
  if (v.space() != MemorySpace::Host) v = v.to(MemorySpace::Host);
  GIGAREG_ASSERT(v.box().lo == (Index3{0, 0, 0}) && v.box().size == v.geometry().size);
  const Index3 n = v.geometry().size;
  const int components = v.components();
  if (!v.owns_memory()) v = v.clone();  // a wrapped buffer belongs to someone else
  auto* owner = new Volume<float>(std::move(v));
  nb::capsule capsule(owner, [](void* p) noexcept { delete static_cast<Volume<float>*>(p); });
  if (components == 1) {
    const std::size_t shape[3] = {std::size_t(n.z), std::size_t(n.y), std::size_t(n.x)};
    return FloatArray(owner->data(), 3, shape, capsule);
  }
  const std::size_t shape[4] = {std::size_t(components), std::size_t(n.z), std::size_t(n.y), std::size_t(n.x)};
  return FloatArray(owner->data(), 4, shape, capsule);
}

/// (array, spacing, origin, direction) of a volume.
nb::tuple image_tuple(Volume<float>&& v) {
  const Geometry g = v.geometry();
  nb::tuple geometry = geometry_tuple(g);
  return nb::make_tuple(to_numpy(std::move(v)), geometry[0], geometry[1], geometry[2]);
}

PixelType parse_pixel_type(const std::string& name) {
  for (PixelType t : {PixelType::UInt8, PixelType::Int8, PixelType::UInt16, PixelType::Int16,
                      PixelType::UInt32, PixelType::Int32, PixelType::UInt64, PixelType::Int64,
                      PixelType::Float32, PixelType::Float64})
    if (name == to_string(t)) return t;
  throw nb::value_error(("unknown pixel type '" + name + "' (uint8 ... int64, float32, float64)").c_str());
}

/// A 4x4 homogeneous matrix (row-major, 16 values) <-> Affined.
using Mat4 = std::array<double, 16>;
Mat4 to_mat4(const Affined& a) {
  Mat4 m{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m[std::size_t(4 * r + c)] = a.matrix(r, c);
    m[std::size_t(4 * r + 3)] = a.offset[r];
  }
  m[15] = 1;
  return m;
}
Affined from_mat4(const Mat4& m, const char* where) {
  for (double v : m)
    if (!std::isfinite(v)) throw nb::value_error((std::string(where) + ": the matrix is not finite").c_str());
  if (m[12] != 0 || m[13] != 0 || m[14] != 0 || m[15] != 1)
    throw nb::value_error((std::string(where) + ": the last row of a 4x4 affine must be 0 0 0 1").c_str());
  Affined a;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) a.matrix(r, c) = m[std::size_t(4 * r + c)];
    a.offset[r] = m[std::size_t(4 * r + 3)];
  }
  return a;
}

Interpolation parse_interpolation(const std::string& name) {
  if (name == "linear") return Interpolation::Linear;
  if (name == "nearest") return Interpolation::Nearest;
  if (name == "label") return Interpolation::Label;
  return ants::parse_interpolation(name);  // ANTs' names too: Linear, NearestNeighbor, GenericLabel
}

// ---------------------------------------------------------------------------------------------
// Progress and messages from the library, delivered to Python with the GIL held.

nb::dict report_dict(const IterationReport& r) {
  nb::dict d;
  d["stage"] = r.stage;
  d["transform"] = to_string(r.transform);
  d["level"] = r.level;
  d["levels"] = r.levels;
  d["iteration"] = r.iteration;
  d["loss"] = r.loss;
  d["convergence"] = r.convergence < 1e300 ? nb::cast(r.convergence) : nb::none();
  return d;
}

/// Calls `callback` (may be None) for every iteration; before it, a pending Ctrl-C ends the run.
/// An exception from either is thrown through the library (which removes its temporaries) and
/// raised again in Python.
std::function<void(const IterationReport&)> progress_hook(nb::object callback) {
  auto shared = std::make_shared<nb::object>(std::move(callback));
  return [shared](const IterationReport& r) {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (!shared->is_none()) (*shared)(report_dict(r));
  };
}

/// Restores the process-wide settings that a command changes (log level and sink, compression).
struct SettingsGuard {
  LogLevel level = log_level();
  int compression = compression_level();
  ~SettingsGuard() {
    set_log_level(level);
    set_compression_level(compression);
  }
};

// ---------------------------------------------------------------------------------------------
// The module's functions

nb::tuple py_read_image(const std::string& path) {
  Image image;
  {
    nb::gil_scoped_release release;
    image = read_image(path);
  }
  nb::tuple t = image_tuple(std::move(image.voxels));
  return nb::make_tuple(t[0], t[1], t[2], t[3], to_string(image.pixel_type));
}

void py_write_image(const std::string& path, const nb::ndarray<>& array, const Vec3& spacing,
                    const Vec3& origin, const Mat3& direction, const std::string& pixel_type,
                    bool round_and_clamp) {
  const PixelType type = parse_pixel_type(pixel_type);
  const Volume<float> v = wrap_array(array, 1, spacing, origin, direction, "image");
  nb::gil_scoped_release release;
  write_image(path, v, type, round_and_clamp ? IntegerConversion::RoundAndClamp : IntegerConversion::Exact);
}

nb::tuple py_read_displacement_field(const std::string& path) {
  DisplacementField field;
  {
    nb::gil_scoped_release release;
    field = read_displacement_field(path);
  }
  return image_tuple(std::move(field));
}

void py_write_displacement_field(const std::string& path, const nb::ndarray<>& array, const Vec3& spacing,
                                 const Vec3& origin, const Mat3& direction) {
  const Volume<float> v = wrap_array(array, 3, spacing, origin, direction, "field");
  nb::gil_scoped_release release;
  write_displacement_field(path, v);
}

/// (4x4 fixed -> moving matrix, centre) of an ITK affine transform file.
std::pair<Mat4, Vec3> py_read_affine(const std::string& path) {
  ItkAffine a;
  {
    nb::gil_scoped_release release;
    a = read_affine_transform(path);
  }
  return {to_mat4(a.affine()), Vec3{a.center.x, a.center.y, a.center.z}};
}

/// ITK's parameterisation about `center`: y = M (x - c) + t + c, so t = offset - c + M c.
ItkAffine itk_affine(const Affined& a, const Vec3& center) {
  ItkAffine t;
  t.matrix = a.matrix;
  t.center = {center[0], center[1], center[2]};
  t.translation = a.offset - t.center + a.matrix * t.center;
  return t;
}

void py_write_affine(const std::string& path, const Mat4& matrix, const Vec3& center) {
  const ItkAffine t = itk_affine(from_mat4(matrix, "affine"), center);
  nb::gil_scoped_release release;
  write_affine_transform(path, t);
}

/// An image argument as the Python layer passes it: (array, spacing, origin, direction).
using ImageArg = std::tuple<nb::ndarray<>, Vec3, Vec3, Mat3>;
Volume<float> wrap_image(const ImageArg& image, int components, const std::string& name) {
  return wrap_array(std::get<0>(image), components, std::get<1>(image), std::get<2>(image),
                    std::get<3>(image), name);
}

nb::dict result_dict(RegistrationResult&& r) {
  nb::dict d;
  d["affine"] = to_mat4(r.affine);
  d["center"] = Vec3{r.center.x, r.center.y, r.center.z};
  d["warp"] = r.warp.empty() ? nb::none() : nb::object(image_tuple(std::move(r.warp)));
  d["inverse_warp"] = r.inverse_warp.empty() ? nb::none() : nb::object(image_tuple(std::move(r.inverse_warp)));
  d["warped"] = r.warped.empty() ? nb::none() : nb::object(image_tuple(std::move(r.warped)));
  nb::list levels;
  for (const LevelReport& l : r.levels) {
    nb::dict level;
    level["stage"] = l.stage;
    level["level"] = l.level;
    level["size"] = Vec3{double(l.size.x), double(l.size.y), double(l.size.z)};
    level["iterations"] = l.iterations;
    level["converged"] = l.converged;
    level["initial_loss"] = l.initial_loss;
    level["final_loss"] = l.final_loss;
    level["seconds"] = l.seconds;
    levels.append(level);
  }
  d["levels"] = levels;
  d["backend"] = to_string(r.backend);
  d["seconds"] = r.seconds;
  d["inverse_residual_mm"] = r.inverse_residual_mm;
  return d;
}

nb::dict py_register_images(const ImageArg& fixed, const ImageArg& moving, const std::string& preset,
                            const std::string& device, std::optional<ImageArg> fixed_mask,
                            std::optional<ImageArg> moving_mask, bool compute_inverse, nb::object progress) {
  RegistrationParams params = registration_preset(preset);
  params.device = ants::parse_device(device);
  params.compute_inverse = compute_inverse;
  params.progress = progress_hook(std::move(progress));
  const Volume<float> f = wrap_image(fixed, 1, "fixed");
  const Volume<float> m = wrap_image(moving, 1, "moving");
  std::optional<Volume<float>> fm, mm;
  if (fixed_mask) fm = wrap_image(*fixed_mask, 1, "fixed_mask");
  if (moving_mask) mm = wrap_image(*moving_mask, 1, "moving_mask");
  RegistrationResult r;
  {
    nb::gil_scoped_release release;
    r = register_images(params, f, m, fm ? &*fm : nullptr, mm ? &*mm : nullptr);
  }
  return result_dict(std::move(r));
}

/// A transform of antsApplyTransforms' list: a 4x4 affine or a displacement field image.
using TransformArg = std::pair<std::optional<Mat4>, std::optional<ImageArg>>;

FloatArray py_apply_transforms(const ImageArg& moving, const Vec3& size, const Vec3& spacing,
                               const Vec3& origin, const Mat3& direction,
                               const std::vector<TransformArg>& transforms, const std::string& interpolation,
                               const std::string& device) {
  const Volume<float> m = wrap_image(moving, 1, "image");
  const Geometry reference = make_geometry({index_t(size[0]), index_t(size[1]), index_t(size[2])},
                                           spacing, origin, direction, "reference");
  std::vector<Volume<float>> fields;
  fields.reserve(transforms.size());
  std::vector<TransformEntry> entries;
  for (const TransformArg& t : transforms) {
    TransformEntry e;
    if (t.second) {
      fields.push_back(wrap_image(*t.second, 3, "field"));
      e.is_field = true;
      e.field = &fields.back();
    } else if (t.first) {
      e.affine = from_mat4(*t.first, "affine");
    } else {
      throw nb::value_error("a transform is either an affine or a field");
    }
    entries.push_back(e);
  }
  const Interpolation interp = parse_interpolation(interpolation);
  const DeviceChoice dev = ants::parse_device(device);
  Volume<float> out;
  {
    nb::gil_scoped_release release;
    out = apply_transforms(m, reference, entries, interp, dev);
  }
  return to_numpy(std::move(out));
}

/// det(I + du/dx) of a displacement field (the tool's `gigareg jacobian`), and how many voxels
/// have a non-positive one.
std::pair<FloatArray, double> py_jacobian(const ImageArg& field) {
  const Volume<float> u = wrap_image(field, 3, "field");
  Volume<float> det;
  double nonpositive = 0;
  {
    nb::gil_scoped_release release;
    nonpositive = cli::count_nonpositive_jacobian(u, &det);
  }
  return {to_numpy(std::move(det)), nonpositive};
}

/// Writes a result's files as register_files does (write_registration_outputs).
nb::dict py_write_registration_outputs(const Mat4& affine, const Vec3& center, std::optional<ImageArg> warp,
                                       std::optional<ImageArg> inverse_warp, std::optional<ImageArg> warped,
                                       const std::string& prefix, const std::string& warped_path,
                                       const std::string& warp_extension) {
  RegistrationResult r;
  r.affine = from_mat4(affine, "affine");
  r.center = {center[0], center[1], center[2]};
  if (warp) r.warp = wrap_image(*warp, 3, "warp");
  if (inverse_warp) r.inverse_warp = wrap_image(*inverse_warp, 3, "inverse_warp");
  if (warped) r.warped = wrap_image(*warped, 1, "warped");
  if (!warped_path.empty() && !warped)
    throw nb::value_error("warped: the result holds no warped image to write");
  RegistrationOutputs out;
  {
    nb::gil_scoped_release release;
    out = write_registration_outputs(r, prefix, warped_path, warp_extension);
  }
  nb::dict d;
  d["affine"] = out.affine;
  d["warp"] = out.warp;
  d["inverse_warp"] = out.inverse_warp;
  d["warped"] = out.warped;
  return d;
}

/// The files a `gigareg register` command line names (parsed by the library, as the tool does).
nb::dict register_command_files(const std::vector<std::string>& args) {
  const RegisterCommand c = parse_register_command(args);
  nb::dict d;
  d["fixed"] = c.files.fixed;
  d["moving"] = c.files.moving;
  d["output_prefix"] = c.files.output_prefix;
  d["warped"] = c.files.warped;
  d["inverse_warped"] = c.files.inverse_warped;
  d["warp_extension"] = c.files.warp_extension;
  return d;
}

/// Runs `gigareg <args>` (args[0] is the command, e.g. "register") through the tool's own code.
/// Returns (exit code, the files of a register command as the tool parsed them, or None), or None
/// after printing --help through `summary`.
nb::object py_run_tool(const std::vector<std::string>& args, nb::object progress, nb::object log,
                       nb::object summary) {
  cli::RegisterHooks hooks;
  if (!progress.is_none()) hooks.progress = progress_hook(progress);
  // The hooks are copied inside the library without the GIL: they share the Python objects
  // through shared_ptr (whose copies need no GIL) and the last reference goes here, with the GIL.
  if (!log.is_none()) {
    auto shared = std::make_shared<nb::object>(log);
    hooks.log = [shared](LogLevel level, std::string_view message) {
      nb::gil_scoped_acquire gil;
      (*shared)(int(level), std::string(message));
    };
  }
  if (!summary.is_none()) {
    auto shared = std::make_shared<nb::object>(summary);
    hooks.summary = [shared](const std::string& text) {
      nb::gil_scoped_acquire gil;
      (*shared)(text);
    };
  }
  SettingsGuard settings;
  cli::Tool tool(hooks);
  try {
    tool.parse(args);
  } catch (const CLI::CallForHelp&) {
    std::string text = tool.app().help();  // the tool's, or the command's when one was given
    for (CLI::App* sub : tool.app().get_subcommands())
      if (sub->parsed()) text = sub->help();
    if (!summary.is_none()) summary(text);
    return nb::none();
  } catch (const CLI::ParseError& e) {
    // CLI11's own message, as the tool prints it before "Run with --help for more information."
    throw nb::value_error(e.what());
  }
  int code = 0;
  {
    nb::gil_scoped_release release;
    code = tool.run();
  }
  // The register command's own arguments: those the tool handed to parse_register_command.
  nb::object files = nb::none();
  for (CLI::App* sub : tool.app().get_subcommands())
    if (code == 0 && sub->get_name() == "register") files = register_command_files(sub->remaining());
  return nb::make_tuple(code, files);
}

// ---------------------------------------------------------------------------------------------
// Differentiable ops (gigareg.torch): the library's ops on arrays of one grid, index-aligned
// (origin 0, identity direction) with the given spacing; displacements in mm (in voxels when the
// spacing is 1). Every array arrives through DLPack (torch tensors, NumPy or CuPy arrays) and
// stays where it is: all of one op's arrays in host memory (the cpu backend) or all on the
// current CUDA device (the cuda backend, every launch on `stream`, the caller's current stream,
// and no synchronisation with the host). The caller allocates the outputs beside the inputs, so
// nothing is copied and the caller's allocator (PyTorch's) owns every buffer; inputs are never
// modified.

/// Where one op's arrays live; the first array fixes it and every other one must agree.
struct OpPlace {
  int32_t device_type = 0;  // nb::device::cpu::value or nb::device::cuda::value; 0 before the first
  int32_t device_id = 0;
  void* stream = nullptr;
  Context context() const {
    return device_type == nb::device::cuda::value ? Context::cuda(stream) : Context::cpu();
  }
};

std::string device_name(int32_t type, int32_t id) {
  if (type == nb::device::cpu::value) return "the host (cpu)";
  if (type == nb::device::cuda::value) return "cuda:" + std::to_string(id);
  return "device type " + std::to_string(type);
}

/// Checks that `a` lives where the op's other arrays do (the first one decides), on the host or
/// on the current CUDA device of a CUDA build.
void require_op_device(const nb::ndarray<>& a, const std::string& name, OpPlace& place) {
  const int32_t type = a.device_type(), id = a.device_id();
  if (type != nb::device::cpu::value && type != nb::device::cuda::value)
    throw nb::value_error((name + ": the array is on " + device_name(type, id) +
                           "; gigareg's ops take host memory or a CUDA device")
                              .c_str());
  if (place.device_type == 0) {
    place.device_type = type;
    place.device_id = id;
    if (type == nb::device::cuda::value) {
#if GIGAREG_WITH_CUDA
      int current = -1;
      if (cudaGetDevice(&current) != cudaSuccess || current != id)
        throw nb::value_error((name + ": the array is on cuda:" + std::to_string(id) +
                               " but the current CUDA device is cuda:" + std::to_string(current) +
                               " (run the op under torch.cuda.device(...) of its tensors)")
                                  .c_str());
#else
      throw nb::value_error((name + ": a CUDA array, but this gigareg was built without CUDA").c_str());
#endif
    }
  } else if (type != place.device_type || id != place.device_id) {
    throw nb::value_error((name + ": the array is on " + device_name(type, id) + ", the op's other arrays on " +
                           device_name(place.device_type, place.device_id) + " (one device per op)")
                              .c_str());
  }
}

/// A float32 C-contiguous array of one grid (components 1: (z, y, x); 3: (3, z, y, x)) as a
/// whole-grid view over its memory, wherever the op runs.
VolumeView<float> op_view(const nb::ndarray<>& a, int components, const Vec3& spacing, const std::string& name,
                          OpPlace& place, Geometry* geometry = nullptr) {
  require_op_device(a, name, place);
  const Index3 size = array_grid_size(a, components, name);
  const Geometry g = make_geometry(size, spacing, {0, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}, name);
  if (geometry) *geometry = g;
  const MemorySpace space = place.device_type == nb::device::cuda::value ? MemorySpace::Device : MemorySpace::Host;
  return Volume<float>::wrap(static_cast<float*>(a.data()), g, components, space).view();
}

VolumeView<float> op_view_on(const nb::ndarray<>& a, int components, const Geometry& grid, const std::string& name,
                             OpPlace& place) {
  Geometry g;
  const VolumeView<float> v = op_view(a, components, {grid.spacing.x, grid.spacing.y, grid.spacing.z}, name, place, &g);
  if (g.size != grid.size)
    throw nb::value_error((name + ": shape (" + std::to_string(g.size.z) + ", " + std::to_string(g.size.y) + ", " +
                           std::to_string(g.size.x) + ") differs from the first input's (" +
                           std::to_string(grid.size.z) + ", " + std::to_string(grid.size.y) + ", " +
                           std::to_string(grid.size.x) + ")")
                              .c_str());
  return v;
}

/// A float64 C-contiguous (slices, kLossTerms) array for a loss's slice partials.
SlicePartials op_partials(const nb::ndarray<>& a, index_t slices, const std::string& name, OpPlace& place) {
  require_op_device(a, name, place);
  if (a.dtype() != nb::dtype<double>() || a.ndim() != 2 || a.shape(0) != std::size_t(slices) ||
      a.shape(1) != std::size_t(kLossTerms) || (slices > 1 && a.stride(0) != kLossTerms) || a.stride(1) != 1)
    throw nb::value_error((name + ": expected a C-contiguous float64 array of shape (" + std::to_string(slices) +
                           ", " + std::to_string(kLossTerms) + ")")
                              .c_str());
  return {static_cast<double*>(a.data()), slices, kLossTerms};
}

Boundary parse_padding(const std::string& padding) {
  if (padding == "zeros") return Boundary::Zero;
  if (padding == "border") return Boundary::Border;
  throw nb::value_error(("padding: '" + padding + "' (use 'zeros' or 'border')").c_str());
}

/// The warp of one volume by a displacement field on its own grid (moving and fixed grids equal).
struct OpWarp {
  OpPlace place;
  WarpInputs in;
  OpWarp(const nb::ndarray<>& moving, const std::optional<nb::ndarray<>>& displacement, const Vec3& spacing,
         Interpolation interpolation, const std::string& padding, std::uintptr_t stream) {
    place.stream = reinterpret_cast<void*>(stream);
    Geometry g;
    in.moving = op_view(moving, 1, spacing, "moving", place, &g).as_const();
    in.moving_geometry = g;
    in.fixed_geometry = g;
    if (displacement) in.displacement = op_view_on(*displacement, 3, g, "displacement", place).as_const();
    in.interpolation = interpolation;
    in.boundary = parse_padding(padding);
  }
  Box whole() const { return {{0, 0, 0}, in.fixed_geometry.size}; }
};

/// out = moving sampled at x + displacement(x).
void op_warp(const nb::ndarray<>& moving, std::optional<nb::ndarray<>> displacement, const nb::ndarray<>& out,
             const Vec3& spacing, const std::string& interpolation, const std::string& padding, std::uintptr_t stream) {
  const Interpolation interp = parse_interpolation(interpolation);
  if (interp != Interpolation::Linear && interp != Interpolation::Nearest)
    throw nb::value_error("interpolation: 'linear' or 'nearest'");
  OpWarp op(moving, displacement, spacing, interp, padding, stream);
  const VolumeView<float> out_view = op_view_on(out, 1, op.in.fixed_geometry, "out", op.place);
  nb::gil_scoped_release release;
  warp(op.place.context(), op.in, out_view, op.whole());
}

/// dL/d displacement into d_displacement and dL/d moving added into d_moving (each optional; the
/// caller zeroes d_moving), for dL/d out = grad_out (linear interpolation). d_moving: cpu only.
void op_warp_backward(const nb::ndarray<>& moving, std::optional<nb::ndarray<>> displacement,
                      const nb::ndarray<>& grad_out, std::optional<nb::ndarray<>> d_displacement,
                      std::optional<nb::ndarray<>> d_moving, const Vec3& spacing, const std::string& padding,
                      std::uintptr_t stream) {
  OpWarp op(moving, displacement, spacing, Interpolation::Linear, padding, stream);
  const VolumeView<float> g = op_view_on(grad_out, 1, op.in.fixed_geometry, "grad_out", op.place);
  WarpGradients grads;
  if (d_displacement) {
    if (!displacement) throw nb::value_error("the displacement's gradient needs a displacement");
    grads.displacement = op_view_on(*d_displacement, 3, op.in.fixed_geometry, "d_displacement", op.place);
  }
  if (d_moving) {
    if (op.place.device_type == nb::device::cuda::value)
      throw nb::value_error("moving: the moving image's gradient is computed on the CPU only (on CUDA it would "
                            "need float atomics, which are not deterministic); detach the moving image or warp on the CPU");
    grads.moving = op_view_on(*d_moving, 1, op.in.moving_geometry, "d_moving", op.place);
  }
  nb::gil_scoped_release release;
  warp_backward(op.place.context(), op.in, g.as_const(), op.whole(), grads);
}

/// A loss (ops/loss.hpp: loss = S / C, minimised) of fixed F and warped W on one grid: its slice
/// partials {S, C} into `partials` ((z, 2) float64; (1, 2) for mattes) and dS/dW into `grad`
/// (optional); `mask` (optional) counts voxels where it is > 0.5.
void op_loss(const std::string& kind, const nb::ndarray<>& fixed, const nb::ndarray<>& warped,
             std::optional<nb::ndarray<>> mask, const nb::ndarray<>& partials, std::optional<nb::ndarray<>> grad,
             const Vec3& spacing, int radius, double eps, int bins, std::optional<std::array<double, 4>> ranges,
             std::uintptr_t stream) {
  OpPlace place;
  place.stream = reinterpret_cast<void*>(stream);
  Geometry g;
  const VolumeView<const float> f = op_view(fixed, 1, spacing, "fixed", place, &g).as_const();
  const VolumeView<const float> w = op_view_on(warped, 1, g, "warped", place).as_const();
  const VolumeView<const float> m = mask ? op_view_on(*mask, 1, g, "mask", place).as_const() : VolumeView<const float>{};
  const VolumeView<float> grad_view = grad ? op_view_on(*grad, 1, g, "grad", place) : VolumeView<float>{};
  const Box owned{{0, 0, 0}, g.size};
  const Context ctx = place.context();
  if (kind == "mse" || kind == "lncc") {
    const SlicePartials p = op_partials(partials, g.size.z, "partials", place);
    if (kind == "mse") {
      nb::gil_scoped_release release;
      mse_loss(ctx, f, w, m, owned, p, grad_view);
      return;
    }
    LnccParams params;
    params.radius = radius;
    params.eps = eps;
    (void)lncc_window_radius(params);  // validates
    nb::gil_scoped_release release;
    lncc_loss(ctx, f, w, m, owned, params, p, grad_view);
  } else if (kind == "mattes") {
    const SlicePartials p = op_partials(partials, 1, "partials", place);
    if (!ranges) throw Error(ErrorKind::InvalidArgument, "mattes_mi", "the intensity ranges are required");
    MattesParams params;
    params.bins = bins;
    params.fixed_min = float((*ranges)[0]);
    params.fixed_max = float((*ranges)[1]);
    params.moving_min = float((*ranges)[2]);
    params.moving_max = float((*ranges)[3]);
    (void)mattes_moving_axis(params);  // validates
    nb::gil_scoped_release release;
    mattes_mi(ctx, f, w, m, owned, params, p, grad_view);
  } else {
    throw Error(ErrorKind::InvalidArgument, "loss", "unknown kind '" + kind + "' (mse, lncc, mattes)");
  }
}

/// out = Gaussian smoothing of one volume (sigmas in voxels, x y z order; replicate boundary), or
/// its transpose (the backward pass).
void op_gaussian_smooth(const nb::ndarray<>& input, const nb::ndarray<>& out, const Vec3& sigma_voxels, bool adjoint,
                        std::uintptr_t stream) {
  OpPlace place;
  place.stream = reinterpret_cast<void*>(stream);
  Geometry g;
  const VolumeView<const float> in = op_view(input, 1, {1, 1, 1}, "input", place, &g).as_const();
  const VolumeView<float> out_view = op_view_on(out, 1, g, "out", place);
  if (static_cast<const void*>(in.data) == static_cast<const void*>(out_view.data))
    throw nb::value_error("out: must not be the input's memory");
  const Vec3d sigma{sigma_voxels[0], sigma_voxels[1], sigma_voxels[2]};
  (void)gaussian_radii(sigma);  // validates (negative or huge sigma: ValueError)
  nb::gil_scoped_release release;
  if (adjoint)
    gaussian_smooth_adjoint(place.context(), in, out_view, sigma);
  else
    gaussian_smooth(place.context(), in, out_view, sigma, Box{{0, 0, 0}, g.size});
}

}  // namespace
}  // namespace gigareg::python

NB_MODULE(_gigareg, m) {
  using namespace gigareg;
  using namespace gigareg::python;
  m.doc() = "gigareg's extension module; use the gigareg package (docs/python.md).";
  m.attr("__version__") = GIGAREG_VERSION;
  m.attr("cuda_built") = bool(GIGAREG_WITH_CUDA);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyObject* type = PyExc_RuntimeError;
      switch (e.kind()) {
        case ErrorKind::InvalidArgument:
        case ErrorKind::InvalidInput: type = PyExc_ValueError; break;
        case ErrorKind::Io: type = PyExc_OSError; break;
        case ErrorKind::OutOfMemory: type = PyExc_MemoryError; break;
        default: break;
      }
      PyErr_SetString(type, e.what());
    }
  });

  m.def("cuda_available", &cuda_available, "True when a CUDA device can be used.");
  m.def("read_image", &py_read_image, "path"_a,
        "(array[z, y, x] float32, spacing, origin, direction, pixel type) of a scalar image file.");
  m.def("write_image", &py_write_image, "path"_a, "array"_a, "spacing"_a, "origin"_a, "direction"_a,
        "pixel_type"_a = "float32", "round"_a = false);
  m.def("read_displacement_field", &py_read_displacement_field, "path"_a);
  m.def("write_displacement_field", &py_write_displacement_field, "path"_a, "array"_a, "spacing"_a,
        "origin"_a, "direction"_a);
  m.def("read_affine", &py_read_affine, "path"_a);
  m.def("write_affine", &py_write_affine, "path"_a, "matrix"_a, "center"_a);
  m.def("register_images", &py_register_images, "fixed"_a, "moving"_a, "preset"_a, "device"_a,
        "fixed_mask"_a.none(), "moving_mask"_a.none(), "compute_inverse"_a, "progress"_a.none());
  m.def("apply_transforms", &py_apply_transforms, "image"_a, "size"_a, "spacing"_a, "origin"_a,
        "direction"_a, "transforms"_a, "interpolation"_a, "device"_a);
  m.def("jacobian", &py_jacobian, "field"_a);
  m.def("write_registration_outputs", &py_write_registration_outputs, "affine"_a, "center"_a,
        "warp"_a.none(), "inverse_warp"_a.none(), "warped"_a.none(), "prefix"_a, "warped_path"_a,
        "warp_extension"_a);
  m.def("split_command_line", &split_command_line, "line"_a);
  m.def("register_command_help", &register_command_help);
  m.def("op_warp", &op_warp, "moving"_a, "displacement"_a.none(), "out"_a, "spacing"_a, "interpolation"_a,
        "padding"_a, "stream"_a = 0);
  m.def("op_warp_backward", &op_warp_backward, "moving"_a, "displacement"_a.none(), "grad_out"_a,
        "d_displacement"_a.none(), "d_moving"_a.none(), "spacing"_a, "padding"_a, "stream"_a = 0);
  m.def("op_loss", &op_loss, "kind"_a, "fixed"_a, "warped"_a, "mask"_a.none(), "partials"_a, "grad"_a.none(),
        "spacing"_a, "radius"_a, "eps"_a, "bins"_a, "ranges"_a.none(), "stream"_a = 0);
  m.def("op_gaussian_smooth", &op_gaussian_smooth, "input"_a, "out"_a, "sigma_voxels"_a, "adjoint"_a, "stream"_a = 0);
  m.def("run_tool", &py_run_tool, "args"_a, "progress"_a.none(), "log"_a.none(), "summary"_a.none());
}
