#include "ir/Verifier.h"

#include <map>
#include <set>

namespace gradc {

namespace {

class Verifier {
 public:
  explicit Verifier(const Graph& g) : g_(g) {}

  std::vector<Error> run() {
    for (ValueId id = 0; id < g_.size(); ++id) node(id);
    for (const Output& o : g_.outputs) operand(o.value, g_.size(), o.loc, "output");
    if (g_.minimize) minimize(*g_.minimize);
    std::set<ValueId> assigned;
    for (const Assign& a : g_.assigns) assign(a, assigned);
    if (!g_.minimize && !g_.assigns.empty()) step_loss();
    return std::move(errors_);
  }

 private:
  template <typename... Args>
  void error(const SourceLoc& loc, fmt::format_string<Args...> f, Args&&... args) {
    errors_.emplace_back(loc, fmt::format(f, std::forward<Args>(args)...));
  }

  std::string label(ValueId id) const {
    const Node& n = g_[id];
    if (!n.name.empty()) return fmt::format("'{}'", n.name);
    if (n.kind == NodeKind::Op) return fmt::format("value #{} ({})", id, op_info(n.op).name);
    return fmt::format("value #{}", id);
  }

  bool operand(ValueId arg, ValueId user, const SourceLoc& loc, std::string_view what) {
    if (arg < 0 || arg >= user) {
      error(loc, "{} refers to value #{}, which is not defined before it", what, arg);
      return false;
    }
    return true;
  }

  void node(ValueId id) {
    const Node& n = g_[id];
    if (!n.name.empty() && !names_.emplace(n.name, id).second)
      error(n.loc, "'{}' is defined twice", n.name);
    if (n.type.rank() > kMaxRank) {  // before anything walks the dims (and a 20,000-dim type is not printed)
      error(n.loc, "{} has rank {}; a shape has at most {} dimensions (gradc's limit)", label(id), n.type.rank(),
            kMaxRank);
      return;
    }
    for (int64_t d : n.type.shape)
      if (d <= 0) error(n.loc, "{} has a non-positive dimension in {}", label(id), n.type);
    if (n.is_leaf()) {
      if (!n.args.empty()) error(n.loc, "{} is a leaf but has operands", label(id));
      if (n.kind == NodeKind::Constant && !n.type.is_scalar())
        error(n.loc, "constant {} must be a scalar, is {}", label(id), n.type);
      if (n.kind == NodeKind::Input && n.init) error(n.loc, "input {} has an initializer", label(id));
      if ((n.kind == NodeKind::Param || n.kind == NodeKind::State) && !n.type.shape.empty() &&
          !is_float(n.type.dtype))
        error(n.loc, "{} {} must be a float tensor, is {}", n.kind == NodeKind::Param ? "param" : "state",
              label(id), n.type);
      if (n.init) init(id, *n.init);
      return;
    }
    const OpInfo& op = op_info(n.op);
    std::vector<TensorType> arg_types;
    for (ValueId a : n.args) {
      if (!operand(a, id, n.loc, label(id))) return;
      arg_types.push_back(g_[a].type);
    }
    Attrs attrs = n.attrs;
    for (const NamedAttr& a : n.attrs) {
      bool known = false;
      for (const AttrSpec& s : op.attrs) known |= s.name == a.name;
      if (!known) error(n.loc, "{} has an attribute '{}' that {} does not take", label(id), a.name, op.name);
    }
    try {
      TensorType expected = infer_type(n.op, arg_types, attrs, n.loc);
      if (expected != n.type)
        error(n.loc, "{} has type {} but {} of its operands gives {}", label(id), n.type, op.name, expected);
      if (attrs != n.attrs) error(n.loc, "{} has attributes that are not in canonical form", label(id));
    } catch (const Error& e) {
      errors_.push_back(e);
    }
  }

  void init(ValueId id, const Init& in) {
    const std::vector<AttrSpec>* schema = init_schema(in.kind);
    if (!schema) error(g_[id].loc, "{} has an unknown initializer '{}'", label(id), in.kind);
  }

  void minimize(const Minimize& m) {
    if (!operand(m.loss, g_.size(), m.loc, "minimize")) return;
    const Node& loss = g_[m.loss];
    if (!loss.type.is_scalar() || !is_float(loss.type.dtype))
      error(m.loc, "minimize needs a float scalar loss, but {} is {} (reduce it with mean(...) or a loss op)",
            label(m.loss), loss.type);
    if (!optimizer_schema(m.optimizer.kind))
      error(m.loc, "unknown optimizer '{}' (expected one of: {})", m.optimizer.kind, optimizer_names());
    if (const Attr* lr = m.optimizer.args.find("lr"); lr && lr->is_ident()) {
      std::optional<ValueId> in = g_.find(lr->as_ident());
      if (!in || g_[*in].kind != NodeKind::Input || !g_[*in].type.is_scalar() || !is_float(g_[*in].type.dtype))
        error(m.loc, "lr={} must name a float scalar input (like 'input {} : f32[]')", lr->as_ident(),
              lr->as_ident());
    }
  }

  void assign(const Assign& a, std::set<ValueId>& assigned) {
    if (!operand(a.target, g_.size(), a.loc, "assign") || !operand(a.value, g_.size(), a.loc, "assign")) return;
    const Node& target = g_[a.target];
    if (target.kind != NodeKind::Param && target.kind != NodeKind::State) {
      error(a.loc, "assign needs a param or state, but {} is not one", label(a.target));
      return;
    }
    if (!assigned.insert(a.target).second) error(a.loc, "{} is assigned twice", label(a.target));
    if (g_[a.value].type != target.type)
      error(a.loc, "assign {}: the new value is {} but {} is {}", label(a.target), g_[a.value].type,
            label(a.target), target.type);
  }

  // A training graph written with assign lines (no minimize): its step returns its first output
  // as the loss, as optimizer lowering arranges for a minimize, so there must be one.
  void step_loss() {
    if (g_.outputs.empty())
      error(g_.assigns.front().loc,
            "a spec with assign lines needs an output: its first output is the loss the train step returns "
            "(add 'output loss' before the assigns, or use 'minimize LOSS with OPTIMIZER')");
  }

  const Graph& g_;
  std::map<std::string, ValueId> names_;
  std::vector<Error> errors_;
};

}  // namespace

std::vector<Error> verify(const Graph& g) { return Verifier(g).run(); }

void verify_or_throw(const Graph& g) {
  std::vector<Error> errors = verify(g);
  if (errors.empty()) return;
  std::string message = errors.front().message();
  for (size_t i = 1; i < errors.size(); ++i) {  // appended piecewise: GCC 12's -O3 warns (-Wrestrict) on "\n" + string
    message += '\n';
    message += errors[i].what();
  }
  throw Error(errors.front().loc(), message);
}

}  // namespace gradc
