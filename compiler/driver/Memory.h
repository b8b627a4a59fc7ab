// How much memory a compiled model takes, in one breakdown that `gradc dump --stage plan`,
// `gradc bench`, `gradc train`'s memory-fit check and `gradc check` all report.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ir/Kernel.h"

namespace gradc {
struct Lowered;
}

namespace gradc {

// Bytes, each part summed with checked arithmetic (a part that overflows int64 is INT64_MAX).
struct MemoryUse {
  int64_t arena = 0;         // the planned buffers of the entry point that needs more working memory
  int64_t gemm_scratch = 0;  // that entry point's packed GEMM operands, past the planned buffers
  int64_t params = 0;        // every param
  int64_t state = 0;         // optimizer moments and counters
  int64_t inputs = 0;        // the inputs' slots
  int64_t outputs = 0;       // the train step's and predict's output slots
  int64_t working() const;   // arena + GEMM scratch: the Session's arena (Program::arena_bytes)
  int64_t total() const;     // everything above
};

// The breakdown of the train step (null when the spec minimizes nothing) and predict, planned.
MemoryUse memory_use(const KernelProgram* train, const KernelProgram& predict);
MemoryUse memory_use(const Lowered& l);
// The same from a spec: fuses and plans its train step and predict (no LLVM).
MemoryUse memory_use(const Graph& spec);

// "arena 10304 + GEMM scratch 31360 = 41664 bytes; params 31880; state 63764; inputs 200960;
// outputs 2564; total 350172 bytes (0.3 MiB)"
std::string describe(const MemoryUse& m);

// This machine's physical memory in bytes (0 when unknown).
int64_t physical_memory_bytes();

// Throws gradc::Error naming `model`, what it needs the memory for (`what`, "for ...") and the breakdown when `m.total()`
// is more than this machine's memory.
void require_memory(const std::string& model, const MemoryUse& m, std::string_view what = "");

// a + b and a * b, INT64_MAX when they overflow (sizes are never negative).
int64_t add_bytes(int64_t a, int64_t b);
int64_t mul_bytes(int64_t a, int64_t b);
int64_t bytes_of(const TensorType& t);  // numel * dtype bytes, saturating

}  // namespace gradc
