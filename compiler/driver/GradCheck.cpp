// The gradient checker: for each param, autodiff's gradient against central differences
//   (L(w + h v) - L(w - h v)) / 2h  ≈  <dL/dw, v>
// for a few single elements (v = e_i) and a few random directions (every element at once),
// on the spec cast to f64 with seeded random inputs and params. The step h is chosen per param
// from its scale and f64's epsilon (default_step) unless one is given. The loss is evaluated by
// the f64 graph compiled once by the JIT (or by the reference interpreter, far slower on real
// sizes: it computes every op of the model per probe). Errors are absolute, and relative to the
// size of the param's gradient (its largest element for e_i, |g| |v| for a direction), so
// elements whose gradient is tiny do not turn rounding noise into failures.
//
// relu, abs, maximum, minimum, max and maxpool2d have kinks, where the derivative jumps: a
// difference taken across one measures nothing (a CNN has 10^5 pooling windows, so some window's
// two largest values are within h of each other). Each probe therefore also evaluates which
// branch every kinked op takes; a probe whose w + hv or w - hv takes another branch than w is
// taken again at h/10 and h/100 (a chosen h only), then drawn again (a direction) or dropped.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "driver/Memory.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"
#include "passes/Autodiff.h"
#include "passes/CastToF64.h"
#include "passes/Dropout.h"
#include "gradc/Init.h"
#include "passes/Gradients.h"

namespace gradc {

namespace {

using interp::Feeds;
using ITensor = interp::Tensor;

constexpr double kStepFactor = 10;

// Inputs uniform in [-1, 1], labels uniform over their classes, params uniform in
// [-a, a] with a = 1/sqrt(fan in) so that activations stay in a useful range; states zero.
Feeds random_feeds(const Graph& g, std::mt19937_64& rng) {
  Feeds feeds;
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    if (n.kind == NodeKind::Constant || n.kind == NodeKind::Op) continue;
    ITensor t = ITensor::zeros(n.type);
    if (n.kind == NodeKind::Input && n.type.dtype == DType::I32) {
      std::uniform_int_distribution<int64_t> cls(0, class_count(g, id) - 1);
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

// Adds, for every op with a kink, nodes that tell which side of it each element is on
// (the op table's kink masks); returns them. They are 0/1 masks built from ordinary ops.
std::vector<ValueId> add_branch_masks(Graph& g) {
  GraphWriter e(g);
  std::vector<ValueId> masks;
  const ValueId forward = g.size();
  for (ValueId id = 0; id < forward; ++id) {
    if (g[id].kind != NodeKind::Op) continue;
    KinkCtx c{e, id, masks};
    kink_rule(g[id].op)(c);
  }
  return masks;
}

// The step h for a param whose values are w, when none is given: central differences err by
// about h^2 |L^(3)| / 6 (truncation) plus eps |L| / h (rounding), least near
// h = cbrt(3 eps |L| / |L^(3)|); with L and its derivatives of about the param's scale that is
// cbrt(eps) * max(1, |w|) times a constant. Rounding is the larger danger on real sizes (a loss
// summed over 50,000 squares carries more than eps of noise), so the constant leans large: 10
// (h = 6.1e-5 for |w| <= 1).
double default_step(const std::vector<double>& w) {
  double largest = 0;
  for (double x : w) largest = std::max(largest, std::fabs(x));
  return kStepFactor * std::cbrt(std::numeric_limits<double>::epsilon()) * std::max(1.0, largest);
}

// Evaluates some values of a forward graph at the checked point, with one param or state leaf
// changed at a time: the reference interpreter, or the graph cast to f64 and compiled once by
// the JIT (its predict, whose outputs are the wanted values).
class Engine {
 public:
  virtual ~Engine() = default;
  virtual void set(const std::string& leaf, const std::vector<double>& w) = 0;
  virtual std::vector<std::vector<double>> run() = 0;  // the wanted values, in order
};

class InterpreterEngine : public Engine {
 public:
  InterpreterEngine(const Graph& g, std::vector<ValueId> wanted, const Feeds& feeds) : g_(g), wanted_(std::move(wanted)), feeds_(feeds) {}
  void set(const std::string& leaf, const std::vector<double>& w) override { feeds_.at(leaf).data = w; }
  std::vector<std::vector<double>> run() override {
    std::vector<ITensor> values = interp::evaluate(g_, feeds_);
    std::vector<std::vector<double>> out;
    for (ValueId v : wanted_) out.push_back(std::move(values[static_cast<size_t>(v)].data));
    return out;
  }

 private:
  const Graph& g_;
  std::vector<ValueId> wanted_;
  Feeds feeds_;
};

class JitEngine : public Engine {
 public:
  // Compiles g (f64) with the wanted values as its outputs and nothing to minimize.
  JitEngine(Graph g, const std::vector<ValueId>& wanted, const Feeds& feeds, int threads) {
    g.minimize.reset();
    g.assigns.clear();
    g.outputs.clear();
    std::set<std::string> names;
    for (const Node& n : g.nodes)
      if (n.kind != NodeKind::Op) names.insert(n.name);
    // A value may be wanted twice (two kinked ops reading one value: relu(z) and abs(z)): it is
    // one output, named once, read for each.
    std::map<ValueId, std::string> named;
    for (ValueId v : wanted) {
      if (auto it = named.find(v); it != named.end()) {
        outputs_.push_back(it->second);
        continue;
      }
      std::string& name = g[v].name;
      bool leaf = g[v].kind != NodeKind::Op;  // an input or param keeps its name: it is fed by it
      if (!leaf && (name.empty() || name[0] == '%' || names.count(name))) name = fmt::format("check.value{}", v);
      names.insert(name);
      named.emplace(v, name);
      g.outputs.push_back({v, {}});
      outputs_.push_back(name);
    }
    model_ = compile(g);
    session_ = std::make_unique<Session>(model_, SessionOptions{.threads = threads});
    std::vector<std::string> weights = session_->param_names();
    for (const auto& [name, t] : feeds) {
      std::optional<ValueId> id = g.find(name);
      if (!id) continue;
      if (g[*id].kind == NodeKind::Input) {
        Tensor& in = inputs_.emplace_back(t.type);
        for (int64_t i = 0; i < t.numel(); ++i) {
          if (t.type.dtype == DType::I32) in.as<int32_t>()[i] = static_cast<int32_t>(t.data[static_cast<size_t>(i)]);
          else in.as<double>()[i] = t.data[static_cast<size_t>(i)];
        }
        feeds_.emplace(name, TensorView(in));
      } else if (std::find(weights.begin(), weights.end(), name) != weights.end()) {
        set(name, t.data);
      }
    }
  }
  void set(const std::string& leaf, const std::vector<double>& w) override {
    Tensor& t = session_->param(leaf);
    GRADC_ASSERT(t.numel() == static_cast<int64_t>(w.size()) && t.dtype() == DType::F64, "gradc check: '{}' is {}", leaf, t.type());
    std::copy(w.begin(), w.end(), t.as<double>());
  }
  std::vector<std::vector<double>> run() override {
    (void)session_->predict(feeds_);
    std::vector<std::vector<double>> out;
    for (const std::string& name : outputs_) {
      const Tensor& t = session_->output(name);
      out.emplace_back(t.as<double>(), t.as<double>() + t.numel());
    }
    return out;
  }

 private:
  Model model_;
  std::unique_ptr<Session> session_;
  std::vector<std::string> outputs_;
  std::deque<Tensor> inputs_;  // the inputs as the JIT reads them (i32 labels as int32)
  gradc::Feeds feeds_;
};

// The memory a check takes: every leaf at the point and the param being probed three more
// times (w + hv, w - hv, the direction); then the interpreter's every value, or the JIT-ed
// gradient model's own params, arena and outputs (the larger of its two models).
MemoryUse checker_memory(const Graph& g, bool interpreter, const Graph& differentiated, const std::vector<ValueId>& grads) {
  MemoryUse m;
  int64_t largest = 0;
  for (const Node& n : g.nodes) {
    int64_t b = bytes_of(n.type);
    if (n.kind == NodeKind::Param) m.params = add_bytes(m.params, b), largest = std::max(largest, b);
    if (n.kind == NodeKind::State) m.state = add_bytes(m.state, b);
    if (n.kind == NodeKind::Input) m.inputs = add_bytes(m.inputs, b);
  }
  m.params = add_bytes(m.params, mul_bytes(largest, 3));
  if (interpreter) {  // the interpreter keeps every value of the graph it evaluates
    for (const Node& n : differentiated.nodes) m.arena = add_bytes(m.arena, bytes_of(n.type));
    return m;
  }
  Graph model = differentiated;
  model.minimize.reset();
  model.assigns.clear();
  model.outputs.clear();
  for (ValueId v : grads) model.outputs.push_back({v, {}});
  MemoryUse jit = memory_use(nullptr, predict_kernels(model));
  m.arena = jit.arena;
  m.gemm_scratch = jit.gemm_scratch;
  m.params = add_bytes(m.params, jit.params);
  m.state = add_bytes(m.state, jit.state);
  m.inputs = add_bytes(m.inputs, jit.inputs);
  m.outputs = jit.outputs;
  return m;
}

class Checker {
 public:
  // Dropout is lowered first, so that the probes' losses see the masks the gradients are of.
  Checker(const Graph& g, const GradCheckOptions& o) : g_(cast_to_f64(lower_dropout(g))), o_(o), rng_(o.seed) {
    if (!g_.minimize) fail({}, "gradc check: the spec has no 'minimize' statement, so there is no loss to check");
    loss_ = g_.minimize->loss;
    probe_ = g_;
    masks_ = add_branch_masks(probe_);
    d_ = differentiate(g_);
    // Refused before anything is allocated; the JIT's compile then checks its own models.
    std::vector<ValueId> grads{loss_};
    for (const ParamGrad& pg : d_.grads) grads.push_back(pg.grad);
    require_memory(g.name, checker_memory(g_, o.interpreter, d_.graph, grads),
                   o.interpreter ? "for gradc check's f64 copies and the interpreter's values"
                                 : "for gradc check's f64 copies and its JIT-ed f64 gradient model");
    std::vector<ValueId> wanted{loss_};
    wanted.insert(wanted.end(), masks_.begin(), masks_.end());
    feeds_ = random_feeds(g_, rng_);
    if (o.interpreter) engine_ = std::make_unique<InterpreterEngine>(probe_, wanted, feeds_);
    else engine_ = std::make_unique<JitEngine>(probe_, wanted, feeds_, o.threads);
  }

  std::vector<ParamCheck> run() {
    std::vector<ValueId> wanted{loss_};
    for (const ParamGrad& pg : d_.grads) wanted.push_back(pg.grad);
    std::vector<std::vector<double>> values;
    if (o_.interpreter) values = InterpreterEngine(d_.graph, wanted, feeds_).run();
    else values = JitEngine(d_.graph, wanted, feeds_, o_.threads).run();  // compiled, run once, freed
    at_point_ = values[0][0];
    if (!std::isfinite(at_point_))
      fail({}, "gradc check: the loss is {} at the random point, so finite differences mean nothing", at_point_);
    std::vector<std::vector<double>> at = engine_->run();
    branches_.assign(at.begin() + 1, at.end());
    std::vector<ParamCheck> results;
    for (size_t i = 0; i < d_.grads.size(); ++i) {
      std::vector<double>& grad = values[i + 1];
      if (o_.gradient_scale != 1.0)  // the test-only hook: a wrong gradient, which must fail
        for (double& x : grad) x *= o_.gradient_scale;
      results.push_back(check(g_[d_.grads[i].param].name, grad));
    }
    return results;
  }

 private:
  // The loss with `param` set to w; nullopt when some kinked op takes another branch than at
  // the checked point.
  std::optional<double> loss_with(const std::string& param, const std::vector<double>& w) {
    engine_->set(param, w);
    std::vector<std::vector<double>> values = engine_->run();
    engine_->set(param, feeds_.at(param).data);
    if (!std::equal(values.begin() + 1, values.end(), branches_.begin(), branches_.end())) return std::nullopt;
    return values[0][0];
  }

  // (L(w + h v) - L(w - h v)) / 2h, or nullopt across a kink.
  std::optional<double> numeric(const std::string& param, const std::vector<double>& v, double h) {
    std::vector<double> plus = feeds_.at(param).data, minus = plus;
    for (size_t i = 0; i < v.size(); ++i) {
      plus[i] += h * v[i];
      minus[i] -= h * v[i];
    }
    std::optional<double> up = loss_with(param, plus);
    if (!up) return std::nullopt;
    std::optional<double> down = loss_with(param, minus);
    if (!down) return std::nullopt;
    return (*up - *down) / (2 * h);
  }

  ParamCheck check(const std::string& param, const std::vector<double>& g) {
    ParamCheck r{param, static_cast<int64_t>(g.size())};
    r.step = o_.step > 0 ? o_.step : default_step(feeds_.at(param).data);
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
      // A conv weight moves a whole channel: past a kink at h, h/10 and h/100 are tried too.
      double h = r.step;
      std::optional<double> n = numeric(param, e, h);
      for (int shrink = 0; !n && o_.step <= 0 && shrink < kShrinks; ++shrink) n = numeric(param, e, h *= 0.1);
      if (n) record(r, g[i], *n, std::max(largest, kTiny), h);
      else ++r.kinks;
    }
    std::normal_distribution<double> normal;
    for (int k = 0, tries = 0; k < o_.directions && tries < kMaxTries; ++tries) {
      std::vector<double> v(g.size());
      double vnorm = 0, dot = 0;
      for (size_t i = 0; i < v.size(); ++i) v[i] = normal(rng_), vnorm += v[i] * v[i], dot += v[i] * g[i];
      // A direction moves every element, so on a wide relu layer some unit crosses its kink at
      // the chosen h; a smaller h keeps the probe (the directional derivative is large next to
      // the rounding noise). A step the user gave is kept as given, for every probe.
      double h = r.step;
      std::optional<double> n = numeric(param, v, h);
      for (int shrink = 0; !n && o_.step <= 0 && shrink < kShrinks; ++shrink) n = numeric(param, v, h *= 0.1);
      if (!n) {
        ++r.kinks;
        continue;
      }
      record(r, dot, *n, std::max(norm * std::sqrt(vnorm), kTiny), h);
      ++k;
    }
    return r;
  }

  static constexpr int kMaxTries = 8;
  static constexpr int kShrinks = 2;  // h/10, h/100

  // The relative error counts what lies beyond the quotient's own rounding noise, about
  // eps |L| / h (each loss is rounded to eps |L|, and the difference is divided by 2h): where the
  // true gradient is 0 (the mean of softmax rows, 1/C whatever the logits) autodiff's 1e-17 and
  // the quotient's 5e-13 of noise were 5e-5 apart relative to kTiny, a false failure.
  void record(ParamCheck& r, double autodiff, double numeric, double scale, double h) const {
    ++r.probes;
    double noise = 16 * std::numeric_limits<double>::epsilon() * std::fabs(at_point_) / h;
    double abs = std::fabs(autodiff - numeric), rel = std::max(abs - noise, 0.0) / scale;
    if (std::isnan(abs)) rel = abs;
    if (!(abs <= r.max_abs_error)) r.max_abs_error = abs;  // NaN wins, so it cannot pass
    if (!(rel <= r.max_rel_error)) r.max_rel_error = rel;
  }

  // Below this a gradient counts as zero: its error is measured against this instead.
  static constexpr double kTiny = 1e-8;

  Graph g_;
  double at_point_ = 0;          // the loss at the checked point
  Graph probe_;                  // g_ plus the branch masks
  Differentiated d_;             // g_ plus its backward graph
  std::vector<ValueId> masks_;
  std::vector<std::vector<double>> branches_;  // the masks at the checked point
  GradCheckOptions o_;
  std::mt19937_64 rng_;
  ValueId loss_ = -1;
  Feeds feeds_;                  // the checked point
  std::unique_ptr<Engine> engine_;
};

}  // namespace

std::vector<ParamCheck> check_gradients(const Graph& g, const GradCheckOptions& options) {
  return Checker(g, options).run();
}

}  // namespace gradc
