// gigareg info IMAGE...: the header of each image as gigareg (and ITK) sees it.
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "gigareg/io.hpp"

namespace gigareg::cli {

Command add_info_command(CLI::App& app) {
  auto paths = std::make_shared<std::vector<std::string>>();
  app.add_option("images", *paths, "image files (NIfTI, NRRD, MetaImage, OME-Zarr .zarr)")->required();
  return [paths] {
    for (const std::string& path : *paths) {
      const ImageHeader h = read_image_header(path);
      const Geometry& g = h.geometry;
      std::printf("%s\n", path.c_str());
      std::printf("  size        %lld x %lld x %lld (%lld voxels)%s\n", (long long)g.size.x,
                  (long long)g.size.y, (long long)g.size.z, (long long)g.voxel_count(),
                  h.volumes > 1 ? " [4-D: several volumes]" : "");
      std::printf("  pixel type  %s, %d component(s)\n", to_string(h.pixel_type), h.components);
      std::printf("  spacing     %.6g %.6g %.6g mm\n", g.spacing.x, g.spacing.y, g.spacing.z);
      std::printf("  origin      %.6g %.6g %.6g mm (LPS)\n", g.origin.x, g.origin.y, g.origin.z);
      for (int r = 0; r < 3; ++r)
        std::printf("  %s  %9.6f %9.6f %9.6f\n", r == 0 ? "direction" : "         ", g.direction(r, 0),
                    g.direction(r, 1), g.direction(r, 2));
      const std::string storage = describe_storage(path);
      if (!storage.empty()) std::printf("  storage     %s\n", storage.c_str());
    }
    return 0;
  };
}

}  // namespace gigareg::cli
