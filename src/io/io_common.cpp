#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {
namespace fs = std::filesystem;

std::string itk_message(const itk::ExceptionObject& e) {
  std::string d = e.GetDescription();
  // "ITK ERROR: NrrdImageIO(0x55d1c0): Read: ..." -> "NrrdImageIO: Read: ..."
  for (const char* banner : {"ITK ERROR: ", "itk::ERROR: "}) {
    if (d.rfind(banner, 0) != 0) continue;
    d.erase(0, std::strlen(banner));
    const auto open = d.find("(0x");
    const auto close = d.find("): ");
    if (open != std::string::npos && close != std::string::npos && open < close)
      d.erase(open, close + 1 - open);
    break;
  }
  while (!d.empty() && std::isspace(static_cast<unsigned char>(d.back()))) d.pop_back();
  return d.empty() ? std::string(e.what()) : d;
}

void require_readable_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      throw_error(ErrorKind::Io, path, "cannot access the file: " + ec.message());
    throw_error(ErrorKind::Io, path, "file does not exist");
  }
  if (fs::is_directory(st)) throw_error(ErrorKind::Io, path, "is a directory, not a file");
  if (!fs::is_regular_file(st)) throw_error(ErrorKind::Io, path, "is not a regular file");
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw_error(ErrorKind::Io, path, std::string("cannot open the file: ") + std::strerror(errno));
}

std::string extension_of(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  const auto last = name.find_last_of('.');
  if (last == std::string::npos || last == 0) return "";
  const std::string tail = name.substr(last);
  if (tail == ".gz" || tail == ".bz2" || tail == ".zst") {
    const auto prev = name.find_last_of('.', last - 1);
    if (prev != std::string::npos && prev != 0) return name.substr(prev);
  }
  return tail;
}

StagedFile::StagedFile(std::string final_path) : final_(std::move(final_path)) {
  const fs::path p(final_);
  if (p.filename().empty()) throw_error(ErrorKind::Io, final_, "the path names no file");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw_error(ErrorKind::Io, final_, "directory '" + dir.string() + "' does not exist");
  if (!fs::is_directory(dir, ec))
    throw_error(ErrorKind::Io, final_, "'" + dir.string() + "' is not a directory");
  if (fs::is_directory(p, ec)) throw_error(ErrorKind::Io, final_, "is a directory");

  static std::atomic<unsigned long> counter{0};
  const std::string name = p.filename().string();
  const std::size_t ext_len = extension_of(final_).size();
  const std::string stem = name.substr(0, name.size() - ext_len);
  const std::string ext = name.substr(name.size() - ext_len);  // original case
  temp_ = (dir / ("." + stem + ".tmp-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)) + ext))
              .string();
}

StagedFile::~StagedFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);  // best effort: nothing may be left under any name
  }
}

void StagedFile::commit() {
  std::error_code ec;
  if (!fs::is_regular_file(temp_, ec))
    throw_error(ErrorKind::Io, final_, "the writer reported success but wrote no file");
  fs::rename(temp_, final_, ec);
  if (ec) throw_error(ErrorKind::Io, final_, "cannot move the written file into place: " + ec.message());
  committed_ = true;
}

}  // namespace gigareg::io_detail
