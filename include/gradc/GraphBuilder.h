// Builds a Graph from C++, the same Graph the parser builds from the equivalent spec:
//
//   gradc::GraphBuilder b("seed_mlp");
//   auto x = b.input("x", {gradc::DType::F32, {64, 784}});
//   auto w1 = b.param("w1", {gradc::DType::F32, {784, 10}}, gradc::glorot_uniform());
//   auto h = b.name("h", b.relu(b.add(b.matmul(x, w1), b1)));
//   b.minimize(loss, gradc::adam(0.001));
//   gradc::Graph g = b.build();  // infers shapes and verifies, like load_spec
//
// One method per op of the table (b.relu, b.matmul, b.softmax(x, {{"axis", 1}}), ...);
// a wrong operand count or attribute throws gradc::Error naming the op.
#pragma once

#include <string>
#include <vector>

#include "ir/Graph.h"

namespace gradc {

struct Value {
  ValueId id = -1;
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
  Value spelling(Value a, Value b, const Attrs& attrs = {}) { return call(#spelling, {a, b}, attrs); }
#include "ir/Ops.def"

  Value name(std::string name, Value v);  // names a computed value, like `h = ...`
  void output(Value v);
  void output(std::string name, Value v) { output(this->name(std::move(name), v)); }
  void minimize(Value loss, Optimizer optimizer);
  void assign(Value target, Value value);

  Graph build() const;  // shape inference and the verifier, as for a parsed spec

 private:
  Graph g_;
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

Optimizer sgd(double lr = 1e-3);
Optimizer momentum(double lr, double momentum, bool nesterov = false);
Optimizer adam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
Optimizer adamw(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0.01);

}  // namespace gradc
