#include "gradc/GraphBuilder.h"

#include <atomic>

#include "ir/Verifier.h"
#include "passes/ShapeInference.h"

namespace gradc {

GraphBuilder::GraphBuilder(std::string model_name) {
  static std::atomic<uint64_t> builders{0};
  id_ = ++builders;
  g_.name = std::move(model_name);
}

ValueId GraphBuilder::own(Value v, std::string_view what) const {
  if (v.builder != id_ || v.id < 0 || v.id >= g_.size())
    fail({}, "{}: the value is not one of this builder's (model '{}'){}", what, g_.name,
         v.builder == 0 ? " (a default Value, made by no builder)" : v.builder != id_ ? " but another builder's" : "");
  return v.id;
}

static Node leaf(NodeKind kind, std::string name, TensorType type, std::optional<Init> init) {
  Node n;
  n.kind = kind;
  n.name = std::move(name);
  n.type = std::move(type);
  n.init = std::move(init);
  return n;
}

Value GraphBuilder::input(std::string name, TensorType type) {
  return made(g_.add(leaf(NodeKind::Input, std::move(name), std::move(type), std::nullopt)));
}

Value GraphBuilder::param(std::string name, TensorType type, Init init) {
  return made(g_.add(leaf(NodeKind::Param, std::move(name), std::move(type), std::move(init))));
}

Value GraphBuilder::param(std::string name, TensorType type) {
  Init init = type.rank() >= 2 ? glorot_uniform() : zeros();  // as the parser does
  return param(std::move(name), std::move(type), std::move(init));
}

Value GraphBuilder::state(std::string name, TensorType type, Init init) {
  return made(g_.add(leaf(NodeKind::State, std::move(name), std::move(type), std::move(init))));
}

Value GraphBuilder::constant(double value) {
  Node n;
  n.kind = NodeKind::Constant;
  n.constant = value;
  n.weak = true;
  n.type = TensorType{DType::F32, {}};
  return made(g_.add(std::move(n)));
}

Value GraphBuilder::call(std::string_view op, std::vector<Value> operands, const Attrs& attrs) {
  std::optional<OpKind> kind = find_op(op);
  if (!kind) fail({}, "unknown op '{}'", op);
  const OpInfo& info = op_info(*kind);
  if (std::string bad = arity_mismatch(info, operands.size()); !bad.empty()) fail({}, "{}", bad);
  Node n;
  n.op = *kind;
  for (Value v : operands) {
    n.args.push_back(own(v, info.name));
  }
  n.attrs = bind_attrs(info.attrs, info.name, {}, attrs, {});
  return made(g_.add(std::move(n)));
}

Value GraphBuilder::name(std::string name, Value v) {
  Node& n = g_[own(v, "name")];
  if (!n.name.empty()) fail({}, "value '{}' already has a name; cannot rename it '{}'", n.name, name);
  if (n.kind == NodeKind::Constant) n.weak = false;  // a named constant has its own type, f32
  n.name = std::move(name);
  return v;
}

void GraphBuilder::output(Value v) { g_.outputs.push_back({own(v, "output"), {}}); }

void GraphBuilder::minimize(Value loss, Optimizer optimizer) {
  const std::vector<AttrSpec>* schema = optimizer_schema(optimizer.kind);
  if (!schema) fail({}, "unknown optimizer '{}' (expected one of: {})", optimizer.kind, optimizer_names());
  optimizer.args = bind_attrs(*schema, optimizer.kind, {}, optimizer.args, {});
  g_.minimize = Minimize{own(loss, "minimize"), std::move(optimizer), {}};
}

void GraphBuilder::assign(Value target, Value value) {
  g_.assigns.push_back({own(target, "assign"), own(value, "assign"), {}});
}

Graph GraphBuilder::build() const {
  Graph g = g_;
  for (Node& n : g.nodes)
    if (n.init) {
      const std::vector<AttrSpec>* schema = init_schema(n.init->kind);
      if (!schema) fail({}, "unknown initializer '{}' (expected one of: {})", n.init->kind, init_names());
      n.init->args = bind_attrs(*schema, n.init->kind, {}, n.init->args, {});
    }
  g = infer_shapes(std::move(g));
  verify_or_throw(g);
  return g;
}

Init zeros() { return {"zeros", {}}; }
Init ones() { return {"ones", {}}; }
Init constant_init(double value) { return {"constant", {{"value", value}}}; }
Init normal(double mean, double std) { return {"normal", {{"mean", mean}, {"std", std}}}; }
Init uniform(double lo, double hi) { return {"uniform", {{"lo", lo}, {"hi", hi}}}; }
Init glorot_uniform() { return {"glorot_uniform", {}}; }
Init glorot_normal() { return {"glorot_normal", {}}; }
Init he_uniform() { return {"he_uniform", {}}; }
Init he_normal() { return {"he_normal", {}}; }

Optimizer sgd(double lr) { return {"sgd", {{"lr", lr}}}; }
Optimizer momentum(double lr, double momentum, bool nesterov) {
  return {"momentum", {{"lr", lr}, {"momentum", momentum}, {"nesterov", nesterov}}};
}
Optimizer adam(double lr, double beta1, double beta2, double eps) {
  return {"adam", {{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}}};
}
Optimizer adamw(double lr, double beta1, double beta2, double eps, double weight_decay) {
  return {"adamw", {{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}, {"weight_decay", weight_decay}}};
}

namespace {

// The options every optimizer shares: lr (a number or the name of an input) and clip_norm.
template <typename Options>
Optimizer with_common(Optimizer opt, const Options& o) {
  if (!o.lr_input.empty()) opt.args.set("lr", Ident{o.lr_input});
  if (o.clip_norm) opt.args.set("clip_norm", *o.clip_norm);
  return opt;
}

// Coupled weight decay (sgd, momentum, adam), set when not 0: the default leaves the spec as it was.
template <typename Options>
Optimizer with_decay(Optimizer opt, const Options& o) {
  if (o.weight_decay != 0) opt.args.set("weight_decay", o.weight_decay);  // (NaN too: the verifier refuses it)
  return with_common(std::move(opt), o);
}

}  // namespace

Optimizer sgd(const SgdOptions& o) { return with_decay(sgd(o.lr), o); }
Optimizer momentum(const MomentumOptions& o) { return with_decay(momentum(o.lr, o.momentum, o.nesterov), o); }
Optimizer adam(const AdamOptions& o) { return with_decay(adam(o.lr, o.beta1, o.beta2, o.eps), o); }
Optimizer adamw(const AdamWOptions& o) {
  return with_common(adamw(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay), o);
}

}  // namespace gradc
