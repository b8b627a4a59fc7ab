// libFuzzer target over the runtime's file readers (fuzz/FuzzFiles.h): .npy headers, safetensors
// headers and IDX files. Built by scripts/fuzz with clang-19, ASan and UBSan; seeded with
// tests/fuzz_files.
#include <cstddef>
#include <cstdint>

#include "FuzzFiles.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gradc::fuzz::run_file_reader({reinterpret_cast<const char*>(data), size});
  return 0;
}
