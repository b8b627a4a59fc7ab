// The reference interpreter's driver: feeds leaves, runs each op's kernel in order.
#include "interp/Interpreter.h"

#include "ir/Graph.h"

#include <cmath>

namespace gradc::interp {

Tensor Tensor::zeros(TensorType t) {
  auto n = static_cast<size_t>(t.numel());
  return {std::move(t), std::vector<double>(n, 0.0)};
}

Tensor Tensor::of(TensorType t, std::vector<double> values) {
  GRADC_ASSERT(static_cast<int64_t>(values.size()) == t.numel(), "{} needs {} values, got {}", t, t.numel(),
               values.size());
  for (double& v : values) v = round_to(t.dtype, v);
  return {std::move(t), std::move(values)};
}

Tensor Tensor::scalar(double v, DType dt) { return of(TensorType{dt, {}}, {v}); }

static size_t offset(const TensorType& t, const std::vector<int64_t>& index) {
  GRADC_ASSERT(static_cast<int64_t>(index.size()) == t.rank(), "index of rank {} into {}", index.size(), t);
  size_t flat = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    GRADC_ASSERT(index[i] >= 0 && index[i] < t.shape[i], "index {} out of range in {}", index[i], t);
    flat = flat * static_cast<size_t>(t.shape[i]) + static_cast<size_t>(index[i]);
  }
  return flat;
}

double Tensor::at(const std::vector<int64_t>& index) const { return data[offset(type, index)]; }
double& Tensor::at(const std::vector<int64_t>& index) { return data[offset(type, index)]; }

double round_to(DType dt, double v) {
  switch (dt) {
    case DType::F32: return static_cast<double>(static_cast<float>(v));
    case DType::F64: return v;
    case DType::I32: return std::trunc(v);
  }
  return v;
}

// A composite op (ir/Composites.cpp): its expansion, evaluated in a graph of its own, each op of
// it rounded to the dtype as the pipeline's expanded graph would be.
Tensor eval_expanded(const Node& n, const std::vector<const Tensor*>& args) {
  Graph g;
  Feeds feeds;
  std::vector<ValueId> operands;
  for (size_t i = 0; i < args.size(); ++i) {
    Node in;
    in.kind = NodeKind::Input;
    in.name = fmt::format("operand{}", i);
    in.type = args[i]->type;
    feeds.emplace(in.name, *args[i]);
    operands.push_back(g.add(std::move(in)));
  }
  ValueId r = add_op(g, n.op, operands, n.attrs, n.loc);
  return std::move(evaluate(g, feeds)[static_cast<size_t>(r)]);
}

// The kernel of every op, indexed by OpKind, from the op table.
static const Kernel kKernels[] = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, ...) eval,
#include "gradc/Ops.def"
};

static std::string_view leaf_word(NodeKind k) {
  return k == NodeKind::Input ? "input" : k == NodeKind::Param ? "param" : "state";
}

std::vector<Tensor> evaluate(const Graph& g, const Feeds& feeds) {
  std::vector<Tensor> values;
  values.reserve(g.nodes.size());
  for (const Node& n : g.nodes) {
    switch (n.kind) {
      case NodeKind::Input:
      case NodeKind::Param:
      case NodeKind::State: {
        auto it = feeds.find(n.name);
        if (it == feeds.end())
          fail(n.loc, "no value fed for {} '{}' (expects {})", leaf_word(n.kind), n.name, n.type);
        if (it->second.type != n.type)
          fail(n.loc, "{} '{}' expects {}, got {}", leaf_word(n.kind), n.name, n.type, it->second.type);
        GRADC_ASSERT(it->second.numel() == n.type.numel(), "fed tensor '{}' has {} values for {}", n.name,
                     it->second.numel(), n.type);
        // A tensor built by aggregate initialization skips Tensor::of's rounding; round here so
        // that every value the kernels see is exactly representable in its dtype.
        values.push_back(it->second);
        for (double& v : values.back().data) v = round_to(n.type.dtype, v);
        break;
      }
      case NodeKind::Constant:
        // A scalar of the node's type (a weak literal has taken its use's dtype by now).
        values.push_back(Tensor::of(n.type, {n.constant}));
        break;
      case NodeKind::Op: {
        std::vector<const Tensor*> args;
        for (ValueId a : n.args) args.push_back(&values[static_cast<size_t>(a)]);
        Tensor result = kKernels[static_cast<size_t>(n.op)](n, args);
        GRADC_ASSERT(result.type == n.type && result.numel() == n.type.numel(), "{} produced {} for a node of type {}",
                     op_info(n.op).name, result.type, n.type);
        for (double& v : result.data) v = round_to(n.type.dtype, v);
        values.push_back(std::move(result));
        break;
      }
    }
  }
  return values;
}

std::vector<Tensor> step(const Graph& g, Feeds& feeds) {
  std::vector<Tensor> values = evaluate(g, feeds);
  for (const Assign& a : g.assigns) feeds[g[a.target].name] = values[static_cast<size_t>(a.value)];
  return values;
}

}  // namespace gradc::interp
