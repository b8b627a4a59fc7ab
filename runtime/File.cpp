#include "runtime/File.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string_view>
#include <utility>

namespace gradc {
namespace {

// The mode a file created by open(..., 0666) would get. mkstemp creates 0600, which would make
// checkpoints private where every other output is not. The umask is read from /proc instead of
// set and restored, which would race with other threads creating files.
mode_t new_file_mode() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("Umask:")) return 0666 & ~static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
  return 0644;
}

// The temporary file of one write: closed on every path, and removed unless renamed into place.
class TempFile {
 public:
  explicit TempFile(const std::string& target)
      : target_(target), name_(target + ".tmp-XXXXXX"), fd_(::mkstemp(name_.data())) {
    // On failure mkstemp leaves a random name in the template that names no file; show the pattern.
    if (fd_.fd < 0)
      fail(SourceLoc{target_}, "cannot save: creating the temporary file {}.tmp-XXXXXX: {}", target_,
           std::strerror(errno));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!committed_) ::unlink(name_.c_str());
  }

  void write(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_.fd, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) step_failed("writing");
      bytes = bytes.subspan(static_cast<size_t>(n));
    }
  }

  void commit() {
    if (::fchmod(fd_.fd, new_file_mode()) != 0) {
      // A file system without modes keeps the file private, which is still a correct save.
    }
    if (::fsync(fd_.fd) != 0) step_failed("syncing");
    int fd = std::exchange(fd_.fd, -1);
    // Network file systems may report a failed write only here.
    if (::close(fd) != 0) step_failed("closing");
    if (std::rename(name_.c_str(), target_.c_str()) != 0)
      fail(SourceLoc{target_}, "cannot save: renaming {} over it: {}", name_, std::strerror(errno));
    committed_ = true;
    sync_directory();
  }

 private:
  [[noreturn]] void step_failed(std::string_view step) {
    fail(SourceLoc{target_}, "cannot save: {} {}: {}", step, name_, std::strerror(errno));
  }

  // Makes the rename itself durable. The new file is complete either way, so a failure here
  // (some file systems refuse to sync a directory) is not worth failing the save for.
  void sync_directory() const {
    auto slash = target_.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : target_.substr(0, slash);
    Descriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir_fd.fd >= 0 && ::fsync(dir_fd.fd) != 0) {
      // Ignored, as said above.
    }
  }

  std::string target_;
  std::string name_;
  Descriptor fd_;
  bool committed_ = false;
};

}  // namespace

void write_file_atomically(const std::string& path, const std::vector<std::span<const std::byte>>& pieces) {
  TempFile tmp(path);
  for (auto piece : pieces) tmp.write(piece);
  tmp.commit();
}

}  // namespace gradc
