// Reverse-mode autodiff as a graph pass.
#pragma once

#include <vector>

#include "ir/Graph.h"

namespace gradc {

struct ParamGrad {
  ValueId param;
  ValueId grad;  // d loss / d param, of the param's type
};

struct Differentiated {
  Graph graph;                  // the input graph plus the backward nodes
  std::vector<ParamGrad> grads;  // for each param that reaches the loss, in declaration order
};

// Builds the gradient of the `minimize` loss with respect to every param, out of ordinary ops:
// 1. Mark the nodes on a path from a param to the loss; only they are differentiated.
// 2. Seed d loss / d loss = 1, then visit nodes in reverse order; each op's rule from the op
//    table turns the gradient of its result into gradients of its operands.
// 3. A value used several times sums its gradients with `add` (fan-out).
// Composite ops are differentiated through their expansion (expanded first, when the pipeline
// has not). Params that do not reach the loss get no gradient. Gradient values are named `NAME.grad`.
Differentiated differentiate(Graph g);

}  // namespace gradc
