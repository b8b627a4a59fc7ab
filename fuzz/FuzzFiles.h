// What the file fuzzer drives, shared with the test that replays its corpus: the first byte picks
// a reader (0 .npy, 1 safetensors, 2 IDX, plain or gzipped; taken modulo 3), the rest is the file.
// The bytes go to a memfd and the reader opens it by its /proc path, as it would a file on disk.
// Bad input must end in gradc::Error; a crash, a hang or a sanitizer report is a bug.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "runtime/Format.h"
#include "runtime/Idx.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc::fuzz {

// Returns true when the reader took the file, false when it refused it.
inline bool run_file_reader(std::string_view input) {
  if (input.empty()) return false;
  int fd = ::memfd_create("gradc-fuzz", MFD_CLOEXEC);
  if (fd < 0) return false;
  std::string_view bytes = input.substr(1);
  bool written = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  std::string path = fmt::format("/proc/self/fd/{}", fd);
  bool taken = false;
  try {
    if (written) {
      switch (static_cast<unsigned char>(input[0]) % 3) {
        case 0: load_npy(path); break;
        case 1: load_safetensors(path); break;
        default: read_idx(path); break;
      }
      taken = true;
    }
  } catch (const Error&) {
  }
  ::close(fd);
  return taken;
}

}  // namespace gradc::fuzz
