// ITK transform files in HDF5 (.h5) written with the HDF5 C API, so that two identical runs write
// identical bytes (issue 18, item 14).
//
// ITK's HDF5TransformIO creates its groups and datasets with HDF5's default property lists, which
// record the creation and modification times of every object in the file: two runs a second apart
// differ. ITK gives no access to those lists, so gigareg lays the file out as ITK does (the same
// paths, types and values: ITK's reader, ANTs and gigareg read it unchanged) but with object time
// tracking off. The paths come from ITK's own HDF5CommonPathNames; the values from the transforms'
// GetTransformTypeAsString / GetFixedParameters / GetParameters, as ITK's writer takes them.

#include <hdf5.h>
#include <itkCompositeTransform.h>
#include <itkHDF5TransformIO.h>
#include <itkVersion.h>
#include <sys/utsname.h>

#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {
namespace {

using Names = itk::HDF5CommonPathNames;

/// One HDF5 identifier, closed by the given function when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t), const std::string& path, const char* what) : id_(id), close_(close) {
    if (id_ < 0) throw_error(ErrorKind::Io, path, std::string("HDF5 failed to ") + what);
  }
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

class Writer {
 public:
  Writer(const std::string& file, const std::string& path)
      : path_(path),
        fcpl_(H5Pcreate(H5P_FILE_CREATE), H5Pclose, path, "create a property list"),
        fapl_(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, path, "create a property list"),
        ocpl_group_(H5Pcreate(H5P_GROUP_CREATE), H5Pclose, path, "create a property list"),
        ocpl_dataset_(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path, "create a property list"),
        file_(create(file), H5Fclose, path, "create the file") {}

  void group(const std::string& name) {
    Handle g(H5Gcreate2(file_.get(), name.c_str(), H5P_DEFAULT, ocpl_group_.get(), H5P_DEFAULT), H5Gclose, path_,
             ("create the group " + name).c_str());
  }

  void string(const std::string& name, const std::string& value) {
    Handle type(H5Tcopy(H5T_C_S1), H5Tclose, path_, "copy a string type");
    check(H5Tset_size(type.get(), H5T_VARIABLE), "set a string size");
    const hsize_t one = 1;
    Handle space(H5Screate_simple(1, &one, nullptr), H5Sclose, path_, "create a dataspace");
    Handle set(H5Dcreate2(file_.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, ocpl_dataset_.get(),
                          H5P_DEFAULT),
               H5Dclose, path_, ("create the dataset " + name).c_str());
    const char* text = value.c_str();
    check(H5Dwrite(set.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &text), "write a string");
  }

  void doubles(const std::string& name, const std::vector<double>& values) {
    const hsize_t n = values.size();
    Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose, path_, "create a dataspace");
    Handle set(H5Dcreate2(file_.get(), name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, ocpl_dataset_.get(),
                          H5P_DEFAULT),
               H5Dclose, path_, ("create the dataset " + name).c_str());
    if (n > 0) check(H5Dwrite(set.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "write values");
  }

  void close() { check(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "flush the file"); }

 private:
  hid_t create(const std::string& file) {
    // No creation, modification or access times in any object header, the root group's included.
    check(H5Pset_obj_track_times(fcpl_.get(), false), "turn time tracking off");
    check(H5Pset_obj_track_times(ocpl_group_.get(), false), "turn time tracking off");
    check(H5Pset_obj_track_times(ocpl_dataset_.get(), false), "turn time tracking off");
    // The format ITK writes: readable by HDF5 1.8 (ITK and ANTs builds of that age).
    check(H5Pset_libver_bounds(fapl_.get(), H5F_LIBVER_V18, H5F_LIBVER_V18), "set the format version");
    return H5Fcreate(file.c_str(), H5F_ACC_TRUNC, fcpl_.get(), fapl_.get());
  }
  void check(herr_t status, const char* what) const {
    if (status < 0) throw_error(ErrorKind::Io, path_, std::string("HDF5 failed to ") + what);
  }

  std::string path_;
  Handle fcpl_, fapl_, ocpl_group_, ocpl_dataset_, file_;
};

template <class Array>
std::vector<double> values_of(const Array& a) {
  std::vector<double> v(a.Size());
  for (unsigned i = 0; i < a.Size(); ++i) v[i] = double(a[i]);
  return v;
}

}  // namespace

void write_transform_h5(const std::string& file, const std::string& path,
                        const itk::TransformBaseTemplate<double>* transform) {
  // ITK's list: a composite first (its type only), then its members in its order.
  std::vector<const itk::TransformBaseTemplate<double>*> list{transform};
  if (const auto* composite = dynamic_cast<const itk::CompositeTransform<double, 3>*>(transform))
    for (unsigned k = 0; k < composite->GetNumberOfTransforms(); ++k)
      list.push_back(composite->GetNthTransformConstPointer(k));

  // HDF5 prints a trace of every failure on stderr by default; the errors here name the file.
  H5E_auto2_t old_handler = nullptr;
  void* old_data = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &old_handler, &old_data);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  struct RestoreHandler {
    H5E_auto2_t handler;
    void* data;
    ~RestoreHandler() { H5Eset_auto2(H5E_DEFAULT, handler, data); }
  } restore{old_handler, old_data};

  struct utsname host {};
  const bool have_uname = ::uname(&host) == 0;
  Writer w(file, path);
  w.string(Names::ItkVersion, itk::Version::GetITKVersion());
  w.string(Names::HDFVersion, H5_VERS_INFO);
  w.string(Names::OSName, have_uname ? host.sysname : "");
  w.string(Names::OSVersion, have_uname ? host.release : "");
  w.group(Names::transformGroupName);
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string name = itk::GetTransformName(int(i));
    w.group(name);
    const std::string type = list[i]->GetTransformTypeAsString();
    w.string(name + Names::transformTypeName, type);
    if (type.find("CompositeTransform") != std::string::npos) {
      if (i != 0) throw_error(ErrorKind::InvalidArgument, path, "a composite transform can only come first");
      continue;  // a composite stores no parameters of its own
    }
    w.doubles(name + Names::transformFixedName, values_of(list[i]->GetFixedParameters()));
    w.doubles(name + Names::transformParamsName, values_of(list[i]->GetParameters()));
  }
  w.close();
}

}  // namespace gigareg::io_detail
