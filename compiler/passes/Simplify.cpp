#include "passes/Simplify.h"

#include <cstring>
#include <map>
#include <numeric>
#include <set>

#include "interp/Interpreter.h"

namespace gradc {

namespace {

struct Key {  // what makes two op nodes the same value
  OpKind op;
  std::vector<ValueId> args;
  std::string attrs;  // printed canonically
  bool operator<(const Key& o) const {
    return std::tie(op, args, attrs) < std::tie(o.op, o.args, o.attrs);
  }
};

std::string attr_key(const Attrs& attrs) {
  std::string s;
  for (const NamedAttr& a : attrs) s += a.name + "=" + to_string(a.value) + ";";
  return s;
}

// What an op's identity rule sees: the op, its operands already simplified, and the graph
// they are in. A rule returns an existing value equal to the op (of the op's type), or rewrites
// the op in place into a simpler equal one (and returns nullopt), or does nothing.
struct FoldCtx {
  Node& m;
  const Graph& g;

  const Node& arg(size_t i) const { return g[m.args[i]]; }
  bool arg_is(size_t i, OpKind op) const { return arg(i).kind == NodeKind::Op && arg(i).op == op; }
  bool arg_is_constant(size_t i, double v) const {
    return arg(i).kind == NodeKind::Constant && arg(i).constant == v;
  }
  // `v` stands for the op only when nothing about the type changes (x + 0 broadcast is not x).
  std::optional<ValueId> same_type(ValueId v) const {
    if (g[v].type == m.type) return v;
    return std::nullopt;
  }
};

using FoldRule = std::optional<ValueId> (*)(FoldCtx&);

// The identity rules, one per op that has one (the fold column of gradc/Ops.def).
std::optional<ValueId> no_fold(FoldCtx&) { return std::nullopt; }

std::optional<ValueId> fold_add(FoldCtx& c) {  // x + 0 = 0 + x = x
  if (c.arg_is_constant(1, 0)) return c.same_type(c.m.args[0]);
  if (c.arg_is_constant(0, 0)) return c.same_type(c.m.args[1]);
  return std::nullopt;
}

std::optional<ValueId> fold_sub(FoldCtx& c) {  // x - 0 = x
  if (c.arg_is_constant(1, 0)) return c.same_type(c.m.args[0]);
  return std::nullopt;
}

std::optional<ValueId> fold_mul(FoldCtx& c) {  // x * 1 = 1 * x = x
  if (c.arg_is_constant(1, 1)) return c.same_type(c.m.args[0]);
  if (c.arg_is_constant(0, 1)) return c.same_type(c.m.args[1]);
  return std::nullopt;
}

std::optional<ValueId> fold_div(FoldCtx& c) {  // x / 1 = x
  if (c.arg_is_constant(1, 1)) return c.same_type(c.m.args[0]);
  return std::nullopt;
}

std::optional<ValueId> fold_dropout(FoldCtx& c) { return c.m.args[0]; }  // predict's dropout is x

std::optional<ValueId> fold_neg(FoldCtx& c) {  // -(-x) = x
  if (c.arg_is(0, OpKind::Neg)) return c.arg(0).args[0];
  return std::nullopt;
}

// A transpose of a transpose is one transpose (the permutations composed); the identity
// permutation is no transpose.
std::optional<ValueId> fold_transpose(FoldCtx& c) {
  std::vector<int64_t> perm = c.m.attrs.get("perm").as_ints();
  if (c.arg_is(0, OpKind::Transpose)) {
    const std::vector<int64_t>& inner = c.arg(0).attrs.get("perm").as_ints();
    for (int64_t& p : perm) p = inner[static_cast<size_t>(p)];
    c.m.args[0] = c.arg(0).args[0];
    c.m.attrs.set("perm", Attr(perm));
  }
  std::vector<int64_t> identity_perm(perm.size());
  std::iota(identity_perm.begin(), identity_perm.end(), 0);
  if (perm == identity_perm) return c.same_type(c.m.args[0]);
  return std::nullopt;
}

// A reshape of a reshape is one reshape; a reshape to the same shape is no reshape.
std::optional<ValueId> fold_reshape(FoldCtx& c) {
  if (c.arg_is(0, OpKind::Reshape)) c.m.args[0] = c.arg(0).args[0];
  return c.same_type(c.m.args[0]);
}

std::optional<ValueId> fold_broadcast_to(FoldCtx& c) { return c.same_type(c.m.args[0]); }  // to its own shape

constexpr FoldRule kFolds[] = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, form, gemm, kinks, fold, ...) fold,
#include "gradc/Ops.def"
};

class Simplifier {
 public:
  explicit Simplifier(const Graph& in) : in_(in), map_(in.nodes.size(), -1) { out_.name = in.name; }

  Graph run() {
    for (const Output& o : in_.outputs) named_outputs_.insert(o.value);
    for (ValueId id = 0; id < in_.size(); ++id) map_[id] = visit(id, in_[id]);
    copy_results(in_, map_, out_);
    return eliminate_dead(std::move(out_));
  }

 private:
  const Node& at(ValueId id) const { return out_[id]; }

  bool is_constant(ValueId id, double v) const {
    const Node& n = at(id);
    return n.kind == NodeKind::Constant && n.constant == v;
  }

  ValueId visit(ValueId id, const Node& n) {
    if (n.kind != NodeKind::Op) {
      if (n.kind == NodeKind::Constant && n.name.empty()) return constant(n.constant, n.type.dtype, n.weak);
      return out_.add(n);
    }
    Node m = n;
    for (ValueId& a : m.args) a = map_[a];
    bool output = named_outputs_.count(id) > 0;
    if (std::optional<ValueId> same = identity(m); same && may_replace(*same, m, output)) return rename(*same, m);
    if (std::optional<ValueId> folded = fold(m); folded && may_replace(*folded, m, output)) return rename(*folded, m);
    Key key{m.op, m.args, attr_key(m.attrs)};
    if (auto it = seen_.find(key); it != seen_.end() && may_replace(it->second, m, output)) return rename(it->second, m);
    ValueId kept = out_.add(std::move(m));
    seen_.try_emplace(std::move(key), kept);
    return kept;
  }

  // An output is known by its node's name (predict returns it by that name): it may become `v`
  // only when v can take the name, else `output b = relu(h)` beside `output a = relu(h)` (or
  // `output b = add(h, 0)`) would come back as "a" (or "h") and "b" would be gone. Keeping the
  // op costs one more elementwise pass over an output.
  bool may_replace(ValueId v, const Node& m, bool output) const {
    const Node& target = out_[v];
    return !output || m.name.empty() || (target.kind == NodeKind::Op && target.name.empty());
  }

  // `m` is replaced by `v`: an unnamed op result takes over m's name, so dumps stay readable.
  ValueId rename(ValueId v, const Node& m) {
    Node& target = out_[v];
    if (!m.name.empty() && target.name.empty() && target.kind == NodeKind::Op) target.name = m.name;
    return v;
  }

  ValueId constant(double v, DType dt, bool weak) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    auto key = std::make_tuple(bits, dt, weak);
    if (auto it = constants_.find(key); it != constants_.end()) return it->second;
    Node c;
    c.kind = NodeKind::Constant;
    c.constant = v;
    c.weak = weak;
    c.type = TensorType{dt, {}};
    ValueId id = out_.add(std::move(c));
    constants_.emplace(key, id);
    return id;
  }

  // The scalar constant that `v` only reshapes or broadcasts, if it is one.
  std::optional<ValueId> constant_behind(ValueId v) const {
    while (at(v).kind == NodeKind::Op && (at(v).op == OpKind::Reshape || at(v).op == OpKind::BroadcastTo))
      v = at(v).args[0];
    if (at(v).kind == NodeKind::Constant) return v;
    return std::nullopt;
  }

  // An existing value equal to `m`, when its op's identity (the table's fold column) says so and
  // the type is unchanged; the rule may also rewrite m into a simpler equal op.
  std::optional<ValueId> identity(Node& m) {
    FoldCtx ctx{m, out_};
    if (std::optional<ValueId> same = kFolds[static_cast<size_t>(m.op)](ctx)) return same;
    // A scalar constant reshaped or broadcast into an op that broadcasts anyway: use the scalar,
    // when another operand has the result's shape (where has three operands, the others two).
    if (op_info(m.op).has(kBroadcast)) {
      for (size_t i = 0; i < m.args.size(); ++i) {
        std::optional<ValueId> scalar = constant_behind(m.args[i]);
        bool shaped_by_another = false;
        for (size_t j = 0; j < m.args.size(); ++j)
          shaped_by_another = shaped_by_another || (j != i && at(m.args[j]).type.shape == m.type.shape);
        if (scalar && shaped_by_another) m.args[i] = *scalar;
      }
    }
    return std::nullopt;
  }

  // A constant for an op on constants with a scalar result, computed by the interpreter.
  std::optional<ValueId> fold(const Node& m) {
    if (!m.type.is_scalar()) return std::nullopt;
    std::vector<interp::Tensor> values;
    bool all_weak = true;
    for (ValueId a : m.args) {
      const Node& n = at(a);
      if (n.kind != NodeKind::Constant) return std::nullopt;
      values.push_back(interp::Tensor::scalar(n.constant, n.type.dtype));
      all_weak = all_weak && n.weak;
    }
    Graph one;
    std::vector<ValueId> ids;
    for (const interp::Tensor& t : values) {
      Node c;
      c.kind = NodeKind::Constant;
      c.constant = t.data[0];
      c.type = t.type;
      ids.push_back(one.add(std::move(c)));
    }
    Node op = m;
    op.args = ids;
    op.name.clear();
    ValueId r = one.add(std::move(op));
    double v = interp::evaluate(one, {})[static_cast<size_t>(r)].data[0];
    return constant(v, m.type.dtype, all_weak);
  }

  // Keeps leaves and what outputs, the loss and assigns need; renumbers densely.
  static Graph eliminate_dead(Graph g) {
    std::vector<bool> live = live_values(g);
    for (ValueId id = 0; id < g.size(); ++id)  // leaves stay (they read nothing, so nothing else changes)
      if (g[id].kind != NodeKind::Op && g[id].kind != NodeKind::Constant) live[id] = true;
    Graph out;
    out.name = g.name;
    std::vector<ValueId> renumber(g.nodes.size(), -1);
    for (ValueId id = 0; id < g.size(); ++id) {
      if (!live[id]) continue;
      Node n = std::move(g[id]);
      for (ValueId& a : n.args) a = renumber[a];
      renumber[id] = out.add(std::move(n));
    }
    copy_results(g, renumber, out);
    return out;
  }

  const Graph& in_;
  Graph out_;
  std::vector<ValueId> map_;
  std::set<ValueId> named_outputs_;  // the input graph's outputs
  std::map<Key, ValueId> seen_;
  std::map<std::tuple<uint64_t, DType, bool>, ValueId> constants_;
};

}  // namespace

Graph simplify(Graph g) { return Simplifier(g).run(); }

}  // namespace gradc
