// Fusion: a Graph becomes the kernels of a Kernel program (ir/Kernel.h).
//
// Chains of elementwise ops with the same shape become one Loop kernel, and reductions of
// them join it; elementwise consumers of a matmul (bias, activation, the backward's mask, a
// column sum) become its epilogue; a transpose that only matmuls read is folded into their
// operand layout; scalar arithmetic (the optimizer's bias corrections) is recomputed in every
// kernel that uses it; any other op is a kernel of its own. Kernels come out in a valid order
// (fusion keeps a topological order of them as they merge: there is no separate schedule pass);
// no memory is planned yet.
#pragma once

#include "ir/Kernel.h"

namespace gradc {

// The most members a kernel takes. LLVM's O3 and instruction selection grow faster than
// linearly in one function's size (a 10,000-op tanh chain fused whole took 8.5 s, 44x the
// 1,000-op one); kernels of a few hundred ops cost the same per op, and a cut through an
// elementwise chain this long costs one store and load per element against hundreds of ops.
constexpr size_t kMaxKernelMembers = 512;

struct FusionOptions {
  bool fuse = true;  // false: every op a kernel of its own (the baseline the fused program is measured against)
};

KernelProgram fuse(Graph g, const FusionOptions& options = {});

}  // namespace gradc
