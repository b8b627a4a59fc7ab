// The reference interpreter's kernels, one per op of the table; its entry points (evaluate,
// step) are gradc/Interpreter.h's.
#pragma once

#include <vector>

#include "gradc/Interpreter.h"
#include "ir/Graph.h"

namespace gradc::interp {

// An interpreter kernel: the result of one op node from its operand values.
using Kernel = Tensor (*)(const Node& node, const std::vector<const Tensor*>& args);

// Kernels, one per op; Kernels.cpp defines them.
#define OP(Id, spelling, arity, traits, schema, infer, eval, ...) \
  Tensor eval(const Node& node, const std::vector<const Tensor*>& args);
#include "gradc/Ops.def"

}  // namespace gradc::interp
