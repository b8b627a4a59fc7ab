// Prints a Graph as canonical spec text, and as Graphviz.
#pragma once

#include <string>
#include <vector>

#include "ir/Graph.h"

namespace gradc {

// One statement a line, every computed value with its type:
//   model NAME, the leaves (input/param/state) in order, then one op per line
//   (`h : f32[64, 10] = relu(%1)`), then output, minimize and assign lines.
// Temporaries get the names %0, %1, ... (skipping names in use); number literals stay inline;
// all attributes are printed, defaults included. The text parses back to a graph that prints
// the same: print_spec(parse(print_spec(g))) == print_spec(g).
std::string print_spec(const Graph& g);

// The name each value prints with: its own, or an invented %N for a temporary; weak constants
// (number literals) as their number.
std::vector<std::string> value_names(const Graph& g);

// A Graphviz digraph: one box per value (name, op, type), an edge per operand.
std::string print_dot(const Graph& g);

}  // namespace gradc
