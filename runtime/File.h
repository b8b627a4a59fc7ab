// Files as the runtime's loaders and writers need them: a regular file read at any offset with
// clear errors, and a write that replaces a file all at once or not at all.
#pragma once

#include <atomic>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/Format.h"

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

// What a file of `mode` is, for messages: "a directory", "a FIFO (named pipe)", ...
std::string_view file_kind(mode_t mode);

// Opens `path` (through symlinks) for reading and returns the descriptor, which the caller
// closes; throws unless it is a regular file. The type is checked before the open and again on
// the open descriptor, and the open does not block, so that a FIFO, a device or a socket is
// refused at once and never waited on.
int open_regular_file(const std::string& path);

// A regular file open for reading at any offset.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path), fd_(open_regular_file(path)) {
    struct stat st {};
    if (::fstat(fd_.fd, &st) != 0) fail(SourceLoc{path_}, "cannot read file: {}", std::strerror(errno));
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

// Writes `pieces`, one after the other, to a temporary file next to `path` (DIR/.NAME.gradc-tmp-XXXXXX
// for DIR/NAME), syncs it to disk and renames it over `path`, so that a reader, or a crash, sees
// the old file or the new one and never a mix. `path` must be a new path or a regular file (a
// symlink to one: the file it points to is replaced and the link kept); a directory, FIFO,
// device or socket is refused before anything is written. On failure the temporary is removed
// and gradc::Error says which step failed and why. Shared by every writer of the runtime
// (checkpoints, .npy arrays, logs).
void write_file_atomically(const std::string& path, const std::vector<std::span<const std::byte>>& pieces);

// Throws the error write_file_atomically would for a path it must not write over (a directory,
// FIFO, device, socket, or a symlink to one): for commands that check their outputs up front.
void check_output_path(const std::string& path);

// A command's files, each with what names it (an option, "the spec"): for checking them before any work.
struct NamedPath {
  std::string what;  // "--save", "--input x", "the spec", ...
  std::string path;
};

// Refuses, before a command reads or writes anything, outputs that would destroy a file the user
// still needs or each other: an output that is one of the inputs (the spec, a data file, the
// checkpoint loaded; the same file by any path or link), two outputs onto one file (the second
// write would replace the first), an empty path, and an output in a directory that does not
// exist (found at the end of a long run otherwise); then each output as check_output_path does.
void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs);

// The temporary a write in progress would leave behind if the process died: the name above.
std::string temporary_name_pattern(const std::string& path);

// Installs SIGINT, SIGTERM and SIGHUP handlers that remove the temporary of a write in
// progress and then let the signal end the process as it would have (signals the process
// ignores stay ignored). For commands; a library caller may install its own. kill -9 cannot be
// caught: the temporary's name says what it is.
void remove_temporaries_on_signals();

// For a long run that can stop cleanly (gradc train): the first SIGINT, SIGTERM or SIGHUP is
// stored in the returned signal number (0 until then), which the run checks after each unit of
// work, and puts back the handlers of remove_temporaries_on_signals, so a second signal ends the
// process at once (as Ctrl-C twice does in PyTorch Lightning). Signals the process ignores
// (nohup) stay ignored.
const std::atomic<int>& stop_on_first_signal();

}  // namespace gradc
