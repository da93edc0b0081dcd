#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
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

std::string extension_of(const std::string& path_arg) {
  std::string path = path_arg;
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // "out.zarr/" names out.zarr
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

bool is_zarr_path(const std::string& path) { return extension_of(path) == ".zarr"; }

namespace {

// ---------------------------------------------------------------------------------------------
// Temporaries in progress, for signal handlers: fixed slots that a handler can read without
// locks or allocation (async-signal-safe). A slot is 0 free, 1 being filled or emptied, 2 in use.
// More temporaries than slots at once are not registered (the next run's clean-up still finds
// them).
constexpr int kSlots = 64;
constexpr std::size_t kPathMax = 4096;
struct PendingSlot {
  std::atomic<int> state{0};
  char path[kPathMax];
};
PendingSlot g_pending[kSlots];

int register_pending(const std::string& path) {
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_pending[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_pending[i].path, path.c_str(), path.size() + 1);
    g_pending[i].state.store(2);
    return i;
  }
  return -1;
}

void unregister_pending(int slot) {
  if (slot < 0) return;
  g_pending[slot].state.store(1);
  g_pending[slot].path[0] = '\0';
  g_pending[slot].state.store(0);
}

int slot_of(const std::string& path) {
  for (int i = 0; i < kSlots; ++i)
    if (g_pending[i].state.load() == 2 && path == g_pending[i].path) return i;
  return -1;
}

/// A short tag of this host in temporary names: a process id means something only on its host
/// (output directories may be shared between hosts).
const std::string& host_tag() {
  static const std::string tag = [] {
    char name[256] = {0};
    if (::gethostname(name, sizeof name - 1) != 0) name[0] = '\0';
    std::uint32_t h = 2166136261u;  // FNV-1a: a stable tag, not a secure hash
    for (const char* c = name; *c; ++c) h = (h ^ std::uint8_t(*c)) * 16777619u;
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return std::string(hex);
  }();
  return tag;
}

/// 64 unpredictable bits as 16 hex digits: the temporary's name cannot be guessed in advance, so
/// no link can be planted under it (O_EXCL would refuse it anyway, but then the write would fail).
std::uint64_t random_bits() {
  std::uint64_t bits = 0;
  auto* p = reinterpret_cast<unsigned char*>(&bits);
  std::size_t got = 0;
  while (got < sizeof bits) {
    const ssize_t n = ::getrandom(p + got, sizeof bits - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_error(ErrorKind::Io, "getrandom", std::string("no random bytes: ") + std::strerror(errno));
    got += std::size_t(n);
  }
  return bits;
}

/// The temporary's name up to the process id, `.stem.tmp-<host>-`, the stem shortened so that
/// the whole name fits the file system's `name_max` (with a pid of up to 10 digits and 16 hex
/// digits of token).
std::string temporary_head(const std::string& stem, const std::string& ext, std::size_t name_max,
                           const std::string& tag) {
  const std::string tail = ".tmp-" + tag + "-";
  constexpr std::size_t kPidDigits = 10, kTokenDigits = 16;
  const std::size_t fixed = 1 + tail.size() + kPidDigits + 1 + kTokenDigits + ext.size();
  const std::size_t room = name_max > fixed ? name_max - fixed : 0;
  return "." + stem.substr(0, std::min(stem.size(), room)) + tail;
}

/// The longest file name that `dir`'s file system accepts.
std::size_t name_max_of(const fs::path& dir) {
  const long n = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  return n > 0 ? std::size_t(n) : 255;
}

/// Removes temporaries of `stem`/`ext` in `dir` left by processes of this host that no longer
/// exist (killed while writing: SIGKILL cannot be caught). Only regular files owned by this user
/// are removed, never what a link points to.
void remove_stale_temporaries(const fs::path& dir, const std::string& head, const std::string& ext) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return;
    const std::string name = it->path().filename().string();
    if (name.size() <= head.size() + ext.size() || name.compare(0, head.size(), head) != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    // <pid>-<token> between the head and the extension.
    const std::string middle = name.substr(head.size(), name.size() - head.size() - ext.size());
    const auto dash = middle.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == middle.size() ||
        middle.find_first_not_of("0123456789abcdef-") != std::string::npos ||
        middle.substr(0, dash).find_first_not_of("0123456789") != std::string::npos ||
        middle.find('-', dash + 1) != std::string::npos)
      continue;
    const long pid = std::strtol(middle.substr(0, dash).c_str(), nullptr, 10);
    if (pid <= 0 || pid == long(::getpid())) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || st.st_uid != ::geteuid()) continue;
    if (S_ISREG(st.st_mode)) {
      ::unlink(it->path().c_str());
    } else if (S_ISDIR(st.st_mode) && ext == ".zarr") {
      std::error_code rm;
      fs::remove_all(it->path(), rm);  // a store being written (remove_all follows no link)
    }
  }
}

/// fsync(2) of a file or directory; the error text, empty on success.
std::string sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return std::strerror(errno);
  std::string err;
  if (::fsync(fd) != 0 && !(directory && (errno == EINVAL || errno == EROFS))) err = std::strerror(errno);
  ::close(fd);
  return err;
}

// Whether the directory `path` holds a Zarr store (what a staged .zarr may replace).
bool is_zarr_store(const fs::path& path) {
  std::error_code ec;
  for (const char* marker : {".zgroup", ".zarray", "zarr.json"})
    if (fs::is_regular_file(fs::symlink_status(path / marker, ec))) return true;
  return false;
}

// fsync of every directory of a staged store (its files were flushed by their writers): the
// entries of the store are on disk before it is renamed into place.
std::string sync_tree(const std::string& root) {
  std::string err = sync_path(root, true);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      const std::string e = sync_path(it->path().string(), true);
      if (err.empty()) err = e;
    }
  if (ec && err.empty()) err = ec.message();
  return err;
}

// Moves a complete temporary (file or store directory) over its final name.
void move_into_place(const std::string& temp, const std::string& final_name, std::error_code& ec) {
  ec.clear();
  if (!fs::is_directory(fs::symlink_status(temp, ec))) {
    fs::rename(temp, final_name, ec);
    return;
  }
  // A directory cannot be renamed over a non-empty one: exchange the two atomically (readers
  // see the old store or the new one, never neither), then remove the old one from the
  // temporary's name.
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, final_name.c_str(), RENAME_NOREPLACE) == 0) return;
  if (errno == EINVAL || errno == ENOSYS) {
    // A file system without renameat2's flags: move the old store aside, rename the new one in,
    // remove the old one; not atomic (a reader may find no store for a moment), never partial.
    const fs::file_status old = fs::symlink_status(final_name, ec);
    if (ec) return;
    if (!fs::exists(old)) {
      fs::rename(temp, final_name, ec);
      return;
    }
    if (fs::is_directory(old) && !is_zarr_store(final_name)) {
      ec = std::make_error_code(std::errc::directory_not_empty);
      return;
    }
    const std::string aside = temp + ".old";
    fs::rename(final_name, aside, ec);
    if (ec) return;
    fs::rename(temp, final_name, ec);
    std::error_code rm;
    fs::remove_all(aside, rm);
    return;
  }
  if (errno != EEXIST) {
    ec = std::error_code(errno, std::generic_category());
    return;
  }
  const fs::file_status old = fs::symlink_status(final_name, ec);
  if (ec) return;
  if (fs::is_directory(old) && !is_zarr_store(final_name)) {
    ec = std::make_error_code(std::errc::directory_not_empty);  // someone's data: never replaced
    return;
  }
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, final_name.c_str(), RENAME_EXCHANGE) != 0) {
    ec = std::error_code(errno, std::generic_category());
    return;
  }
  std::error_code rm;
  fs::remove_all(temp, rm);  // the old store (or file, or link: remove_all follows no link)
}

// ---------------------------------------------------------------------------------------------
// The open output set (at most one per process), shared by all threads: the images of a
// registration are written concurrently.
struct SetMember {
  std::string temp, final_name;
  std::shared_ptr<const HeldFile> created;  // the temporary as created
};
struct OpenSet {
  std::mutex mutex;
  bool open = false;
  std::vector<SetMember> staged;
};
OpenSet g_set;

}  // namespace

std::string temporary_path(const std::string& final_path, const TemporaryId& id) {
  const fs::path p(final_path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string name = p.filename().string();
  const std::size_t ext_len = extension_of(final_path).size();
  const std::string stem = name.substr(0, name.size() - ext_len);
  const std::string ext = name.substr(name.size() - ext_len);  // original case
  char tag[9], token[17];
  std::snprintf(tag, sizeof tag, "%08x", unsigned(id[0]));
  std::snprintf(token, sizeof token, "%08x%08x", unsigned(id[2]), unsigned(id[3]));
  return (dir / (temporary_head(stem, ext, name_max_of(dir), tag) + std::to_string(id[1]) + "-" +
                 token + ext))
      .string();
}

StagedFile::StagedFile(std::string final_path) : final_(std::move(final_path)) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  directory_ = is_zarr_path(final_);
  const fs::path p(final_);
  if (p.filename().empty()) throw_error(ErrorKind::Io, final_, "the path names no file");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw_error(ErrorKind::Io, final_, "directory '" + dir.string() + "' does not exist");
  if (!fs::is_directory(dir, ec))
    throw_error(ErrorKind::Io, final_, "'" + dir.string() + "' is not a directory");
  if (fs::is_directory(p, ec) && !(directory_ && is_zarr_store(p)))
    throw_error(ErrorKind::Io, final_,
                directory_ ? "is a directory that holds no Zarr store: not replaced"
                           : "is a directory");

  const std::string name = p.filename().string();
  const std::size_t name_max = name_max_of(dir);
  if (name.size() > name_max)
    throw_error(ErrorKind::Io, final_,
                "the file name is " + std::to_string(name.size()) + " bytes long; the file system of '" +
                    dir.string() + "' allows at most " + std::to_string(name_max));
  const std::size_t ext_len = extension_of(final_).size();
  const std::string stem = name.substr(0, name.size() - ext_len);
  const std::string ext = name.substr(name.size() - ext_len);  // original case
  const std::string head = temporary_head(stem, ext, name_max, host_tag());
  remove_stale_temporaries(dir, head, ext);
  // Created here, exclusively and without following links: a file or link planted under the
  // name makes another name be tried, never written through.
  for (int attempt = 0;; ++attempt) {
    const std::uint64_t token = random_bits();
    id_ = {std::int64_t(std::stoul(host_tag(), nullptr, 16)), std::int64_t(::getpid()),
           std::int64_t(token >> 32), std::int64_t(token & 0xffffffffu)};
    temp_ = temporary_path(final_, id_);
    if (directory_) {
      if (::mkdir(temp_.c_str(), 0777) == 0) {  // mkdir never follows a planted link
        // Held open as the files are, so that commit() can tell it was not swapped meanwhile.
        const int fd = ::open(temp_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
          const int err = errno;
          ::rmdir(temp_.c_str());
          throw_error(ErrorKind::Io, final_, "cannot open the temporary store " + temp_ + ": " + std::strerror(err));
        }
        created_ = std::make_shared<const HeldFile>(fd);
        break;
      }
    } else {
      const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
      if (fd >= 0) {
        created_ = std::make_shared<const HeldFile>(fd);
        break;
      }
    }
    const int err = errno;
    if (err == EEXIST && attempt < 100) continue;
    // The system's reason, which is the real problem: EACCES / EROFS for a read-only directory or
    // mount, ENOSPC, EDQUOT, ...
    throw_error(ErrorKind::Io, final_,
                "cannot create a file in '" + dir.string() + "': " + std::strerror(err));
  }
  register_pending(temp_);
}

namespace {

/// The private directory of WriterName, `gigareg-links-<host>-<pid>-XXXXXX`: made on first use,
/// held open, removed at exit. Private directories of this user's processes on this host that no
/// longer exist (killed) are removed when a new one is made; the host tag keeps a process from
/// judging another node's pids where $TMPDIR is shared between nodes. fd -1 when none can be made
/// (no /proc, no writable temporary directory).
struct PrivateLinkDir {
  int fd = -1;
  std::string path;
  pid_t owner = 0;  // a child forked later must neither use nor remove its parent's directory
  std::atomic<std::uint64_t> next{0};
};

void remove_dir_of_links(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_uid == ::geteuid()) {
    std::error_code ec;
    for (fs::directory_iterator it(path, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      ::unlinkat(fd, it->path().filename().c_str(), 0);  // links (and files): never followed
    ::rmdir(path.c_str());
  }
  ::close(fd);
}

PrivateLinkDir& private_link_dir() {
  static PrivateLinkDir dir;
  static std::once_flag made;
  std::call_once(made, [] {
    if (::access("/proc/self/fd", X_OK) != 0) return;
    const char* env = std::getenv("TMPDIR");
    const fs::path base = env != nullptr && env[0] == '/' ? fs::path(env) : fs::path("/tmp");
    const std::string head = "gigareg-links-" + host_tag() + "-";
    std::error_code ec;
    for (fs::directory_iterator it(base, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.compare(0, head.size(), head) != 0) continue;
      const long pid = std::strtol(name.c_str() + head.size(), nullptr, 10);
      if (pid > 0 && pid != long(::getpid()) && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH)
        remove_dir_of_links(it->path().string());
    }
    std::string name = (base / (head + std::to_string(::getpid()) + "-XXXXXX")).string();
    if (::mkdtemp(name.data()) == nullptr) return;  // mode 0700
    dir.fd = ::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir.fd < 0) {
      ::rmdir(name.c_str());
      return;
    }
    dir.path = name;
    dir.owner = ::getpid();
    std::atexit([] {
      const PrivateLinkDir& made = private_link_dir();
      if (made.owner == ::getpid()) remove_dir_of_links(made.path);
    });
  });
  return dir;
}

}  // namespace

WriterName::WriterName(const HeldFile& file, const std::string& ext, const std::string& temp_path) {
  PrivateLinkDir& dir = private_link_dir();
  if (dir.fd >= 0 && dir.owner == ::getpid()) {
    // The link's name keeps the extension: ITK picks its writer (and compression) by it.
    std::string link = std::to_string(dir.next.fetch_add(1)) + ext;
    const std::string target = "/proc/self/fd/" + std::to_string(file.fd());
    if (::symlinkat(target.c_str(), dir.fd, link.c_str()) == 0) {
      path_ = "/proc/self/fd/" + std::to_string(dir.fd) + "/" + link;
      link_ = std::move(link);
      return;
    }
  }
  path_ = temp_path;
}

WriterName::~WriterName() {
  if (!link_.empty()) ::unlinkat(private_link_dir().fd, link_.c_str(), 0);
}

WriterName StagedFile::writer_name() const {
  const std::string name = fs::path(final_).filename().string();
  return WriterName(*created_, name.substr(name.size() - extension_of(final_).size()), temp_);
}

HeldFile::~HeldFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string HeldFile::mismatch(const std::string& path) const {
  struct stat held {}, now {};
  if (::fstat(fd_, &held) != 0) return std::string("cannot inspect it: ") + std::strerror(errno);
  if (::lstat(path.c_str(), &now) != 0) return std::string("it is gone: ") + std::strerror(errno);
  if (S_ISLNK(now.st_mode)) return "it was replaced by a symbolic link";
  if (now.st_dev != held.st_dev || now.st_ino != held.st_ino) return "it was replaced by another file";
  return {};
}

StagedFile::~StagedFile() {
  if (!committed_) {
    unregister_pending(slot_of(temp_));
    std::error_code ec;
    fs::remove_all(temp_, ec);  // best effort: nothing may be left under any name
  }
}

void StagedFile::commit() {
  std::error_code ec;
  // The held file's identity (below) also settles its type: a store stays the directory made.
  if (!fs::exists(fs::symlink_status(temp_, ec)))
    throw_error(ErrorKind::Io, final_, "the writer reported success but wrote no file");
  // The rename moves whatever the name leads to now: if someone with write access to the
  // directory swapped it for a link or a file of theirs meanwhile (the writers reached the held
  // file through WriterName or O_NOFOLLOW), that must not appear under the final name.
  const std::string swapped = created_->mismatch(temp_);
  if (!swapped.empty())
    throw_error(ErrorKind::Io, final_, "the temporary file " + temp_ + " was not moved into place: " + swapped);
  // Flushed here, by the thread that wrote it: the outputs of a registration are written
  // concurrently, and so their flushes overlap (a set renames them later, all on disk already).
  PhaseClock flush;
  const std::string err = directory_ ? sync_tree(temp_) : sync_path(temp_, false);
  if (!err.empty()) throw_error(ErrorKind::Io, final_, "flushing the written file to disk failed: " + err);
  flush.mark("flush of " + final_ + " (fsync)");
  {
    std::lock_guard<std::mutex> lock(g_set.mutex);
    if (g_set.open) {  // the set renames it with the others
      g_set.staged.push_back({temp_, final_, created_});
      committed_ = true;
      return;
    }
  }
  move_into_place(temp_, final_, ec);
  if (ec) throw_error(ErrorKind::Io, final_, "cannot move the written file into place: " + ec.message());
  unregister_pending(slot_of(temp_));
  committed_ = true;
}

int write_fully(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    p += n;
    left -= std::size_t(n);
  }
  return 0;
}

void StagedFile::write_through_held(const void* bytes, std::size_t size) const {
  const int fd = created_->fd();
  const int err = ::ftruncate(fd, 0) == 0 && ::lseek(fd, 0, SEEK_SET) == 0 ? write_fully(fd, bytes, size) : errno;
  if (err != 0)
    throw_error(ErrorKind::Io, final_, std::string("writing failed (disk full or file size limit?): ") + std::strerror(err));
}

void write_staged_bytes(StagedFile& staged, const void* bytes, std::size_t size) {
  staged.write_through_held(bytes, size);
  staged.commit();
}

void discard_output_set() noexcept {
  std::vector<SetMember> left;
  {
    std::lock_guard<std::mutex> lock(g_set.mutex);
    left.swap(g_set.staged);
  }
  for (const SetMember& member : left) {
    unregister_pending(slot_of(member.temp));
    std::error_code ec;
    fs::remove_all(member.temp, ec);  // remove_all follows no link
  }
}

}  // namespace gigareg::io_detail

namespace gigareg {
namespace fs = std::filesystem;

OutputSet::OutputSet() {
  std::lock_guard<std::mutex> lock(io_detail::g_set.mutex);
  outer_ = !io_detail::g_set.open;  // an inner set joins the open one
  if (outer_) {
    io_detail::g_set.open = true;
    io_detail::g_set.staged.clear();
  }
}

OutputSet::~OutputSet() {
  if (!outer_) return;  // the outer set decides
  io_detail::discard_output_set();  // not committed: none of the set may appear
  std::lock_guard<std::mutex> lock(io_detail::g_set.mutex);
  io_detail::g_set.open = false;
}

void OutputSet::commit() {
  if (!outer_) return;
  std::vector<io_detail::SetMember> files;
  {
    std::lock_guard<std::mutex> lock(io_detail::g_set.mutex);
    files = io_detail::g_set.staged;
  }
  // Everything is on disk before the first rename (StagedFile::commit flushed each file): a
  // crash afterwards leaves complete files only.
  std::vector<std::string> renamed;
  for (const io_detail::SetMember& member : files) {
    const std::string& temp = member.temp;
    const std::string& final_name = member.final_name;
    // Checked again here: the writes of a set may finish long before its commit.
    std::string problem = member.created->mismatch(temp);
    if (!problem.empty()) {
      problem = "the temporary file " + temp + " was not moved into place: " + problem;
    } else {
      std::error_code ec;
      io_detail::move_into_place(temp, final_name, ec);
      if (ec) problem = "cannot move the written file into place: " + ec.message();
    }
    if (!problem.empty()) {
      // The set is broken: the files already renamed stay (a rename cannot be undone safely);
      // the rest are removed by the destructor.
      throw_error(ErrorKind::Io, final_name, problem + (renamed.empty() ? "" : " (" + std::to_string(renamed.size()) +
                                                                              " file(s) of the set were already in place)"));
    }
    io_detail::unregister_pending(io_detail::slot_of(temp));
    renamed.push_back(final_name);
    std::lock_guard<std::mutex> lock(io_detail::g_set.mutex);
    auto& v = io_detail::g_set.staged;
    v.erase(std::remove_if(v.begin(), v.end(), [&](const io_detail::SetMember& m) { return m.temp == temp; }), v.end());
  }
  for (const io_detail::SetMember& member : files) {  // the renames themselves
    const fs::path f(member.final_name);
    const fs::path d = f.has_parent_path() ? f.parent_path() : fs::path(".");
    io_detail::sync_path(d.string(), true);
  }
  std::lock_guard<std::mutex> lock(io_detail::g_set.mutex);
  io_detail::g_set.open = false;
}

void check_output_path(const std::string& path, OutputKind kind) {
  if (path.empty()) throw_error(ErrorKind::InvalidArgument, "output", "an output file name is empty");
  const std::string ext = io_detail::extension_of(path);
  std::vector<std::string> allowed;
  const char* what = "";
  switch (kind) {
    case OutputKind::Image: allowed = {".nii.gz", ".nii", ".nrrd", ".mha", ".zarr"}; what = "a 3-D image"; break;
    case OutputKind::Transform: allowed = {".mat", ".txt", ".tfm", ".h5"}; what = "an affine transform"; break;
    case OutputKind::CompositeTransform: allowed = {".h5"}; what = "a composite transform"; break;
    case OutputKind::Png: allowed = {".png"}; what = "the QC picture"; break;
  }
  if (std::find(allowed.begin(), allowed.end(), ext) == allowed.end()) {
    std::string list;
    for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
    const bool two_file = ext == ".mhd" || ext == ".nhdr" || ext == ".hdr" || ext == ".img" ||
                          ext == ".hdr.gz" || ext == ".img.gz";
    throw_error(ErrorKind::InvalidArgument, path,
                (ext.empty() ? std::string("the name has no extension") : "'" + ext + "' is not a format gigareg writes") +
                    " for " + what + (two_file ? " (a two-file format: the pair cannot appear in one rename)" : "") +
                    "; use " + list);
  }
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_error(ErrorKind::Io, path, "cannot create its directory '" + dir.string() + "': " + ec.message());
  // The probe: the temporary a write would create, created and removed again.
  io_detail::StagedFile probe(path);
}

void remove_pending_temporaries() noexcept {
  for (auto& slot : io_detail::g_pending)
    if (slot.state.load() == 2) ::unlink(slot.path);
}

namespace {
extern "C" void gigareg_cleanup_on_signal(int sig) {
  remove_pending_temporaries();
  ::signal(sig, SIG_DFL);  // then die of the signal as if there were no handler
  ::raise(sig);
}
}  // namespace

void install_temporary_cleanup_handlers() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;  // someone else's
    struct sigaction sa {};
    sa.sa_handler = gigareg_cleanup_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(sig, &sa, nullptr);
  }
}

}  // namespace gigareg
