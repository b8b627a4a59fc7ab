// Casts every f32 tensor of a graph to f64: how the gradient checker gets exact arithmetic.
#pragma once

#include "ir/Graph.h"

namespace gradc {

// Leaves, constants, op results and one_hot's dtype become f64; i32 stays. Shapes are
// inferred again, so the result verifies like any graph.
Graph cast_to_f64(Graph g);

}  // namespace gradc
