// Linear stages (translation, rigid, affine): Adam on the transform parameters with the gradient
// of the metric through warp_backward's 12 affine partials, level by level (the hooks of the
// level driver).
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

#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "gigareg/ops/warp.hpp"
#include "registration/reductions.hpp"
#include "registration/stages.hpp"

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

/// The hooks of a linear stage: per level a fresh parameterisation about the centre, starting at
/// the affine so far, and Adam on its parameters.
class LinearLevels final : public StageLevels {
 public:
  LinearLevels(const StageRun& run, PipelineState& state) : run_(run), state_(state) {}

  void initialize_level(LevelRun& run) override {
    const Context& ctx = run_.in.ctx;
    const Geometry& fg = run.level.fixed_geometry;
    grad_ = Volume<float>(fg, run.level.owned, 1, ctx.memory_space());
    affine_grad_.emplace(ctx, *run_.in.part, fg, run.level.owned, kAffineTerms);
    model_.emplace(run_.stage.transform, state_.affine, state_.center);
    scale_ = model_->scales(rms_extent(fg, state_.center));
    adam_.emplace(model_->size());
    lr_ = run_.stage.step * run.level.min_spacing;
  }

  /// Warp, loss and dL/dA (12 terms); reads the loss and the gathered gradient.
  LossValue iterate(LevelRun& run, int) override {
    const Context& ctx = run_.in.ctx;
    MovingWindow& window = *run.level.moving;
    const Box owned = run.level.owned;
    const Affined a = model_->affine();
    window.cover(a, 0.0);
    WarpInputs w;
    w.moving = window.image().view();
    w.moving_geometry = window.geometry();
    w.fixed_geometry = run.level.fixed_geometry;
    w.affine = a;
    w.interpolation = Interpolation::Linear;
    w.boundary = Boundary::Zero;
    run.mask.update(a, {});
    warp(ctx, w, run.warped.view(), owned);
    run.metric.launch(run.level.fixed.view(), run.warped, run.mask.view(), grad_.view());
    WarpGradients wg;
    wg.affine = affine_grad_->local();
    warp_backward(ctx, w, grad_.view(), owned, wg);
    loss_ = run.metric.value();
    g12_ = reduce_slices(ctx, affine_grad_->gather());
    return loss_;
  }

  /// The parameters' Adam step (on the host: it needs the loss's voxel count and the gradient).
  void update(LevelRun&) override {
    for (double& g : g12_) g /= loss_.count;  // record_iteration() checked that count > 0
    // Adam in scaled parameters q = p * scale: dL/dq = dL/dp / scale, dp = dq / scale.
    std::vector<double> g = model_->gradient(g12_);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] /= scale_[i];
    const std::vector<double> dq = adam_->step(g, lr_);
    std::vector<double>& p = model_->parameters();
    for (std::size_t i = 0; i < p.size(); ++i) p[i] += dq[i] / scale_[i];
    // Parameters that overflow (a step like Rigid[1e308], or a gradient that overflows with
    // intensities near float's limit) would surface later as a non-finite matrix in the warp op,
    // far from their cause: say it here, naming the stage's option.
    for (double v : p)
      if (!std::isfinite(v))
        throw_error(ErrorKind::InvalidArgument, "-t/--transform",
                    "stage " + std::to_string(run_.index + 1) + " (" + to_string(run_.stage.transform) +
                        "): the transform's parameters overflowed: the gradient step " +
                        std::to_string(run_.stage.step) +
                        " is far too large, or the images' intensities are (the metric's gradient)");
  }

  void finish_level(LevelRun&) override {
    state_.affine = model_->affine();
    grad_ = Volume<float>();
    affine_grad_.reset();
  }

 private:
  StageRun run_;
  PipelineState& state_;
  Volume<float> grad_;                          // dS/dW on the owned box
  std::optional<GatheredPartials> affine_grad_;  // warp_backward's 12 affine terms per slice
  std::optional<LinearModel> model_;
  std::vector<double> scale_;
  std::optional<HostAdam> adam_;
  double lr_ = 0;
  LossValue loss_{};
  std::vector<double> g12_;
};

}  // namespace

std::unique_ptr<StageLevels> linear_stage(const StageRun& run, PipelineState& state) {
  return std::make_unique<LinearLevels>(run, state);
}

}  // namespace gigareg::reg
