// Lowers dropout for the train step, before autodiff. Each dropout(x, rate) becomes
//   x * dropout_mask(dropout.seed, dropout.step, rate, stream = k, shape = x's)
// for the k-th dropout of the graph, with two states beside the params:
//   state dropout.seed : f32[] = uniform(0, 16777216)   drawn once from the session's seed
//   state dropout.step : f32[] = zeros                  assign dropout.step = dropout.step + 1
// so a mask depends on the seed, the step count and the op alone: a run is the same bits on any
// thread count, and resumes identically from a checkpoint (both states are in it). The mask is
// made by one loop kernel and kept for the backward pass (x * mask's gradient reads it). Predict
// keeps dropout, and simplify folds it to x there. The step count is a float: exact to 2^24 steps.
#include "passes/Dropout.h"

namespace gradc {

Graph lower_dropout(Graph g) {
  bool any = false;
  for (const Node& n : g.nodes) any = any || (n.kind == NodeKind::Op && n.op == OpKind::Dropout);
  if (!any) return g;
  std::unordered_set<std::string> taken;
  for (const Node& n : g.nodes) taken.insert(n.name);
  Graph out;
  out.name = g.name;
  auto state = [&](const std::string& name, Init init, const SourceLoc& loc) {
    Node s;
    s.kind = NodeKind::State;
    s.name = unused_name(taken, name);
    s.type = TensorType{DType::F32, {}};
    s.init = std::move(init);
    s.loc = loc;
    return out.add(std::move(s));
  };
  std::vector<ValueId> map(g.nodes.size(), -1);
  ValueId seed = -1, step = -1;
  int64_t stream = 0;
  for (ValueId id = 0; id < g.size(); ++id) {
    Node n = std::move(g[id]);
    for (ValueId& a : n.args) a = map[a];
    if (n.kind != NodeKind::Op || n.op != OpKind::Dropout) {
      map[id] = out.add(std::move(n));
      continue;
    }
    if (seed < 0) {
      seed = state("dropout.seed", Init{"uniform", {{"lo", Attr(0.0)}, {"hi", Attr(16777216.0)}}}, n.loc);
      step = state("dropout.step", Init{"zeros", {}}, n.loc);
    }
    Attrs mask_attrs{{"rate", n.attrs.get("rate")}, {"stream", Attr(stream++)}, {"shape", Attr(n.type.shape)}};
    ValueId mask = add_op(out, OpKind::DropoutMask, {seed, step}, mask_attrs, n.loc);
    if (n.type.dtype != DType::F32)
      mask = add_op(out, OpKind::Cast, {mask}, {{"dtype", Attr(Ident{std::string(dtype_name(n.type.dtype))})}}, n.loc);
    ValueId r = add_op(out, OpKind::Mul, {n.args[0], mask}, {}, n.loc);
    out[r].name = n.name;
    map[id] = r;
  }
  copy_results(g, map, out);
  SourceLoc loc = out[seed].loc;
  out.assigns.push_back({step, add_op(out, OpKind::Add, {step, add_constant(out, 1, DType::F32, loc)}, {}, loc), loc});
  return out;
}

}  // namespace gradc
