// The verifier: checks that a Graph is well formed, after parsing and after every pass.
#pragma once

#include <vector>

#include "ir/Graph.h"

namespace gradc {

// Every failure found, not just the first (empty when the graph is well formed):
// SSA order, operand counts, attributes against the op's schema, each op's type against its
// shape rule, unique names, outputs, the loss (a float scalar), the optimizer (its `lr` a
// number or a float scalar input), and assigns (to a param or state, of its exact type).
std::vector<Error> verify(const Graph& g);

// Throws one Error listing every failure (at the first one's location).
void verify_or_throw(const Graph& g);

}  // namespace gradc
