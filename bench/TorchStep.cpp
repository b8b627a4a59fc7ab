#include "TorchStep.h"

#include <torch/torch.h>
#include <torch/version.h>

namespace gradc::benchmark {

namespace {

torch::Dtype torch_dtype(DType d) {
  switch (d) {
    case DType::F32: return torch::kFloat32;
    case DType::F64: return torch::kFloat64;
    case DType::I32: return torch::kInt32;
  }
  fail({}, "libtorch: no torch dtype for {}", dtype_name(d));
}

torch::Tensor to_torch(const Tensor& t) {
  std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  return torch::from_blob(const_cast<std::byte*>(t.data()), shape, torch::dtype(torch_dtype(t.dtype()))).clone();
}

std::vector<int64_t> ints(const Node& n, std::string_view attr) { return n.attrs.get(attr).as_ints(); }

// sum, mean, max over the node's axes (canonical after shape inference: sorted, non-negative).
torch::Tensor reduce(const Node& n, const torch::Tensor& x) {
  std::vector<int64_t> axes = ints(n, "axes");
  bool keepdim = n.attrs.get("keepdims").as_bool();
  if (axes.empty()) return x;  // torch would read an empty list as "every axis"
  if (n.op == OpKind::Sum) return torch::sum(x, axes, keepdim);
  if (n.op == OpKind::Mean) return torch::mean(x, axes, keepdim);
  return torch::amax(x, axes, keepdim);
}

std::vector<int64_t> pool_stride(const Node& n) {
  const Attr* s = n.attrs.find("stride");
  return s ? s->as_ints() : ints(n, "kernel");
}

// One op of the forward graph as torch computes it (PyTorch's semantics are the spec's).
torch::Tensor translate(const Node& n, const std::vector<torch::Tensor>& a) {
  namespace F = torch::nn::functional;
  switch (n.op) {
    case OpKind::Neg: return -a[0];
    case OpKind::Exp: return torch::exp(a[0]);
    case OpKind::Log: return torch::log(a[0]);
    case OpKind::Sqrt: return torch::sqrt(a[0]);
    case OpKind::Rsqrt: return torch::rsqrt(a[0]);
    case OpKind::Abs: return torch::abs(a[0]);
    case OpKind::Tanh: return torch::tanh(a[0]);
    case OpKind::Sigmoid: return torch::sigmoid(a[0]);
    case OpKind::Relu: return torch::relu(a[0]);
    case OpKind::Square: return torch::square(a[0]);
    case OpKind::Add: return a[0] + a[1];
    case OpKind::Sub: return a[0] - a[1];
    case OpKind::Mul: return a[0] * a[1];
    case OpKind::Div: return a[0] / a[1];
    case OpKind::Maximum: return torch::maximum(a[0], a[1]);
    case OpKind::Minimum: return torch::minimum(a[0], a[1]);
    case OpKind::Pow: return torch::pow(a[0], a[1]);
    case OpKind::MatMul: return torch::matmul(a[0], a[1]);
    case OpKind::Transpose: return a[0].permute(ints(n, "perm"));
    case OpKind::Reshape: return a[0].reshape(ints(n, "shape"));
    case OpKind::BroadcastTo: return a[0].expand(ints(n, "shape"));
    case OpKind::Sum:
    case OpKind::Mean:
    case OpKind::Max: return reduce(n, a[0]);
    case OpKind::Softmax: return torch::softmax(a[0], n.attrs.get("axis").as_int());
    case OpKind::LogSoftmax: return torch::log_softmax(a[0], n.attrs.get("axis").as_int());
    case OpKind::SoftmaxCrossEntropy:  // class ids, or probabilities per class; the mean over the batch
      return F::cross_entropy(a[0], a[1].scalar_type() == torch::kInt32 ? a[1].to(torch::kLong) : a[1]);
    case OpKind::Mse: return F::mse_loss(a[0], a[1]);
    case OpKind::BceWithLogits: return F::binary_cross_entropy_with_logits(a[0], a[1]);
    case OpKind::Conv2d:
      return torch::conv2d(a[0], a[1], {}, ints(n, "stride"), ints(n, "padding"));
    case OpKind::MaxPool2d: return torch::max_pool2d(a[0], ints(n, "kernel"), pool_stride(n));
    case OpKind::AvgPool2d: return torch::avg_pool2d(a[0], ints(n, "kernel"), pool_stride(n));
    case OpKind::Greater: return torch::gt(a[0], a[1]).to(torch_dtype(n.type.dtype));
    case OpKind::OneHot:
      return F::one_hot(a[0].to(torch::kLong), n.attrs.get("classes").as_int()).to(torch_dtype(n.type.dtype));
    default: break;
  }
  fail(n.loc, "libtorch: gradc_bench does not translate the op {} (node {})", op_info(n.op).name, n.name);
}

}  // namespace

struct TorchStep::Impl {
  const Graph& spec;
  std::vector<bool> needed;                       // nodes the loss and the outputs read
  std::vector<torch::Tensor> inputs, params;      // by ValueId (undefined elsewhere)
  std::vector<torch::Tensor> trained;             // the params, in spec order
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::optional<double> clip_norm;

  explicit Impl(const Graph& g) : spec(g) {}

  torch::Tensor forward() {
    std::vector<torch::Tensor> values(spec.nodes.size());
    for (ValueId id = 0; id < spec.size(); ++id) {
      if (!needed[static_cast<size_t>(id)]) continue;
      const Node& n = spec[id];
      switch (n.kind) {
        case NodeKind::Input: values[static_cast<size_t>(id)] = inputs[static_cast<size_t>(id)]; break;
        case NodeKind::Param: values[static_cast<size_t>(id)] = params[static_cast<size_t>(id)]; break;
        case NodeKind::Constant:
          values[static_cast<size_t>(id)] = torch::scalar_tensor(n.constant, torch::dtype(torch_dtype(n.type.dtype)));
          break;
        case NodeKind::State: fail(n.loc, "libtorch: gradc_bench does not translate state ({})", n.name);
        case NodeKind::Op: {
          std::vector<torch::Tensor> args;
          for (ValueId a : n.args) args.push_back(values[static_cast<size_t>(a)]);
          values[static_cast<size_t>(id)] = translate(n, args);
          break;
        }
      }
    }
    return values[static_cast<size_t>(spec.minimize->loss)];
  }
};

TorchStep::TorchStep(const Graph& spec, const std::map<std::string, Tensor>& params,
                     const std::map<std::string, Tensor>& inputs)
    : impl_(std::make_unique<Impl>(spec)) {
  Impl& m = *impl_;
  if (!spec.minimize) fail({}, "libtorch: model '{}' minimizes nothing, so it has no train step to compare", spec.name);
  if (!spec.assigns.empty())
    fail(spec.assigns.front().loc, "libtorch: gradc_bench does not translate hand-written assign lines (model '{}')", spec.name);
  size_t count = spec.nodes.size();
  m.needed.assign(count, false);
  m.needed[static_cast<size_t>(spec.minimize->loss)] = true;
  for (const Output& o : spec.outputs) m.needed[static_cast<size_t>(o.value)] = true;  // gradc's step computes them too
  for (ValueId id = spec.size(); id-- > 0;)
    if (m.needed[static_cast<size_t>(id)])
      for (ValueId a : spec[id].args) m.needed[static_cast<size_t>(a)] = true;
  m.inputs.resize(count);
  m.params.resize(count);
  for (ValueId id = 0; id < spec.size(); ++id) {
    const Node& n = spec[id];
    if (n.kind == NodeKind::Input) {
      auto it = inputs.find(n.name);
      if (it == inputs.end()) fail({}, "libtorch: no value for input {}", n.name);
      m.inputs[static_cast<size_t>(id)] = to_torch(it->second);
    } else if (n.kind == NodeKind::Param) {
      auto it = params.find(n.name);
      if (it == params.end()) fail({}, "libtorch: no value for param {}", n.name);
      m.params[static_cast<size_t>(id)] = to_torch(it->second).set_requires_grad(true);
      m.trained.push_back(m.params[static_cast<size_t>(id)]);
    }
  }

  const Optimizer& opt = spec.minimize->optimizer;
  auto number = [&](std::string_view name) { return opt.args.get(name).as_number(); };
  double lr = 0;
  if (const Attr& a = opt.args.get("lr"); a.is_ident()) {  // a scalar input drives it: its value now
    auto it = inputs.find(a.as_ident());
    if (it == inputs.end()) fail({}, "libtorch: lr={} names no input", a.as_ident());
    lr = to_torch(it->second).to(torch::kFloat64).item<double>();
  } else {
    lr = a.as_number();
  }
  if (const Attr* c = opt.args.find("clip_norm")) m.clip_norm = c->as_number();
  const Attr* decay = opt.args.find("weight_decay");  // sgd's, momentum's, adam's: absent is 0
  double wd = decay ? decay->as_number() : 0.0;
  namespace O = torch::optim;
  if (opt.kind == "sgd") {
    m.optimizer = std::make_unique<O::SGD>(m.trained, O::SGDOptions(lr).weight_decay(wd));
  } else if (opt.kind == "momentum") {
    m.optimizer = std::make_unique<O::SGD>(m.trained, O::SGDOptions(lr)
                                                          .momentum(number("momentum"))
                                                          .nesterov(opt.args.get("nesterov").as_bool())
                                                          .weight_decay(wd));
  } else if (opt.kind == "adam") {
    m.optimizer = std::make_unique<O::Adam>(
        m.trained, O::AdamOptions(lr).betas({number("beta1"), number("beta2")}).eps(number("eps")).weight_decay(wd));
  } else if (opt.kind == "adamw") {
    m.optimizer = std::make_unique<O::AdamW>(m.trained, O::AdamWOptions(lr)
                                                            .betas({number("beta1"), number("beta2")})
                                                            .eps(number("eps"))
                                                            .weight_decay(number("weight_decay")));
  } else {
    fail({}, "libtorch: gradc_bench does not translate the optimizer {}", opt.kind);
  }
}

TorchStep::~TorchStep() = default;

double TorchStep::step() {
  Impl& m = *impl_;
  // Gradients set to none rather than zeroed (PyTorch 2's default for zero_grad): no memset.
  for (torch::Tensor& p : m.trained) p.mutable_grad().reset();
  torch::Tensor loss = m.forward();
  loss.backward();
  if (m.clip_norm) torch::nn::utils::clip_grad_norm_(m.trained, *m.clip_norm);
  m.optimizer->step();
  return loss.item<double>();
}

void TorchStep::set_threads(int threads) { at::set_num_threads(threads); }

std::string TorchStep::version() {
  return fmt::format("libtorch {}.{}.{}", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
}

}  // namespace gradc::benchmark
