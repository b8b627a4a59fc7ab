// The compiler's side of the Graph IR (the types are gradc/Graph.h's): the op table, and the
// schemas of initializers and optimizers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "gradc/Graph.h"
#include "ir/Attr.h"
#include "ir/OpTable.h"

namespace gradc {

// The number of classes an i32 input ranges over, from the op that reads it as class ids
// (softmax_cross_entropy's labels, one_hot's indices); 1 when none does. For random inputs
// (gradc bench, gradc check) that are valid labels.
int64_t class_count(const Graph& g, ValueId input);

// A new op node in `g`, built as every pass builds one: attributes bound to the op's schema
// (defaults filled) and the type inferred now. A composite op is built as its expansion
// (ir/Composites.cpp), so no pass ever makes one.
ValueId add_op(Graph& g, OpKind kind, std::vector<ValueId> args, const Attrs& attrs = {}, const SourceLoc& loc = {});

// A new scalar constant of `dtype` (strongly typed: literals are the parser's), as every pass
// and expansion builds one.
ValueId add_constant(Graph& g, double value, DType dtype, const SourceLoc& loc = {});

// `base`, or `base1`, `base2`, ...: the first name not in `taken`, which then holds it too (for a
// pass that names the values it adds: gradients, optimizer and dropout states).
std::string unused_name(std::unordered_set<std::string>& taken, const std::string& base);

// A train step written with assign lines and no minimize (a dumped training graph): nothing to
// differentiate; it returns its first output as the loss.
bool is_assign_step(const Graph& g);

// The loss a train step returns: minimize's, or an assign step's first output; nullopt for a
// graph that trains nothing.
std::optional<ValueId> step_loss(const Graph& g);

// Which values the graph's results need, by id: its outputs, both sides of its assigns and
// minimize's loss, and every value they read (Fusion.cpp; Simplify.cpp keeps its leaves too).
std::vector<bool> live_values(const Graph& g);

// Gives `to` the outputs, minimize and assigns of `from`, each value renumbered through `map`
// (from's ids to to's), for a pass that rebuilds a graph node by node.
void copy_results(const Graph& from, const std::vector<ValueId>& map, Graph& to);

// Schemas of initializers and optimizers, so that parser, builder and verifier agree.
const std::vector<AttrSpec>* init_schema(std::string_view kind);       // nullptr if unknown
const std::vector<AttrSpec>* optimizer_schema(std::string_view kind);  // nullptr if unknown
std::string_view init_names();       // "zeros, ones, ..." for messages
std::string_view optimizer_names();  // "sgd, momentum, adam, adamw"

}  // namespace gradc
