// Appends typed nodes to a Graph: what passes use to build graph from graph.
#pragma once

#include "ir/Graph.h"

namespace gradc {

class GraphWriter {
 public:
  explicit GraphWriter(Graph& g) : g_(g) {}

  // A new op node: attributes bound to the op's schema (defaults filled), type inferred now; a
  // composite op as its expansion (add_op).
  ValueId op(OpKind kind, std::vector<ValueId> args, const Attrs& attrs = {});
  ValueId constant(double value, DType dtype);  // a strongly typed scalar
  // Sums `v` over the axes that broadcasting added or stretched, back to `shape`.
  ValueId unbroadcast(ValueId v, Shape shape);  // by value: writing may move the graph's shapes
  // `v` reshaped and broadcast to `shape` after a reduction over `axes` without keepdims.
  ValueId expand(ValueId v, std::vector<int64_t> axes, Shape shape);

  ValueId add(ValueId a, ValueId b) { return op(OpKind::Add, {a, b}); }
  ValueId sub(ValueId a, ValueId b) { return op(OpKind::Sub, {a, b}); }
  ValueId mul(ValueId a, ValueId b) { return op(OpKind::Mul, {a, b}); }
  ValueId div(ValueId a, ValueId b) { return op(OpKind::Div, {a, b}); }
  ValueId neg(ValueId a) { return op(OpKind::Neg, {a}); }
  ValueId scale(ValueId a, double c) { return mul(a, constant(c, type(a).dtype)); }

  const TensorType& type(ValueId v) const { return g_[v].type; }
  const Node& node(ValueId v) const { return g_[v]; }  // invalidated by the next node written
  Graph& graph() { return g_; }

 private:
  Graph& g_;
};

}  // namespace gradc
