#pragma once
// What a registration returns (gigareg/registration.hpp): the transforms, the warped image and
// the report of every level.

#include <chrono>
#include <vector>

#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

struct LevelReport {
  int stage = 0, level = 0;
  Index3 size{0, 0, 0};      // the level's fixed grid
  int iterations = 0;
  bool converged = false;    // stopped by the window rule before the iteration limit
  double initial_loss = 0, final_loss = 0;
  double seconds = 0;        // the whole level: its set-up (images, state) and its iterations
  /// The time of each iteration after the first: the interval between the host's reads of
  /// consecutive losses (each read waits for the device to finish that iteration), so the set-up
  /// of the level is not in it. median_iteration_seconds() summarises it.
  std::vector<double> iteration_seconds;
  double median_iteration_seconds() const;
  /// (internal) when the last loss was read
  std::chrono::steady_clock::time_point last_loss_read{};
};

struct RegistrationResult {
  /// The collapsed linear part: physical fixed -> moving, y = A x (matrix, offset)...
  Affined affine = Affined::identity();
  /// ...and the centre it is written about (ITK's fixed parameters): the fixed image's centre of
  /// mass when the initialisation computed it, else the centre of the fixed grid.
  Vec3d center{0, 0, 0};
  /// Displacement on the fixed grid (mm, 3 planes, host); empty without a deformable stage.
  Volume<float> warp;
  /// Its inverse (so that [A^-1 then x + w(x)] maps moving to fixed); empty when not computed.
  Volume<float> inverse_warp;
  /// The moving image resampled into the fixed grid through T (linear, 0 outside; host).
  Volume<float> warped;
  std::vector<LevelReport> levels;
  Backend backend = Backend::Cpu;
  double seconds = 0;
  /// The largest inverse residual |w + u(x + w)| (mm); 0 without an inverse.
  double inverse_residual_mm = 0;
};

}  // namespace gigareg
