// Explicit registration of the ITK I/O factories gigareg uses. ITK normally registers them through
// ITK_USE_FILE / its factory register managers; gigareg links ITK modules by name and does it here
// instead, so that reading a file never depends on how the calling program was built.

#include <itkHDF5TransformIOFactory.h>
#include <itkMatlabTransformIOFactory.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkObjectFactoryBase.h>
#include <itkPNGImageIOFactory.h>
#include <itkTransformFactory.h>
#include <itkTxtTransformIOFactory.h>

#include <cstring>
#include <mutex>

#include "gigareg/io.hpp"

namespace gigareg {
namespace {

bool is_registered(const char* class_name) {
  for (itk::ObjectFactoryBase* f : itk::ObjectFactoryBase::GetRegisteredFactories())
    if (f && std::strcmp(f->GetNameOfClass(), class_name) == 0) return true;
  return false;
}

template <class Factory>
void register_once(const char* class_name) {
  if (!is_registered(class_name)) Factory::RegisterOneFactory();
}

}  // namespace

void register_itk_io_factories() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_once<itk::NiftiImageIOFactory>("NiftiImageIOFactory");
    register_once<itk::NrrdImageIOFactory>("NrrdImageIOFactory");
    register_once<itk::MetaImageIOFactory>("MetaImageIOFactory");
    register_once<itk::PNGImageIOFactory>("PNGImageIOFactory");
    register_once<itk::MatlabTransformIOFactory>("MatlabTransformIOFactory");
    register_once<itk::TxtTransformIOFactory>("TxtTransformIOFactory");
    register_once<itk::HDF5TransformIOFactory>("HDF5TransformIOFactory");
    // ITK's default transform list lacks the base class, which is what ANTs writes to
    // prefix0GenericAffine.mat (MatrixOffsetTransformBase_double_3_3).
    itk::TransformFactory<itk::MatrixOffsetTransformBase<double, 3, 3>>::RegisterTransform();
    itk::TransformFactory<itk::MatrixOffsetTransformBase<float, 3, 3>>::RegisterTransform();
  });
}

}  // namespace gigareg
