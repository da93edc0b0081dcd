// Uses the installed headers and library: builds a geometry and a volume, checks one mapping.
#include <gigareg/config.hpp>
#include <gigareg/geometry.hpp>
#include <gigareg/volume.hpp>

#include <cstdio>

int main() {
  gigareg::Geometry g;
  g.size = {8, 8, 8};
  g.spacing = {2, 2, 2};
  gigareg::Volume<float> v(g);
  v.fill(1.5f);
  const gigareg::Vec3d p = g.index_to_physical({1, 1, 1});
  const bool ok = v(7, 7, 7) == 1.5f && p.x == 2.0 && v.voxel_count() == 512;
  std::printf("gigareg %s downstream: %s\n", GIGAREG_VERSION, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
