#include "runtime/File.h"

#include <limits.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string_view>
#include <utility>

namespace gradc {

std::string_view file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

int open_regular_file(const std::string& path) {
  SourceLoc loc{path};
  auto refuse = [&](mode_t mode) {
    fail(loc, "cannot read file: it is {}, not a regular file", file_kind(mode));
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(loc, "cannot open file: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) refuse(st.st_mode);
  // O_NONBLOCK: should the path be swapped for a FIFO after the stat, the open still returns.
  Descriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.fd < 0) fail(loc, "cannot open file: {}", std::strerror(errno));
  if (::fstat(fd.fd, &st) != 0) fail(loc, "cannot read file: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) refuse(st.st_mode);
  int flags = ::fcntl(fd.fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd.fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    fail(loc, "cannot read file: {}", std::strerror(errno));
  return std::exchange(fd.fd, -1);
}

std::string temporary_name_pattern(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".gradc-tmp-XXXXXX";
}

namespace {

// The temporary of the write in progress, for the signal handler: a fixed buffer, since a
// handler may not allocate, claimed by one write at a time (0 free, 1 being filled, 2 set).
char g_temporary[PATH_MAX + 1];
std::atomic<int> g_temporary_state{0};

// Takes the buffer for one write (false if another write holds it, or the name cannot fit).
bool claim_temporary(size_t name_size) {
  int free = 0;
  return name_size <= PATH_MAX && g_temporary_state.compare_exchange_strong(free, 1);
}

// Names the file the handler removes; the claimed buffer is marked "being filled" meanwhile.
void name_temporary(const std::string& name) {
  g_temporary_state.store(1);
  std::memcpy(g_temporary, name.c_str(), name.size() + 1);
  g_temporary_state.store(2);
}

// Creates the file that `name` patterns, as mkstemp would (its trailing XXXXXX made unique,
// mode 0600, never an existing file), but names each candidate to the signal handler before
// creating it: a signal at any moment finds the file it must remove, or no file yet (mkstemp,
// then naming the file, left a moment in which a signal ended the process with it in place).
int create_temporary(std::string& name, bool claimed) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937_64 random(std::random_device{}());
  for (int attempt = 0; attempt < 100; ++attempt) {
    for (size_t i = name.size() - 6; i < name.size(); ++i) name[i] = kChars[random() % (sizeof(kChars) - 1)];
    if (claimed) name_temporary(name);
    int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  errno = EEXIST;
  return -1;
}

void on_signal(int sig) {
  if (g_temporary_state.load() == 2) ::unlink(g_temporary);
  // SA_RESETHAND restored the default action; the signal, blocked while this runs, is
  // delivered again when it returns and ends the process as it would have.
  ::raise(sig);
}

// Where a write to `path` goes: `path`, or the file its symlink points to. Refuses anything that
// is not a regular file, because renaming over it would replace it (a device node, as root).
std::string write_target(const std::string& path) {
  SourceLoc loc{path};
  if (path.empty()) fail({}, "cannot save: the path is empty; give a file to write");
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return path;  // a new path (or one creating the temporary will explain)
  if (S_ISREG(st.st_mode)) return path;
  if (!S_ISLNK(st.st_mode))
    fail(loc, "cannot save: it is {}, not a regular file; gradc writes only over regular files or to a new path",
         file_kind(st.st_mode));
  if (::stat(path.c_str(), &st) != 0)
    fail(loc, "cannot save: it is a symbolic link to a missing file ({}); give the path to write itself",
         std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail(loc, "cannot save: it is a symbolic link to {}, not to a regular file; gradc writes only over regular files "
              "or to a new path", file_kind(st.st_mode));
  char resolved[PATH_MAX];
  if (!::realpath(path.c_str(), resolved)) fail(loc, "cannot save: resolving the symbolic link: {}", std::strerror(errno));
  return resolved;
}

// The mode a file created by open(..., 0666) would get. The temporary is created 0600, which would make
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
      : target_(target),
        name_(temporary_name_pattern(target)),
        claimed_(claim_temporary(name_.size())),
        fd_(create_temporary(name_, claimed_)) {
    // On failure the name is a random one that names no file; show the pattern.
    if (fd_.fd < 0) {
      int error = errno;
      release();  // the destructor does not run for a constructor that throws
      fail(SourceLoc{target_}, "cannot save: creating the temporary file {}: {}", temporary_name_pattern(target_),
           std::strerror(error));
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!committed_) ::unlink(name_.c_str());
    release();
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
    release();
    sync_directory();
  }

 private:
  void release() {
    if (claimed_) g_temporary_state.store(0);
    claimed_ = false;
  }

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
  bool claimed_ = false;  // the name is the one the signal handler removes
  Descriptor fd_;
  bool committed_ = false;
};

}  // namespace

void check_output_path(const std::string& path) { write_target(path); }

namespace {

// Where `path` leads, as one comparable name: the file it resolves to when it exists (through
// symlinks and `..`), else its normalized absolute path (a new file, compared by name).
std::string identity_of(const std::string& path) {
  std::error_code ec;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? path : canonical.string();
}

}  // namespace

void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    if (out.path.empty()) fail({}, "{}: expected a file to write, got an empty path", out.what);
    SourceLoc loc{out.path};
    std::error_code ec;
    std::filesystem::path parent = std::filesystem::absolute(out.path, ec).parent_path();
    if (!ec && !std::filesystem::is_directory(parent, ec))
      fail(loc, "cannot save ({}): the directory {} does not exist", out.what, parent.string());
    std::string id = identity_of(out.path);
    for (const NamedPath& in : inputs)
      if (!in.path.empty() && identity_of(in.path) == id)
        fail(loc, "{} would write over {}, which this command reads; give {} another path", out.what, in.what, out.what);
    for (size_t j = 0; j < i; ++j)
      if (identity_of(outputs[j].path) == id)
        fail(loc, "{} and {} name one file: the second write would replace the first; give each its own path",
             outputs[j].what, out.what);
    check_output_path(out.path);
  }
}

void write_file_atomically(const std::string& path, const std::vector<std::span<const std::byte>>& pieces) {
  TempFile tmp(write_target(path));
  for (auto piece : pieces) tmp.write(piece);
  tmp.commit();
}

namespace {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");

void handle_signals(void (*handler)(int), int flags) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;  // nohup, or a background job
    struct sigaction action {};
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    ::sigaction(sig, &action, nullptr);
  }
}

void on_first_signal(int sig) {
  g_stop.store(sig);
  handle_signals(on_signal, SA_RESETHAND);  // sigaction is async-signal-safe
}

}  // namespace

void remove_temporaries_on_signals() { handle_signals(on_signal, SA_RESETHAND); }

const std::atomic<int>& stop_on_first_signal() {
  handle_signals(on_first_signal, SA_RESTART);  // the run's reads and writes go on after it
  return g_stop;
}

}  // namespace gradc
