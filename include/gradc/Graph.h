// The Graph IR: SSA values over tensors, in definition order.
//
// A Graph is a list of nodes; a node is a leaf (input, param, state, constant) or an op call
// whose operands are earlier nodes. Statements that are not values (output, minimize, assign)
// sit beside the node list. Every node has a static TensorType once shapes are inferred.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gradc/Attr.h"
#include "gradc/Error.h"
#include "gradc/Types.h"

namespace gradc {

using ValueId = int32_t;

// An op of the table (gradc/Ops.def). Its enumerators are defined with the op table
// (ir/OpTable.h), which the public API does not need: a node names its op by kind alone.
enum class OpKind : uint16_t;

enum class NodeKind : uint8_t { Input, Param, State, Constant, Op };

// How a param or state starts: `glorot_uniform`, `normal(mean=0, std=0.3)`, ...
struct Init {
  std::string kind;
  Attrs args;  // bound to the initializer's schema
  bool operator==(const Init&) const = default;
};

// `adam(lr=0.001, ...)`: arguments bound to the optimizer's schema; `lr` may name an input.
struct Optimizer {
  std::string kind;
  Attrs args;
  bool operator==(const Optimizer&) const = default;
};

struct Node {
  NodeKind kind = NodeKind::Op;
  OpKind op{};                 // when kind == Op
  std::vector<ValueId> args;   // operands, all earlier in the graph
  Attrs attrs;                 // bound to op_info(op).attrs
  TensorType type;             // known once shapes are inferred (leaves: as declared)
  std::optional<TensorType> declared;  // `h : f32[64, 10] = ...`: checked by shape inference
  std::string name;            // empty for temporaries
  double constant = 0;         // value of a Constant (a scalar)
  bool weak = false;           // a Constant literal whose dtype follows its use (JAX's weak types)
  std::optional<Init> init;    // for Param and State
  SourceLoc loc;

  bool is_leaf() const { return kind != NodeKind::Op; }
};

struct Output {
  ValueId value;
  SourceLoc loc;
};

struct Minimize {
  ValueId loss;
  Optimizer optimizer;
  SourceLoc loc;
};

// `assign target = value`: the value the param or state takes at the end of the step.
struct Assign {
  ValueId target;
  ValueId value;
  SourceLoc loc;
};

class Graph {
 public:
  std::string name;
  std::vector<Node> nodes;
  std::vector<Output> outputs;
  std::optional<Minimize> minimize;
  std::vector<Assign> assigns;

  ValueId add(Node n);
  const Node& operator[](ValueId id) const { return nodes.at(static_cast<size_t>(id)); }
  Node& operator[](ValueId id) { return nodes.at(static_cast<size_t>(id)); }
  int32_t size() const { return static_cast<int32_t>(nodes.size()); }

  std::optional<ValueId> find(std::string_view name) const;  // by node name
  std::vector<ValueId> leaves(NodeKind kind) const;          // inputs, params or states in order
  // Whether the spec has a train step: something to minimize, or state it assigns.
  bool trains() const { return minimize.has_value() || !assigns.empty(); }
  // The value whose bytes `id` reads: itself, or the value its views (reshapes: the op table's
  // View form) look at. Views have no buffer of their own.
  ValueId viewed(ValueId id) const;
};

}  // namespace gradc
