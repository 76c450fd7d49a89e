#include "autoqnn/output_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace autoqnn {

namespace fs = std::filesystem;

namespace {
const char* kTempTag = ".autoqnn-tmp.";
const char* kLegacyTempTag = ".tmp.";  // written by autoqnn before the tag above
const char* kLockSuffix = ".autoqnn-lock";

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// A pid that no process has any more (EPERM: it exists under another user).
bool process_gone(long pid) { return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

// The pid of a temporary named "<target><tag><pid>", or -1.
long temp_pid(const std::string& name, const std::string& target, const char* tag) {
  const std::string prefix = target + tag;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string pid = name.substr(prefix.size());
  return all_digits(pid) ? std::stol(pid) : -1;
}

// The pid of any "<x><tag><pid>", with its target's name, or -1.
long any_temp_pid(const std::string& name, const char* tag) {
  auto pos = name.rfind(tag);
  if (pos == std::string::npos || pos == 0) return -1;
  const std::string pid = name.substr(pos + std::strlen(tag));
  return all_digits(pid) ? std::stol(pid) : -1;
}

std::string errno_text(int e) { return std::strerror(e); }
}  // namespace

std::string temp_path_for(const std::string& path) { return path + kTempTag + std::to_string(::getpid()); }

std::vector<std::string> remove_stale_temps(const std::string& path) {
  std::vector<std::string> removed;
  fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string target = p.filename().string();
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    long pid = temp_pid(name, target, kTempTag);
    if (pid < 0) pid = temp_pid(name, target, kLegacyTempTag);
    if (pid < 0 || !process_gone(pid)) continue;
    std::error_code rec;
    if (it->is_regular_file(rec) && fs::remove(it->path(), rec)) removed.push_back(it->path().string());
  }
  return removed;
}

std::vector<std::string> clean_stale_files(const std::string& dir, bool recursive) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("clean: '" + dir + "' is not a directory");
  std::vector<fs::path> candidates;
  auto consider = [&](const fs::directory_entry& e) {
    std::error_code rec;
    if (!e.is_regular_file(rec)) return;
    const std::string name = e.path().filename().string();
    const long pid = any_temp_pid(name, kTempTag);
    if (pid > 0 && process_gone(pid)) candidates.push_back(e.path());
    else if (name.size() > std::strlen(kLockSuffix) &&
             name.compare(name.size() - std::strlen(kLockSuffix), std::string::npos, kLockSuffix) == 0)
      candidates.push_back(e.path());
  };
  if (recursive) {
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec))
      consider(*it);
  } else {
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) consider(*it);
  }
  if (ec) throw std::runtime_error("clean: cannot list '" + dir + "': " + ec.message());
  std::vector<std::string> removed;
  for (const auto& p : candidates) {
    if (p.filename().string().find(kLockSuffix) != std::string::npos) {
      // a lock file: removed only when no process holds it
      int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) continue;
      bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
      if (free) {
        std::error_code rec;
        if (fs::remove(p, rec)) removed.push_back(p.string());
      }
      ::close(fd);
      continue;
    }
    std::error_code rec;
    if (fs::remove(p, rec)) removed.push_back(p.string());
  }
  return removed;
}

void check_output_path(const std::string& path, const std::string& what) {
  if (path.empty()) throw std::runtime_error(what + ": empty path");
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec))
    throw std::runtime_error(what + " '" + path + "' is a directory; give a file name (e.g. '" +
                             (p / "out").string() + "')");
  if (p.filename().empty() || p.filename() == "." || p.filename() == "..")
    throw std::runtime_error(what + " '" + path + "' names a directory; give a file name");
  // the nearest existing ancestor must be a directory (a file in the way cannot become one)
  fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  for (fs::path a = parent; !a.empty(); a = a.parent_path()) {
    fs::file_status st = fs::status(a, ec);
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
      throw std::runtime_error(what + " '" + path + "': cannot inspect '" + a.string() + "': " + ec.message());
    if (fs::exists(st)) {
      if (!fs::is_directory(st))
        throw std::runtime_error(what + " '" + path + "': '" + a.string() +
                                 "' is a file, not a directory, so nothing can be written under it");
      if (a == parent && ::access(a.c_str(), W_OK | X_OK) != 0)
        throw std::runtime_error(what + " '" + path + "': directory '" + a.string() +
                                 "' is not writable (" + errno_text(errno) + ")");
      break;
    }
    if (a == a.parent_path()) break;
  }
  if (fs::exists(p, ec) && !fs::is_regular_file(p, ec))
    throw std::runtime_error(what + " '" + path + "' exists and is not a regular file");
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (a.empty() || b.empty()) return false;
  if (!fs::exists(a, ec) || !fs::exists(b, ec)) {
    // neither exists yet (two outputs): compare the resolved names
    auto ca = fs::weakly_canonical(a, ec);
    if (ec) return false;
    auto cb = fs::weakly_canonical(b, ec);
    return !ec && ca == cb;
  }
  return fs::equivalent(a, b, ec) && !ec;
}

void write_file_bytes(const std::string& path, const void* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create '" + path + "': " + errno_text(errno));
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw std::runtime_error("cannot write '" + path + "': " + errno_text(e) + " after " +
                               std::to_string(size - left) + " of " + std::to_string(size) + " bytes");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot write '" + path + "': " + errno_text(e));
  }
  if (::close(fd) != 0) throw std::runtime_error("cannot write '" + path + "': " + errno_text(errno));
}

std::string OutputLock::lock_path_for(const std::string& path) { return path + kLockSuffix; }

OutputLock::OutputLock(const std::string& path, const std::string& what) : lock_path_(lock_path_for(path)) {
  std::error_code ec;
  fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  if (!fs::exists(parent, ec)) fs::create_directories(parent, ec);  // where the output will go anyway
  // A lock file can be unlinked by its releasing holder between our open and flock: then the lock we got
  // is on a dead inode, so check that the path still names it, and retry.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw std::runtime_error(what + " '" + path + "': cannot create the lock file '" + lock_path_ +
                               "': " + errno_text(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {0};
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      ::close(fd);
      std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      throw std::runtime_error(what + " '" + path + "' is being written by another autoqnn process (pid " + holder +
                               ", lock '" + lock_path_ + "'); wait for it to finish or choose another path");
    }
    struct stat a {}, b {};
    if (::fstat(fd, &a) == 0 && ::stat(lock_path_.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      const std::string pid = std::to_string(::getpid()) + "\n";
      if (::ftruncate(fd, 0) == 0) {
        ssize_t ignored = ::pwrite(fd, pid.data(), pid.size(), 0);
        (void)ignored;
      }
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw std::runtime_error(what + " '" + path + "': could not take the lock '" + lock_path_ + "'");
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // still holding the lock: a waiter re-checks the inode
  ::close(fd_);
}

}  // namespace autoqnn
