// The update rules, as torch.optim writes them (g is the gradient, after clipping, and after
// sgd's, momentum's and adam's coupled weight decay λ: g ← g + λ w, added only when λ ≠ 0):
//   sgd:       w ← w - lr g
//   momentum:  b ← μ b + g;  w ← w - lr (nesterov ? g + μ b : b)           (buffer starts at 0)
//   adam:      t ← t + 1;  m ← β1 m + (1 - β1) g;  v ← β2 v + (1 - β2) g²;
//              w ← w - (lr / (1 - β1^t)) m / (√v / √(1 - β2^t) + ε)
//   adamw:     the same, after w ← w (1 - lr λ)                            (decoupled decay)
//   clip_norm: g ← g min(1, c / (‖g‖ + 1e-6)), ‖g‖ the norm of all gradients together
//              (torch.nn.utils.clip_grad_norm_)
#include "passes/OptimizerLowering.h"

#include <cmath>
#include <unordered_set>

#include "passes/GraphWriter.h"

namespace gradc {

namespace {

class Lowering {
 public:
  Lowering(Graph& g, const Optimizer& opt, SourceLoc loc) : g_(g), e_(g), opt_(opt), loc_(std::move(loc)) {}

  void run(std::vector<ParamGrad> grads) {
    if (grads.empty()) return;
    // A param the loss reaches takes its new value from the optimizer; an `assign` of it would
    // be a second new value, so it is refused where it is written.
    for (const ParamGrad& pg : grads)
      for (const Assign& a : g_.assigns)
        if (a.target == pg.param)
          fail(a.loc, "'{}' is assigned here, but the optimizer of 'minimize' (line {}) updates it too: drop the assign "
                      "or make '{}' a state", g_[pg.param].name, loc_.line, g_[pg.param].name);
    dtype_ = g_[grads.front().param].type.dtype;
    if (const Attr* clip = opt_.args.find("clip_norm")) clip_by_global_norm(grads, clip->as_number());
    if (opt_.kind != "adamw")  // (adamw's weight_decay is decoupled, below)
      if (const Attr* wd = opt_.args.find("weight_decay"); wd && wd->as_number() != 0) l2_ = wd->as_number();
    if (opt_.kind == "adam" || opt_.kind == "adamw") begin_adam();
    for (const ParamGrad& pg : grads) update(pg.param, pg.grad);
  }

 private:
  double number(std::string_view name) const { return opt_.args.get(name).as_number(); }
  ValueId c(double v) { return e_.constant(v, dtype_); }

  // lr: a number, or the name of a scalar input that a schedule feeds.
  ValueId lr() {
    const Attr& a = opt_.args.get("lr");
    if (!a.is_ident()) return c(a.as_number());
    if (!lr_input_) lr_input_ = g_.find(a.as_ident());  // once: a search of every node per param was quadratic
    if (!*lr_input_) fail(loc_, "optimizer: lr={} names no input", a.as_ident());
    return **lr_input_;
  }

  ValueId new_state(const std::string& name, const TensorType& type) {
    Node n;
    n.kind = NodeKind::State;
    if (names_.empty())
      for (const Node& m : g_.nodes) names_.insert(m.name);
    n.name = unused_name(names_, name);  // (the nodes emitted between states are unnamed)
    n.type = type;
    n.init = Init{"zeros", {}};
    return g_.add(std::move(n));
  }

  void clip_by_global_norm(std::vector<ParamGrad>& grads, double max_norm) {
    std::optional<ValueId> total;
    for (const ParamGrad& pg : grads) {
      ValueId s = e_.op(OpKind::Sum, {e_.op(OpKind::Square, {pg.grad})});
      total = total ? e_.add(*total, s) : s;
    }
    ValueId norm = e_.op(OpKind::Sqrt, {*total});
    ValueId coef = e_.op(OpKind::Minimum, {e_.div(c(max_norm), e_.add(norm, c(1e-6))), c(1.0)});
    for (ParamGrad& pg : grads) pg.grad = e_.mul(pg.grad, coef);
  }

  // The step count t, shared by every param, and the bias corrections 1 - β^t.
  void begin_adam() {
    ValueId t = new_state(opt_.kind + ".step", TensorType{dtype_, {}});
    ValueId t_next = e_.add(t, c(1.0));
    g_.assigns.push_back({t, t_next, loc_});
    bias1_ = e_.sub(c(1.0), e_.op(OpKind::Pow, {c(number("beta1")), t_next}));
    bias2_ = e_.sub(c(1.0), e_.op(OpKind::Pow, {c(number("beta2")), t_next}));
  }

  void update(ValueId w, ValueId grad) {
    std::string name = g_[w].name;
    TensorType type = g_[w].type;
    if (l2_ != 0) grad = e_.add(grad, e_.scale(w, l2_));  // torch: d_p = d_p.add(p, alpha=weight_decay)
    ValueId next;
    if (opt_.kind == "sgd") {
      next = e_.sub(w, e_.mul(lr(), grad));
    } else if (opt_.kind == "momentum") {
      double mu = number("momentum");
      ValueId buf = new_state(name + ".momentum_buffer", type);
      ValueId buf_next = e_.add(e_.scale(buf, mu), grad);
      g_.assigns.push_back({buf, buf_next, loc_});
      ValueId dir = opt_.args.get("nesterov").as_bool() ? e_.add(grad, e_.scale(buf_next, mu)) : buf_next;
      next = e_.sub(w, e_.mul(lr(), dir));
    } else {
      double b1 = number("beta1"), b2 = number("beta2");
      ValueId m = new_state(name + ".exp_avg", type);
      ValueId v = new_state(name + ".exp_avg_sq", type);
      ValueId m_next = e_.add(e_.scale(m, b1), e_.scale(grad, 1 - b1));
      ValueId v_next = e_.add(e_.scale(v, b2), e_.scale(e_.op(OpKind::Square, {grad}), 1 - b2));
      g_.assigns.push_back({m, m_next, loc_});
      g_.assigns.push_back({v, v_next, loc_});
      ValueId denom = e_.add(e_.div(e_.op(OpKind::Sqrt, {v_next}), e_.op(OpKind::Sqrt, {bias2_})), c(number("eps")));
      ValueId base = w;
      if (opt_.kind == "adamw") base = e_.mul(w, e_.sub(c(1.0), e_.mul(lr(), c(number("weight_decay")))));
      next = e_.sub(base, e_.mul(e_.div(lr(), bias1_), e_.div(m_next, denom)));
    }
    g_.assigns.push_back({w, next, loc_});
  }

  Graph& g_;
  GraphWriter e_;
  const Optimizer& opt_;
  SourceLoc loc_;  // of the minimize statement: the optimizer's assigns carry it
  DType dtype_ = DType::F32;
  ValueId bias1_ = -1, bias2_ = -1;
  double l2_ = 0;  // sgd's, momentum's and adam's weight_decay: 0 adds no node
  std::optional<std::optional<ValueId>> lr_input_;  // the input lr names, once looked up
  std::unordered_set<std::string> names_;            // every node's name, once a state is added
};

}  // namespace

Graph lower_optimizer(Differentiated d) {
  Graph g = std::move(d.graph);
  GRADC_ASSERT(g.minimize.has_value(), "lower_optimizer needs a graph with a minimize statement");
  Minimize m = *g.minimize;
  g.minimize.reset();
  Lowering(g, m.optimizer, m.loc).run(d.grads);
  // The loss is the first output of a training graph: that is how a step finds it.
  std::erase_if(g.outputs, [&](const Output& o) { return o.value == m.loss; });
  g.outputs.insert(g.outputs.begin(), Output{m.loss, m.loc});
  return g;
}

}  // namespace gradc
