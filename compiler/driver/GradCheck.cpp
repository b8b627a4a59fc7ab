// The gradient checker: for each param, autodiff's gradient against central differences
//   (L(w + h v) - L(w - h v)) / 2h  ≈  <dL/dw, v>
// for a few single elements (v = e_i) and a few random directions (every element at once),
// on the spec cast to f64 with seeded random inputs and params. Errors are relative to the
// size of the param's gradient (its largest element for e_i, |g| |v| for a direction), so
// elements whose gradient is tiny do not turn rounding noise into failures.
//
// relu, abs, maximum, minimum, max and maxpool2d have kinks, where the derivative jumps: a
// difference taken across one measures nothing (a CNN has 10^5 pooling windows, so some window's
// two largest values are within h of each other). Each probe therefore also evaluates which
// branch every kinked op takes, and a probe whose w + hv or w - hv takes another branch than w
// is drawn again.
#include <algorithm>
#include <cmath>
#include <random>

#include "gradc/gradc.h"
#include "passes/Autodiff.h"
#include "passes/CastToF64.h"
#include "passes/Emitter.h"
#include "runtime/Init.h"

namespace gradc {

namespace {

using interp::Feeds;
using interp::Tensor;

// The class count an i32 input ranges over: from the op that consumes it as labels.
int64_t label_range(const Graph& g, ValueId input) {
  for (const Node& n : g.nodes) {
    if (n.kind != NodeKind::Op) continue;
    if (n.op == OpKind::SoftmaxCrossEntropy && n.args[1] == input) return g[n.args[0]].type.shape[1];
    if (n.op == OpKind::OneHot && n.args[0] == input) return n.attrs.get("classes").as_int();
  }
  return 1;
}

// Inputs uniform in [-1, 1], labels uniform over their classes, params uniform in
// [-a, a] with a = 1/sqrt(fan in) so that activations stay in a useful range; states zero.
Feeds random_feeds(const Graph& g, std::mt19937_64& rng) {
  Feeds feeds;
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    if (n.kind == NodeKind::Constant || n.kind == NodeKind::Op) continue;
    Tensor t = Tensor::zeros(n.type);
    if (n.kind == NodeKind::Input && n.type.dtype == DType::I32) {
      std::uniform_int_distribution<int64_t> cls(0, label_range(g, id) - 1);
      for (double& v : t.data) v = static_cast<double>(cls(rng));
    } else if (n.kind == NodeKind::Input) {
      for (double& v : t.data) v = unit(rng);
    } else if (n.kind == NodeKind::Param) {
      // The runtime's fan rule (Keras's for [in, out], PyTorch's for conv weights); biases get 1.
      double fan_in = n.type.rank() >= 2 ? fans(n.type.shape).in : 1.0;
      double a = 1.0 / std::sqrt(fan_in);
      for (double& v : t.data) v = a * unit(rng);
    }
    feeds[n.name] = std::move(t);
  }
  return feeds;
}

// Adds, for every op with a kink, nodes that tell which side of it each element is on;
// returns them. They are 0/1 masks built from ordinary ops.
std::vector<ValueId> add_branch_masks(Graph& g) {
  Emitter e(g);
  std::vector<ValueId> masks;
  const ValueId forward = g.size();
  for (ValueId id = 0; id < forward; ++id) {
    if (g[id].kind != NodeKind::Op) continue;
    Node n = g[id];
    auto greater = [&](ValueId a, ValueId b) { masks.push_back(e.op(OpKind::Greater, {a, b})); };
    switch (n.op) {
      case OpKind::Relu:
      case OpKind::Abs: {
        ValueId zero = e.constant(0.0, n.type.dtype);
        greater(n.args[0], zero);
        greater(zero, n.args[0]);
        break;
      }
      case OpKind::Maximum:
      case OpKind::Minimum:
        greater(n.args[0], n.args[1]);
        greater(n.args[1], n.args[0]);
        break;
      case OpKind::Max:
        greater(e.expand(id, n.attrs.get("axes").as_ints(), g[n.args[0]].type.shape), n.args[0]);
        break;
      case OpKind::MaxPool2d: {
        ValueId ones = e.op(OpKind::BroadcastTo, {e.constant(1.0, n.type.dtype)}, {{"shape", Attr(n.type.shape)}});
        Attrs a{{"kernel", n.attrs.get("kernel")}, {"stride", n.attrs.get("stride")}};
        masks.push_back(e.op(OpKind::MaxPool2dGrad, {n.args[0], ones}, a));
        break;
      }
      case OpKind::Greater:
        masks.push_back(id);
        break;
      default:
        break;
    }
  }
  return masks;
}

class Checker {
 public:
  Checker(const Graph& g, const GradCheckOptions& o) : g_(cast_to_f64(g)), o_(o), rng_(o.seed) {
    if (!g_.minimize) fail({}, "gradc check: the spec has no 'minimize' statement, so there is no loss to check");
    loss_ = g_.minimize->loss;
    feeds_ = random_feeds(g_, rng_);
    probe_ = g_;
    masks_ = add_branch_masks(probe_);
    branches_ = branches(interp::evaluate(probe_, feeds_));
  }

  std::vector<ParamCheck> run() {
    Differentiated d = differentiate(g_);
    std::vector<Tensor> values = interp::evaluate(d.graph, feeds_);
    double at_point = values[static_cast<size_t>(loss_)].data[0];
    if (!std::isfinite(at_point))
      fail({}, "gradc check: the loss is {} at the random point, so finite differences mean nothing", at_point);
    std::vector<ParamCheck> results;
    for (const ParamGrad& pg : d.grads) results.push_back(check(g_[pg.param].name, values[static_cast<size_t>(pg.grad)]));
    return results;
  }

 private:
  std::vector<std::vector<double>> branches(const std::vector<Tensor>& values) const {
    std::vector<std::vector<double>> b;
    for (ValueId m : masks_) b.push_back(values[static_cast<size_t>(m)].data);
    return b;
  }

  // The loss with `param` set to w; nullopt when some kinked op takes another branch than at
  // the checked point.
  std::optional<double> loss_with(const std::string& param, const Tensor& w) {
    Tensor saved = feeds_[param];
    feeds_[param] = w;
    std::vector<Tensor> values = interp::evaluate(probe_, feeds_);
    feeds_[param] = std::move(saved);
    if (branches(values) != branches_) return std::nullopt;
    return values[static_cast<size_t>(loss_)].data[0];
  }

  // (L(w + h v) - L(w - h v)) / 2h, or nullopt across a kink.
  std::optional<double> numeric(const std::string& param, const std::vector<double>& v) {
    Tensor plus = feeds_[param], minus = feeds_[param];
    for (size_t i = 0; i < v.size(); ++i) {
      plus.data[i] += o_.step * v[i];
      minus.data[i] -= o_.step * v[i];
    }
    std::optional<double> up = loss_with(param, plus), down = loss_with(param, minus);
    if (!up || !down) return std::nullopt;
    return (*up - *down) / (2 * o_.step);
  }

  ParamCheck check(const std::string& param, const Tensor& grad) {
    ParamCheck r{param, grad.numel(), 0, 0};
    const std::vector<double>& g = grad.data;
    double largest = 0, norm = 0;
    for (double x : g) largest = std::max(largest, std::fabs(x)), norm += x * x;
    norm = std::sqrt(norm);
    // Single elements: all of them when there are few, else a seeded sample.
    std::vector<size_t> picks(g.size());
    for (size_t i = 0; i < picks.size(); ++i) picks[i] = i;
    std::shuffle(picks.begin(), picks.end(), rng_);
    picks.resize(std::min(picks.size(), static_cast<size_t>(std::max(o_.coordinates, 0))));
    for (size_t i : picks) {
      std::vector<double> e(g.size(), 0.0);
      e[i] = 1;
      if (std::optional<double> n = numeric(param, e)) record(r, g[i], *n, std::max(largest, kTiny));
      else ++r.kinks;
    }
    std::normal_distribution<double> normal;
    for (int k = 0, tries = 0; k < o_.directions && tries < kMaxTries; ++tries) {
      std::vector<double> v(g.size());
      double vnorm = 0, dot = 0;
      for (size_t i = 0; i < v.size(); ++i) v[i] = normal(rng_), vnorm += v[i] * v[i], dot += v[i] * g[i];
      std::optional<double> n = numeric(param, v);
      if (!n) {
        ++r.kinks;
        continue;
      }
      record(r, dot, *n, std::max(norm * std::sqrt(vnorm), kTiny));
      ++k;
    }
    return r;
  }

  static constexpr int kMaxTries = 8;

  static void record(ParamCheck& r, double autodiff, double numeric, double scale) {
    ++r.probes;
    double err = std::fabs(autodiff - numeric) / scale;
    if (!(err <= r.max_rel_error)) r.max_rel_error = err;  // NaN wins, so it cannot pass
  }

  // Below this a gradient counts as zero: its error is measured against this instead.
  static constexpr double kTiny = 1e-8;

  Graph g_;
  Graph probe_;                  // g_ plus the branch masks
  std::vector<ValueId> masks_;
  std::vector<std::vector<double>> branches_;  // the masks at the checked point
  GradCheckOptions o_;
  std::mt19937_64 rng_;
  ValueId loss_ = -1;
  Feeds feeds_;
};

}  // namespace

std::vector<ParamCheck> check_gradients(const Graph& g, const GradCheckOptions& options) {
  return Checker(g, options).run();
}

}  // namespace gradc
