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

#include <unordered_set>

namespace gradc {

namespace {

// A state named `name`, or name1, name2, ... past the names the graph has.
ValueId add_state(Graph& out, const Graph& in, const std::string& name, Init init, const SourceLoc& loc) {
  std::unordered_set<std::string> names;
  for (const Node& n : in.nodes) names.insert(n.name);
  for (const Node& n : out.nodes) names.insert(n.name);
  Node s;
  s.kind = NodeKind::State;
  s.name = name;
  for (int i = 1; names.count(s.name); ++i) s.name = fmt::format("{}{}", name, i);
  s.type = TensorType{DType::F32, {}};
  s.init = std::move(init);
  s.loc = loc;
  return out.add(std::move(s));
}

}  // namespace

Graph lower_dropout(Graph g) {
  bool any = false;
  for (const Node& n : g.nodes) any = any || (n.kind == NodeKind::Op && n.op == OpKind::Dropout);
  if (!any) return g;
  Graph out;
  out.name = g.name;
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
      seed = add_state(out, g, "dropout.seed", Init{"uniform", {{"lo", Attr(0.0)}, {"hi", Attr(16777216.0)}}}, n.loc);
      step = add_state(out, g, "dropout.step", Init{"zeros", {}}, n.loc);
    }
    const Attr& rate = n.attrs.get("rate");
    Attrs mask_attrs{{"rate", rate}, {"stream", Attr(stream++)}, {"shape", Attr(n.type.shape)}};
    ValueId mask = add_op(out, OpKind::DropoutMask, {seed, step}, mask_attrs, n.loc);
    if (n.type.dtype != DType::F32) mask = add_op(out, OpKind::Cast, {mask}, {{"dtype", Attr(Ident{std::string(dtype_name(n.type.dtype))})}}, n.loc);
    ValueId r = add_op(out, OpKind::Mul, {n.args[0], mask}, {}, n.loc);
    out[r].name = n.name;
    map[id] = r;
  }
  copy_results(g, map, out);
  SourceLoc loc = out[seed].loc;
  Node one;
  one.kind = NodeKind::Constant;
  one.constant = 1;
  one.type = TensorType{DType::F32, {}};
  ValueId next = add_op(out, OpKind::Add, {step, out.add(std::move(one))}, {}, loc);
  out.assigns.push_back({step, next, loc});
  return out;
}

}  // namespace gradc
