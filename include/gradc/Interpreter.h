// The reference interpreter: evaluates a Graph plainly, one op at a time.
//
// It is the oracle for every later test (passes, fusion, codegen) and the engine of the
// gradient checker, so it favours obviousness over speed: every element is held as a double
// and each op's result is rounded to the node's dtype (f32 values are exactly what an f32
// op would produce from its f32 operands, up to the op's own rounding; i32 stays integral).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gradc/Graph.h"
#include "gradc/Types.h"

namespace gradc::interp {

struct Tensor {
  TensorType type;
  std::vector<double> data;  // row-major, type.numel() elements

  static Tensor zeros(TensorType t);
  static Tensor of(TensorType t, std::vector<double> values);  // checks the count
  static Tensor scalar(double v, DType dt = DType::F32);

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  double at(const std::vector<int64_t>& index) const;  // bounds-checked
  double& at(const std::vector<int64_t>& index);
};

// Rounds v as storing it in a tensor of dtype dt would (f32: to float; i32: toward zero).
double round_to(DType dt, double v);

// Values of named leaves: inputs, params and states by their names.
using Feeds = std::map<std::string, Tensor>;

// The value of every node of g, indexed by ValueId. Every input, param and state must be fed
// with a tensor of exactly its type (else gradc::Error naming the leaf and both types).
std::vector<Tensor> evaluate(const Graph& g, const Feeds& feeds);

// One training step: evaluates g, then gives every `assign` target (param or state) its new
// value in `feeds`, all at once, so the next call runs the next step. Returns the values.
std::vector<Tensor> step(const Graph& g, Feeds& feeds);

}  // namespace gradc::interp
