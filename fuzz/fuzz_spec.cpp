// libFuzzer target over the front of the compiler (fuzz/FuzzPipeline.h). Built by scripts/fuzz
// with clang-19, ASan and UBSan; seeded with samples/specs and tests/fuzz_regressions.
#include <cstddef>
#include <cstdint>

#include "FuzzPipeline.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gradc::fuzz::run_pipeline({reinterpret_cast<const char*>(data), size});
  return 0;
}
