// Shape inference: gives every op node its result type from its operands' types.
#pragma once

#include "ir/Graph.h"

namespace gradc {

// 1. Walk the nodes in order (operands come first in SSA order).
// 2. A number literal takes the dtype of the op that uses it (JAX's weak typing), so that
//    `mul(x, 0.5)` stays f64 when x is.
// 3. Each op's shape rule from the op table gives its type and canonical attributes.
// 4. A type the spec declared (`h : f32[64, 10] = ...`) must equal the inferred one.
// Throws gradc::Error at the first node whose operands do not fit, naming both sides.
Graph infer_shapes(Graph g);

}  // namespace gradc
