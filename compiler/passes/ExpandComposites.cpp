#include "passes/ExpandComposites.h"

namespace gradc {

Graph expand_composites(Graph g) {
  bool any = false;
  for (const Node& n : g.nodes) any = any || (n.kind == NodeKind::Op && op_info(n.op).composite());
  if (!any) return g;
  Graph out;
  out.name = g.name;
  std::vector<ValueId> map(g.nodes.size(), -1);
  for (ValueId id = 0; id < g.size(); ++id) {
    Node n = std::move(g[id]);
    for (ValueId& a : n.args) a = map[a];
    if (n.kind != NodeKind::Op || !op_info(n.op).composite()) {
      map[id] = out.add(std::move(n));
      continue;
    }
    ValueId r = add_op(out, n.op, n.args, n.attrs, n.loc);
    // The result takes the op's name (a leaf or a named value it returned as it is keeps its own).
    if (!n.name.empty() && out[r].kind == NodeKind::Op && out[r].name.empty()) out[r].name = n.name;
    map[id] = r;
  }
  copy_results(g, map, out);
  return out;
}

}  // namespace gradc
