// Simplify: common subexpressions, dead code, constant folding and algebraic identities.
#pragma once

#include "ir/Graph.h"

namespace gradc {

// Rebuilds the graph in one forward walk, then drops what nothing uses:
// 1. Operands are renamed to their simplified values.
// 2. Identities: x + 0, x - 0, x * 1, 1 * x, x / 1, -(-x), a transpose of a transpose, a reshape of
//    a reshape, a reshape, transpose or broadcast_to that changes nothing, and a broadcast_to of
//    a scalar constant feeding an elementwise op that broadcasts it anyway. Only rewrites that
//    keep the value's type exactly.
// 3. Folding: an op whose operands are all constants and whose result is a scalar becomes a
//    constant, computed by the interpreter's own kernel.
// 4. CSE: a node equal to an earlier one (op, operands, attributes) is that node.
// 5. DCE: only nodes that an output, the loss or an assign needs are kept; leaves always stay.
Graph simplify(Graph g);

}  // namespace gradc
