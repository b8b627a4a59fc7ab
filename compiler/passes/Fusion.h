// Fusion: a Graph becomes the kernels of a Kernel program (ir/Kernel.h).
//
// Chains of elementwise ops with the same shape become one Loop kernel, and reductions of
// them join it; elementwise consumers of a matmul (bias, activation, the backward's mask, a
// column sum) become its epilogue; a transpose that only matmuls read is folded into their
// operand layout; scalar arithmetic (the optimizer's bias corrections) is recomputed in every
// kernel that uses it; any other op is a kernel of its own. Kernels come out in a valid order
// (the schedule pass reorders them); no memory is planned yet.
#pragma once

#include "ir/Kernel.h"

namespace gradc {

struct FusionOptions {
  bool fuse = true;  // false: every op a kernel of its own (the baseline the fused program is measured against)
};

KernelProgram fuse(Graph g, const FusionOptions& options = {});

}  // namespace gradc
