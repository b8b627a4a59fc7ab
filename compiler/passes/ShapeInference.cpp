#include "passes/ShapeInference.h"

namespace gradc {

Graph infer_shapes(Graph g) {
  for (Node& n : g.nodes) {
    if (n.kind != NodeKind::Op) {
      if (n.declared && n.kind == NodeKind::Constant) n.type = *n.declared;
      continue;
    }
    // The dtype literals adopt: that of the last float operand that is not a literal (the
    // operands of one op share it, but where's values come after its condition, which may differ).
    std::optional<DType> strong;
    for (ValueId a : n.args)
      if (!g[a].weak && is_float(g[a].type.dtype)) strong = g[a].type.dtype;
    std::vector<TensorType> arg_types;
    for (ValueId a : n.args) {
      Node& arg = g[a];
      if (arg.weak && strong) arg.type.dtype = *strong;
      arg_types.push_back(arg.type);
    }
    n.type = infer_type(n.op, arg_types, n.attrs, n.loc);
    if (n.declared && *n.declared != n.type)
      fail(n.loc, "{} is declared {} but {} gives {}",  // a def body's names stay its own: its nodes have none
           n.name.empty() ? std::string("the value") : fmt::format("'{}'", n.name), *n.declared, op_info(n.op).name,
           n.type);
  }
  return g;
}

}  // namespace gradc
