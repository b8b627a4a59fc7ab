#include "passes/Autodiff.h"

#include <unordered_set>

#include "passes/Dropout.h"
#include "passes/ExpandComposites.h"
#include "passes/Gradients.h"

namespace gradc {

namespace {

// on_path[v]: v depends on a param and the loss depends on v.
std::vector<bool> path_from_params_to(const Graph& g, ValueId loss) {
  std::vector<bool> from_param(g.nodes.size(), false), to_loss(g.nodes.size(), false);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    from_param[id] = n.kind == NodeKind::Param;
    for (ValueId a : n.args) from_param[id] = from_param[id] || from_param[a];
  }
  to_loss[loss] = true;
  for (ValueId id = loss; id >= 0; --id)
    if (to_loss[id])
      for (ValueId a : g[id].args) to_loss[a] = true;
  std::vector<bool> on_path(g.nodes.size());
  for (size_t i = 0; i < on_path.size(); ++i) on_path[i] = from_param[i] && to_loss[i];
  return on_path;
}

}  // namespace

Differentiated differentiate(Graph spec) {
  // The pipeline has expanded composites and lowered dropout already: then both are no-ops.
  Graph g = lower_dropout(expand_composites(std::move(spec)));
  if (!g.minimize) fail({}, "autodiff: the graph has no 'minimize' statement, so there is nothing to differentiate");
  ValueId loss = g.minimize->loss;
  std::vector<bool> on_path = path_from_params_to(g, loss);
  const ValueId forward_size = g.size();

  GraphWriter e(g);
  std::vector<std::optional<ValueId>> adjoint(static_cast<size_t>(forward_size));
  if (on_path[loss]) adjoint[loss] = e.constant(1.0, g[loss].type.dtype);

  for (ValueId id = forward_size - 1; id >= 0; --id) {
    if (!adjoint[id] || g[id].kind != NodeKind::Op) continue;
    std::vector<ValueId> args = g[id].args;
    GradCtx ctx{e, id, *adjoint[id], {}};
    for (ValueId a : args) ctx.wanted.push_back(on_path[a]);
    Grads grads = grad_rule(g[id].op)(ctx);
    GRADC_ASSERT(grads.size() == args.size(), "{}: gradient rule gave {} gradients for {} operands",
                 op_info(g[id].op).name, grads.size(), args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      if (!grads[i] || !on_path[args[i]]) continue;
      GRADC_ASSERT(g[*grads[i]].type == g[args[i]].type, "{}: gradient of operand {} is {}, operand is {}",
                   op_info(g[id].op).name, i, g[*grads[i]].type, g[args[i]].type);
      std::optional<ValueId>& acc = adjoint[args[i]];
      acc = acc ? e.add(*acc, *grads[i]) : *grads[i];
    }
  }

  Differentiated out;
  std::unordered_set<std::string> taken;
  for (const Node& n : g.nodes)
    if (!n.name.empty()) taken.insert(n.name);
  for (ValueId p : g.leaves(NodeKind::Param)) {
    if (!adjoint[p]) continue;
    ValueId grad = *adjoint[p];
    Node& n = g[grad];
    if (n.name.empty() && n.kind == NodeKind::Op) n.name = unused_name(taken, g[p].name + ".grad");
    out.grads.push_back({p, grad});
  }
  out.graph = std::move(g);
  return out;
}

}  // namespace gradc
