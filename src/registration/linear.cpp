// Linear stages (translation, rigid, affine): Adam on the transform parameters with the gradient
// of the metric through warp_backward's 12 affine partials, level by level.
//
// Parameterisation about the centre c (ITK's fixed parameters): y = M (x - c) + c + t.
//   Translation: t (3).  Rigid: M = M0 exp([w]x), parameters w (3) and t (3), M0 the matrix at
//   the start of the level.  Affine: the 9 entries of M and t (12).
// warp_backward gives dL/dM_full and dL/dt_full for y = M_full x + t_full with
// t_full = c + t - M c, so dL/dM = dL/dM_full - dL/dt_full c^T and dL/dt = dL/dt_full.
//
// Scaling: Adam runs on parameters measured in the physical shift (mm) they cause over the
// fixed grid: an entry M(r, k) moves points by about s_k = RMS over the grid of (x_k - c_k), a
// rotation about axis k by about sqrt(s_i^2 + s_j^2). With learning rate g * (smallest level
// spacing), each parameter moves points by at most about g level voxels per iteration.

#include <chrono>
#include <cmath>
#include <vector>

#include "gigareg/log.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/internal.hpp"

namespace gigareg::reg {
namespace {

Mat3d rotation_exp(Vec3d w) {
  const double th = std::sqrt(dot(w, w));
  const Mat3d k{{0, -w.z, w.y, w.z, 0, -w.x, -w.y, w.x, 0}};
  const Mat3d k2 = k * k;
  // sin(th)/th and (1 - cos(th))/th^2, by their series near 0.
  const double a = th < 1e-6 ? 1.0 - th * th / 6.0 : std::sin(th) / th;
  const double b = th < 1e-6 ? 0.5 - th * th / 24.0 : (1.0 - std::cos(th)) / (th * th);
  Mat3d r = Mat3d::identity();
  for (int i = 0; i < 9; ++i) r.m[i] += a * k.m[i] + b * k2.m[i];
  return r;
}

/// RMS over the voxel centres of `g` of each physical coordinate's distance from c: the index
/// coordinates are independent and uniform, so E[(x-c)(x-c)^T] has a closed form.
Vec3d rms_extent(const Geometry& g, Vec3d c) {
  const Affined p = g.index_to_physical_map();
  const Vec3d mean_index{0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1),
                         0.5 * double(g.size.z - 1)};
  const Vec3d m = p(mean_index) - c;
  Vec3d var_index{};
  for (int a = 0; a < 3; ++a) {
    const double n = double(g.size[a]);
    var_index[a] = (n * n - 1.0) / 12.0;
  }
  Vec3d s{};
  for (int k = 0; k < 3; ++k) {
    double v = m[k] * m[k];
    for (int a = 0; a < 3; ++a) v += p.matrix(k, a) * p.matrix(k, a) * var_index[a];
    s[k] = std::sqrt(std::max(v, 1e-12));
  }
  return s;
}

class LinearModel {
 public:
  LinearModel(TransformType type, const Affined& start, Vec3d center)
      : type_(type), c_(center), base_(start.matrix) {
    // t = offset - c + M c
    t_ = start.offset - c_ + start.matrix * c_;
    switch (type_) {
      case TransformType::Translation: p_.assign(3, 0.0); break;
      case TransformType::Rigid: p_.assign(6, 0.0); break;
      default:
        p_.assign(12, 0.0);
        for (int i = 0; i < 9; ++i) p_[std::size_t(i)] = base_.m[i];
        break;
    }
    set_translation(t_);
  }

  std::size_t size() const { return p_.size(); }
  std::vector<double>& parameters() { return p_; }

  Mat3d matrix() const {
    switch (type_) {
      case TransformType::Translation: return base_;
      case TransformType::Rigid: return base_ * rotation_exp({p_[0], p_[1], p_[2]});
      default: {
        Mat3d m{};
        for (int i = 0; i < 9; ++i) m.m[i] = p_[std::size_t(i)];
        return m;
      }
    }
  }
  Vec3d translation() const {
    const std::size_t o = p_.size() - 3;
    return {p_[o], p_[o + 1], p_[o + 2]};
  }
  Affined affine() const {
    const Mat3d m = matrix();
    return {m, c_ + translation() - m * c_};
  }

  /// dL/dparameters from the 12 full-affine terms (row-major [M | t], already divided by C).
  std::vector<double> gradient(const std::vector<double>& g12) const {
    Mat3d gm_full{};
    Vec3d gt{};
    for (int r = 0; r < 3; ++r) {
      for (int k = 0; k < 3; ++k) gm_full(r, k) = g12[std::size_t(4 * r + k)];
      gt[r] = g12[std::size_t(4 * r + 3)];
    }
    Mat3d gm{};  // about the centre
    for (int r = 0; r < 3; ++r)
      for (int k = 0; k < 3; ++k) gm(r, k) = gm_full(r, k) - gt[r] * c_[k];
    std::vector<double> g(p_.size(), 0.0);
    const std::size_t o = p_.size() - 3;
    for (int r = 0; r < 3; ++r) g[o + std::size_t(r)] = gt[r];
    if (type_ == TransformType::Affine) {
      for (int i = 0; i < 9; ++i) g[std::size_t(i)] = gm.m[i];
    } else if (type_ == TransformType::Rigid) {
      // dM/dw_k by central differences of the exponential (double; exact to ~1e-10).
      const double h = 1e-6;
      for (int k = 0; k < 3; ++k) {
        Vec3d wp{p_[0], p_[1], p_[2]}, wm = wp;
        wp[k] += h;
        wm[k] -= h;
        const Mat3d d0 = base_ * rotation_exp(wp), d1 = base_ * rotation_exp(wm);
        double s = 0;
        for (int i = 0; i < 9; ++i) s += gm.m[i] * (d0.m[i] - d1.m[i]) / (2 * h);
        g[std::size_t(k)] = s;
      }
    }
    return g;
  }

  /// The physical shift (mm) per unit of each parameter.
  std::vector<double> scales(Vec3d rms) const {
    std::vector<double> s(p_.size(), 1.0);
    if (type_ == TransformType::Affine) {
      for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) s[std::size_t(3 * r + k)] = rms[k];
    } else if (type_ == TransformType::Rigid) {
      s[0] = std::sqrt(rms.y * rms.y + rms.z * rms.z);
      s[1] = std::sqrt(rms.x * rms.x + rms.z * rms.z);
      s[2] = std::sqrt(rms.x * rms.x + rms.y * rms.y);
    }
    return s;
  }

 private:
  void set_translation(Vec3d t) {
    const std::size_t o = p_.size() - 3;
    p_[o] = t.x;
    p_[o + 1] = t.y;
    p_[o + 2] = t.z;
  }

  TransformType type_;
  Vec3d c_;
  Mat3d base_;
  Vec3d t_{};
  std::vector<double> p_;
};

/// Adam on a handful of host parameters (double).
class HostAdam {
 public:
  explicit HostAdam(std::size_t n) : m_(n, 0.0), v_(n, 0.0) {}
  /// Returns the step (descent direction) for gradient g with learning rate lr.
  std::vector<double> step(const std::vector<double>& g, double lr) {
    ++t_;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-12;
    const double c1 = 1.0 - std::pow(b1, double(t_)), c2 = 1.0 - std::pow(b2, double(t_));
    std::vector<double> d(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      m_[i] = b1 * m_[i] + (1 - b1) * g[i];
      v_[i] = b2 * v_[i] + (1 - b2) * g[i] * g[i];
      d[i] = -lr * (m_[i] / c1) / (std::sqrt(v_[i] / c2) + eps);
    }
    return d;
  }

 private:
  std::vector<double> m_, v_;
  int t_ = 0;
};

}  // namespace

void run_linear_stage(const Inputs& in, const StageParams& stage, int stage_index,
                      const RegistrationParams& params, PipelineState& state,
                      std::vector<LevelReport>& reports) {
  const Context& ctx = in.ctx;
  const Partition& part = *in.part;
  const int levels = int(stage.convergence.iterations.size());
  for (int lv = 0; lv < levels; ++lv) {
    const auto t0 = std::chrono::steady_clock::now();
    Level level = make_level(in, stage, lv);
    const Geometry& fg = level.fixed_geometry;
    const Box owned = level.owned;
    MovingWindow& window = *level.moving;
    MaskCombiner mask(ctx, part, fg, owned, level.mask_halo, &level.fixed_mask, &window);
    Metric metric(ctx, part, stage.metric, fg, owned, level.fixed_range, level.moving_range);
    Volume<float> warped(fg, part.halo_box(fg.size, level.image_halo), 1, ctx.memory_space());
    Volume<float> grad(fg, owned, 1, ctx.memory_space());
    GatheredPartials affine_grad(ctx, part, fg, owned, kAffineTerms);

    LinearModel model(stage.transform, state.affine, state.center);
    const std::vector<double> scale = model.scales(rms_extent(fg, state.center));
    HostAdam adam(model.size());
    const double lr = stage.step * level.min_spacing;
    ConvergenceMonitor monitor(stage.convergence.window);

    LevelReport report;
    report.stage = stage_index;
    report.level = lv;
    report.size = fg.size;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      const Affined a = model.affine();
      window.cover(a, 0.0);
      WarpInputs w;
      w.moving = window.image().view();
      w.moving_geometry = window.geometry();
      w.fixed_geometry = fg;
      w.affine = a;
      w.interpolation = Interpolation::Linear;
      w.boundary = Boundary::Zero;
      mask.update(a, {});
      warp(ctx, w, warped.view(), owned);
      metric.launch(level.fixed.view(), warped, mask.view(), grad.view());
      WarpGradients wg;
      wg.affine = affine_grad.local();
      warp_backward(ctx, w, grad.view(), owned, wg);
      const LossValue loss = metric.value();
      std::vector<double> g12 = reduce_slices(ctx, affine_grad.gather());
      if (record(loss, it, lv, levels, stage_index, stage, params, monitor, report)) {
        report.converged = true;
        break;
      }
      for (double& g : g12) g /= loss.count;  // record() checked that count > 0
      // Adam in scaled parameters q = p * scale: dL/dq = dL/dp / scale, dp = dq / scale.
      std::vector<double> g = model.gradient(g12);
      for (std::size_t i = 0; i < g.size(); ++i) g[i] /= scale[i];
      const std::vector<double> dq = adam.step(g, lr);
      std::vector<double>& p = model.parameters();
      for (std::size_t i = 0; i < p.size(); ++i) p[i] += dq[i] / scale[i];
    }
    state.affine = model.affine();
    finish_level(report, stage, stage_index, lv, levels, t0, reports);
  }
}

}  // namespace gigareg::reg
