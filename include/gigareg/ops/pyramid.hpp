#pragma once
// Multi-resolution pyramid: level grids, downsampling of images (blur then resample) and
// upsampling of displacement fields to a finer level.
//
// Level size rule (one global rule, the same on every rank): along each axis
//     level_size = max(1, floor(size / f))
// for a shrink factor f >= 1, as ITK's ShrinkImageFilter (which ANTs' antsRegistration uses for
// its --shrink-factors) computes it; e.g. 100 -> 50 (f 2), 33 (f 3); 5 -> 2 (f 2); 1 -> 1.
// The level geometry is resized_geometry(fine, level_size): same direction, same physical
// extent (the outer voxel corners stay in place), spacing = fine spacing * size / level_size.
//
// Resampling maps every destination voxel centre through physical space into the source grid
// (dst index -> dst physical -> src continuous index, the affine evaluated in double) and samples
// the source trilinearly. Boundary: the continuous source index is clamped to [0, size - 1] along
// each axis (replicate the edge voxel): a destination centre in the outer half voxel of the
// source grid takes the edge value. Values are not rescaled: a displacement field in physical mm
// keeps its values when upsampled.
//
// Downsampling first blurs the fine image with a Gaussian of sigma given in fine-grid voxels
// (gaussian_smooth's kernel and boundary; convert ANTs-style sigmas in mm with
// sigma_mm_to_voxels(fine_geometry, sigma_mm)), then resamples the blurred image at the level's
// voxel centres.
//
// Sharding: a destination owned box needs the source box resample_source_box(...) (the
// trilinear support of its voxel centres, clipped to the grid); downsampling needs
// downsample_input_box(...) of the fine image: that box grown by the blur radii, clipped.
// For z-slabs of equal-extent grids the halo is about 1 + r_z fine voxels beyond the fine box
// under the slab. Only `owned` is written; a slab with these halos computes bitwise what the
// whole volume computes.

#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/ops/smooth.hpp"

namespace gigareg {

/// max(1, floor(size / f)) per axis; f must be finite and >= 1.
Index3 pyramid_level_size(Index3 fine_size, Vec3d shrink_factors);
Index3 pyramid_level_size(Index3 fine_size, double shrink_factor);

/// resized_geometry(fine, pyramid_level_size(fine.size, f)).
Geometry pyramid_level_geometry(const Geometry& fine, Vec3d shrink_factors);
Geometry pyramid_level_geometry(const Geometry& fine, double shrink_factor);

/// The source-grid box whose samples the trilinear resampling of `dst_owned` reads.
Box resample_source_box(const Geometry& src_geometry, const Geometry& dst_geometry,
                        const Box& dst_owned);

/// The fine-grid box that pyramid_downsample of `coarse_owned` reads.
Box downsample_input_box(const Geometry& fine_geometry, const Geometry& coarse_geometry,
                         const Box& coarse_owned, Vec3d sigma_fine_voxels,
                         double truncation = kDefaultGaussianTruncation);

/// dst = src sampled trilinearly at dst's voxel centres (all components), on dst_owned.
/// src.global_size must equal src_geometry.size and dst.global_size dst_geometry.size.
void resample_trilinear(const Context& ctx, VolumeView<const float> src,
                        const Geometry& src_geometry, VolumeView<float> dst,
                        const Geometry& dst_geometry, const Box& dst_owned);

/// coarse = resample(G_sigma * fine) on coarse_owned. Scratch: the blurred fine box
/// (resample_source_box) for all components, host memory or cudaMallocAsync on ctx.stream.
void pyramid_downsample(const Context& ctx, VolumeView<const float> fine,
                        const Geometry& fine_geometry, VolumeView<float> coarse,
                        const Geometry& coarse_geometry, Vec3d sigma_fine_voxels,
                        const Box& coarse_owned, double truncation = kDefaultGaussianTruncation);

/// A displacement field (mm, component planes) of a coarse level resampled trilinearly onto the
/// finer level's grid, on fine_owned: resample_trilinear with the field's values unchanged.
void pyramid_upsample_field(const Context& ctx, VolumeView<const float> coarse_field,
                            const Geometry& coarse_geometry, VolumeView<float> fine_field,
                            const Geometry& fine_geometry, const Box& fine_owned);

}  // namespace gigareg
