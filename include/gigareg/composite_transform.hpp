#pragma once
// Composite transform files as antsRegistration writes them with --write-composite-transform 1:
// prefixComposite.h5 and prefixInverseComposite.h5, each one itk::CompositeTransform<double,3>
// (CompositeTransform_double_3_3) in ITK's HDF5 transform format, readable by
// itk::TransformFileReader and usable as a single `-t` of antsApplyTransforms (and of gigareg
// apply, which reads them with read_transform_chain).
//
// ITK's composite applies the LAST transform in its list first to a point. So:
//   Composite.h5         [AffineTransform A, DisplacementFieldTransform u]:
//                        x -> A(x + u(x)), fixed -> moving, what `-t prefix1Warp.nii.gz
//                        -t prefix0GenericAffine.mat` gives;
//   InverseComposite.h5  [DisplacementFieldTransform w, AffineTransform A^-1]:
//                        y -> z + w(z), z = A^-1 y, moving -> fixed, what `-t
//                        [prefix0GenericAffine.mat,1] -t prefix1InverseWarp.nii.gz` gives.
// Without a field, the composite holds the affine alone. Fields are stored as
// DisplacementFieldTransform_double_3_3 on their own grid (ITK's fixed parameters: size, origin,
// spacing, direction), displacements in physical LPS mm.

#include <string>
#include <vector>

#include "gigareg/io.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

/// Writes [affine, warp] (warp may be null or empty: the affine alone). The path must end in .h5;
/// the file appears under its name only once complete. Errors: Error naming the path.
void write_composite_transform(const std::string& path, const ItkAffine& affine,
                               const DisplacementField* warp);

/// Writes [inverse_warp, affine^-1] (inverse_warp may be null or empty: the inverse affine alone).
void write_inverse_composite_transform(const std::string& path, const ItkAffine& affine,
                                       const DisplacementField* inverse_warp);

/// One transform of a chain read from a file: an affine (fixed -> moving points, y = A x) or a
/// displacement field (x -> x + u(x), host volume, mm).
struct ChainTransform {
  bool is_field = false;
  Affined affine = Affined::identity();
  DisplacementField field;
};

/// The transforms of an ITK transform file in the order they act on a point (the first entry
/// first): a CompositeTransform is unrolled (ITK applies its last member first; nested composites
/// are unrolled too), a single transform is a chain of one. Members may be linear
/// (MatrixOffsetTransformBase and its subclasses: Affine, Euler, Similarity, VersorRigid, ...) or
/// DisplacementFieldTransform (float or double); anything else is InvalidInput naming the file
/// and the class. Formats: whatever ITK's transform IO reads (.h5, .mat, .txt, .tfm).
std::vector<ChainTransform> read_transform_chain(const std::string& path);

}  // namespace gigareg
