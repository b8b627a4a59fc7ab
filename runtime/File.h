// Files as the runtime's loaders and writers need them: a regular file read at any offset with
// clear errors, and a write that replaces a file all at once or not at all.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "gradc/Error.h"

namespace gradc {

// A descriptor closed however the scope ends.
struct Descriptor {
  int fd;
  explicit Descriptor(int fd) : fd(fd) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

// A regular file open for reading at any offset.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_.fd < 0) fail(SourceLoc{path_}, "cannot open file: {}", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_.fd, &st) != 0) fail(SourceLoc{path_}, "cannot read file: {}", std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(SourceLoc{path_}, "cannot read file: not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
  }

  uint64_t size() const { return size_; }
  uint64_t left() const { return size_ - at_; }  // bytes after the cursor of read()

  // Reads the next n bytes, front to back.
  void read(void* out, size_t n) {
    read_at(at_, out, n);
    at_ += n;
  }

  void read_at(uint64_t offset, void* out, size_t n) const {
    auto* p = static_cast<std::byte*>(out);
    for (size_t got = 0; got < n;) {
      ssize_t r = ::pread(fd_.fd, p + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail(SourceLoc{path_}, "cannot read file: {}", std::strerror(errno));
      // Sizes were checked against fstat, so only a file changed under us ends early.
      if (r == 0) fail(SourceLoc{path_}, "file ended at byte {} while reading {} bytes at {}", offset + got, n, offset);
      got += static_cast<size_t>(r);
    }
  }

 private:
  std::string path_;
  Descriptor fd_;
  uint64_t size_ = 0;
  uint64_t at_ = 0;
};

// Writes `pieces`, one after the other, to a temporary file next to `path` (path + ".tmp-XXXXXX"),
// syncs it to disk and renames it over `path`, so that a reader, or a crash, sees the old file or
// the new one and never a mix. On failure the temporary is removed and gradc::Error says which
// step failed and why. Shared by every writer of the runtime (checkpoints, .npy arrays).
void write_file_atomically(const std::string& path, const std::vector<std::span<const std::byte>>& pieces);

}  // namespace gradc
