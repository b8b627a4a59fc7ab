#include "ir/Verifier.h"

#include <algorithm>
#include <cmath>
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
    if (is_assign_step(g_)) first_output_is_loss();
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
      if (n.kind == NodeKind::Constant && n.type.dtype == DType::F32 && std::isfinite(n.constant) && !fits_f32(n.constant))
        error(n.loc, "{:g} does not fit in f32 (it would be {}; f32 holds magnitudes from about 1.4e-45 to 3.4e+38)",
              n.constant, static_cast<float>(n.constant));
      if (n.kind == NodeKind::Input && n.init) error(n.loc, "input {} has an initializer", label(id));
      if ((n.kind == NodeKind::Param || n.kind == NodeKind::State) && !is_float(n.type.dtype))
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

  // The initializer's arguments as torch.nn.init takes them: finite, normal's std >= 0
  // (normal_ refuses a negative std), uniform's lo <= hi (uniform_ refuses from > to).
  void init(ValueId id, const Init& in) {
    const std::vector<AttrSpec>* schema = init_schema(in.kind);
    if (!schema) {
      error(g_[id].loc, "{} has an unknown initializer '{}'", label(id), in.kind);
      return;
    }
    auto where = [&](std::string_view arg) {
      for (const NamedAttr& a : in.args)
        if (a.name == arg && a.loc.known()) return a.loc;
      return g_[id].loc;
    };
    for (const NamedAttr& a : in.args)
      if (a.value.is_number() && !std::isfinite(a.value.as_number()))
        error(where(a.name), "{}: {}'s '{}' must be finite, is {}", label(id), in.kind, a.name, to_string(a.value));
      else if (a.value.is_number() && g_[id].type.dtype == DType::F32 && !fits_f32(a.value.as_number()))
        error(where(a.name), "{}: {}'s '{}' is {:g}, which does not fit in the param's f32 (it would be {})", label(id),
              in.kind, a.name, a.value.as_number(), static_cast<float>(a.value.as_number()));
    auto number = [&](std::string_view arg) {
      const Attr* a = in.args.find(arg);
      return a && a->is_number() ? a->as_number() : 0.0;
    };
    if (in.kind == "normal" && number("std") < 0)
      error(where("std"), "{}: normal's std must be at least 0, is {:g}", label(id), number("std"));
    if (in.kind == "uniform" && number("lo") > number("hi"))
      error(where("lo"), "{}: uniform's lo ({:g}) must not be above its hi ({:g})", label(id), number("lo"),
            number("hi"));
  }

  // Hyper-parameters in the ranges torch.optim accepts (torch/optim/sgd.py, adam.py, adamw.py:
  // "Invalid learning rate", "Invalid beta parameter at index 0", ...), each finite:
  //   lr >= 0, momentum >= 0 (nesterov needs momentum > 0), 0 <= beta1, beta2 < 1,
  //   weight_decay >= 0; stricter than torch: eps > 0 (torch takes 0, which makes 0/0 where a
  //   gradient element is 0 from the first step) and clip_norm > 0 (clip_grad_norm_ checks
  //   nothing; 0 zeroes every gradient, a negative one turns them uphill).
  void hyper_parameters(const Minimize& m) {
    const Attrs& args = m.optimizer.args;
    bool f32_params = std::any_of(g_.nodes.begin(), g_.nodes.end(),
                                  [](const Node& n) { return n.kind == NodeKind::Param && n.type.dtype == DType::F32; });
    auto check = [&](std::string_view name, bool ok, std::string_view range) {
      const Attr* a = args.find(name);
      if (!a || !a->is_number()) return;
      SourceLoc loc = m.loc;
      for (const NamedAttr& n : args)
        if (n.name == name && n.loc.known()) loc = n.loc;
      if (ok && std::isfinite(a->as_number())) {
        // The update runs in the params' dtype: lr=1e39 is inf there, eps=1e-50 is 0.
        if (f32_params && !fits_f32(a->as_number()))
          error(loc, "{}: {} is {:g}, which does not fit in the f32 the params are updated in (it would be {})",
                m.optimizer.kind, name, a->as_number(), static_cast<float>(a->as_number()));
        return;
      }
      error(loc, "{}: {} must be {}, is {:g}", m.optimizer.kind, name, range, a->as_number());
    };
    auto value = [&](std::string_view name) {
      const Attr* a = args.find(name);
      return a && a->is_number() ? a->as_number() : 0.0;
    };
    check("lr", value("lr") >= 0, "at least 0");
    check("momentum", value("momentum") >= 0, "at least 0");
    if (const Attr* n = args.find("nesterov"); n && *n == Attr(true) && value("momentum") == 0)
      check("momentum", false, "above 0 with nesterov=true");
    check("beta1", value("beta1") >= 0 && value("beta1") < 1, "in [0, 1)");
    check("beta2", value("beta2") >= 0 && value("beta2") < 1, "in [0, 1)");
    check("eps", value("eps") > 0, "above 0");
    check("weight_decay", value("weight_decay") >= 0, "at least 0");
    check("clip_norm", value("clip_norm") > 0, "above 0");
  }

  void minimize(const Minimize& m) {
    if (!operand(m.loss, g_.size(), m.loc, "minimize")) return;
    const Node& loss = g_[m.loss];
    if (!loss.type.is_scalar() || !is_float(loss.type.dtype))
      error(m.loc, "minimize needs a float scalar loss, but {} is {} (reduce it with mean(...) or a loss op)",
            label(m.loss), loss.type);
    if (!optimizer_schema(m.optimizer.kind))
      error(m.loc, "unknown optimizer '{}' (expected one of: {})", m.optimizer.kind, optimizer_names());
    else
      hyper_parameters(m);
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
  void first_output_is_loss() {
    if (g_.outputs.empty())
      error(g_.assigns.front().loc,
            "a spec with assign lines needs an output: its first output is the loss the train step returns "
            "(add 'output loss' before the assigns, or use 'minimize LOSS with OPTIMIZER')");
    else if (const Output& first = g_.outputs.front(); first.value < g_.size()) {
      const TensorType& t = g_[first.value].type;
      if (!t.is_scalar() || !is_float(t.dtype))
        error(first.loc,
              "a spec with assign lines returns its first output as the loss, so it must be a float scalar, but {} "
              "is {} (reduce it with mean(...), or put the loss's output line first)",
              label(first.value), t);
    }
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
