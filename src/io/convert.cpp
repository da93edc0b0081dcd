// gigareg convert: an image or displacement field from one format to another (.nii, .nii.gz,
// .zarr, ...), values, pixel type and geometry unchanged; NGFF pyramids for .zarr outputs.

#include <string>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "io/io_internal.hpp"
#include "io/zarr.hpp"

namespace gigareg {

void convert_image_file(const std::string& input, const std::string& output,
                        const ConvertOptions& options) {
  if (options.pyramid < 0 || options.pyramid > 16)
    throw_error(ErrorKind::InvalidArgument, "--pyramid", "expected 0-16 extra levels, got " +
                                                             std::to_string(options.pyramid));
  const bool zarr_out = io_detail::is_zarr_path(output);
  if (options.pyramid > 0 && !zarr_out)
    throw_error(ErrorKind::InvalidArgument, output,
                "--pyramid writes NGFF multiscale levels, which only a .zarr output holds");
  check_output_path(output, OutputKind::Image);  // before the work
  const ImageHeader h = read_image_header(input);
  if (h.components == 3) {
    if (options.labels)
      throw_error(ErrorKind::InvalidArgument, input, "--labels: a displacement field is not a label map");
    const DisplacementField field = read_displacement_field(input);
    if (zarr_out)
      zarr::write_volume(output, field, PixelType::Float32, IntegerConversion::Exact,
                         1 + options.pyramid, "mean");
    else
      write_displacement_field(output, field);
    return;
  }
  const Image image = read_image(input);
  if (options.labels && !is_integer(image.pixel_type))
    throw_error(ErrorKind::InvalidArgument, input,
                std::string("--labels: a label map holds integers, this image holds ") +
                    to_string(image.pixel_type));
  if (zarr_out)
    zarr::write_volume(output, image.voxels, image.pixel_type, IntegerConversion::Exact,
                       1 + options.pyramid, options.labels ? "mode" : "mean");
  else
    write_image(output, image);
}

}  // namespace gigareg
