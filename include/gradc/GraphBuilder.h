// Builds a Graph from C++, the same Graph the parser builds from the equivalent spec:
//
//   gradc::GraphBuilder b("seed_mlp");
//   auto x = b.input("x", {gradc::DType::F32, {64, 784}});
//   auto y = b.input("y", {gradc::DType::I32, {64}});
//   auto w1 = b.param("w1", {gradc::DType::F32, {784, 10}}, gradc::glorot_uniform());
//   auto b1 = b.param("b1", {gradc::DType::F32, {10}}, gradc::zeros());
//   auto logits = b.name("logits", b.add(b.matmul(x, w1), b1));
//   auto loss = b.name("loss", b.softmax_cross_entropy(logits, y));
//   b.output("probs", b.softmax(logits, {{"axis", 1}}));
//   b.minimize(loss, gradc::adam({.lr = 1e-3, .clip_norm = 1.0}));
//   gradc::Graph g = b.build();  // infers shapes and verifies, like load_spec
//
// One method per op of the table (b.relu, b.matmul, b.softmax(x, {{"axis", 1}}), ...);
// a wrong operand count or attribute throws gradc::Error naming the op.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradc/Attr.h"
#include "gradc/Graph.h"
#include "gradc/Types.h"

namespace gradc {

struct Value {
  ValueId id = -1;
  uint64_t builder = 0;  // which GraphBuilder made it: a value of another one is refused, not misread
};

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string model_name);

  Value input(std::string name, TensorType type);
  Value param(std::string name, TensorType type, Init init);
  Value param(std::string name, TensorType type);  // glorot_uniform for rank >= 2, else zeros
  Value state(std::string name, TensorType type, Init init = {"zeros", {}});
  Value constant(double value);  // a number literal: takes the dtype of the op that uses it

  // Any op of the table by its spelling; attributes by name, as in a spec.
  Value call(std::string_view op, std::vector<Value> operands, const Attrs& attrs = {});
#define OP(Id, spelling, ...)                                                          \
  Value spelling(Value a, const Attrs& attrs = {}) { return call(#spelling, {a}, attrs); } \
  Value spelling(Value a, Value b, const Attrs& attrs = {}) { return call(#spelling, {a, b}, attrs); } \
  Value spelling(std::vector<Value> operands, const Attrs& attrs = {}) { return call(#spelling, std::move(operands), attrs); }
#include "gradc/Ops.def"

  Value name(std::string name, Value v);  // names a computed value, like `h = ...`
  void output(Value v);
  void output(std::string name, Value v) { output(this->name(std::move(name), v)); }
  void minimize(Value loss, Optimizer optimizer);
  void assign(Value target, Value value);

  Graph build() const;  // shape inference and the verifier, as for a parsed spec

 private:
  Value made(ValueId id) const { return {id, id_}; }
  ValueId own(Value v, std::string_view what) const;  // v's id, if this builder made v

  Graph g_;
  uint64_t id_;
};

// Initializers and optimizers, with PyTorch's defaults (see Graph.cpp).
Init zeros();
Init ones();
Init constant_init(double value);
Init normal(double mean = 0.0, double std = 1.0);
Init uniform(double lo = 0.0, double hi = 1.0);
Init glorot_uniform();
Init glorot_normal();
Init he_uniform();
Init he_normal();

// Optimizers by their options, as torch.optim's constructors and Keras's take them (names as
// in a spec: `adam(lr=0.001, clip_norm=1.0)`):
//
//   b.minimize(loss, gradc::adam({.lr = 1e-3, .clip_norm = 1.0}));
//   b.input("lr", {gradc::DType::F32, {}});             // a learning rate fed with each step
//   b.minimize(loss, gradc::sgd({.lr_input = "lr"}));   // (a schedule, say)
//
// lr_input, when set, names a scalar float input that is the learning rate (lr is then unused).
// clip_norm, when set, scales all gradients together so that their global L2 norm is at most it
// (PyTorch's clip_grad_norm_ before the step, Keras's global_clipnorm). weight_decay is sgd's,
// momentum's and adam's coupled L2 term, torch.optim.SGD's and Adam's: g ← g + weight_decay w
// after clipping, before the momentum buffer or Adam's moments (0, the default, adds nothing);
// AdamW's is decoupled, as torch.optim.AdamW's.
struct SgdOptions {
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string lr_input = {};
  std::optional<double> clip_norm = {};
};
struct MomentumOptions {  // SGD with momentum (torch.optim.SGD's momentum and nesterov)
  double lr = 1e-3;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  std::string lr_input = {};
  std::optional<double> clip_norm = {};
};
struct AdamOptions {  // beta1, beta2 are torch's betas, Keras's beta_1, beta_2; eps its epsilon
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  std::string lr_input = {};
  std::optional<double> clip_norm = {};
};
struct AdamWOptions {  // Adam with decoupled weight decay (torch.optim.AdamW)
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  std::string lr_input = {};
  std::optional<double> clip_norm = {};
};

Optimizer sgd(const SgdOptions& options);
Optimizer momentum(const MomentumOptions& options);
Optimizer adam(const AdamOptions& options);
Optimizer adamw(const AdamWOptions& options);

// The same by position, PyTorch's defaults (adam(0.001, 0.9, 0.999, 1e-7)); weight_decay and
// clip_norm by the options above only, as in a spec.
Optimizer sgd(double lr = 1e-3);
Optimizer momentum(double lr, double momentum, bool nesterov = false);
Optimizer adam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
Optimizer adamw(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0.01);

}  // namespace gradc
