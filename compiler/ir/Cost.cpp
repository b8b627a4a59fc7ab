// The op table's GEMM-shape column and the FLOPs counted from it: what fusion's kernel costs,
// `gradc dump --stage fused` and `gradc bench` report, counted in one place.
#include "ir/OpTable.h"

namespace gradc {

std::string_view form_name(FusionForm f) {
  switch (f) {
    case FusionForm::Elementwise: return "elementwise";
    case FusionForm::Indexed: return "indexed";
    case FusionForm::Reduction: return "reduction";
    case FusionForm::Rowwise: return "rowwise";
    case FusionForm::Gemm: return "gemm";
    case FusionForm::Conv: return "conv";
    case FusionForm::View: return "view";
    case FusionForm::Alone: return "alone";
  }
  return "?";
}

std::optional<GemmShape> no_gemm(const TensorType&, const std::vector<TensorType>&) { return std::nullopt; }

// [B..., M, K] . [B..., K, N] -> [B..., M, N]: one M x N x K product per batch element.
std::optional<GemmShape> gemm_matmul(const TensorType& result, const std::vector<TensorType>& args) {
  const Shape &a = args[0].shape, &c = result.shape;
  GemmShape r;
  r.m = c[c.size() - 2];
  r.n = c[c.size() - 1];
  r.k = a[a.size() - 1];
  for (size_t i = 0; i + 2 < c.size(); ++i) r.batch *= c[i];
  return r;
}

// The im2col GEMMs, one per image, of x [N, C, H, W], w [O, C, KH, KW] and y [N, O, OH, OW]:
//   conv2d:             y[O, OH*OW]           = w[O, C*KH*KW]   . cols[C*KH*KW, OH*OW]
//   conv2d_input_grad:  dcols[C*KH*KW, OH*OW] = w^T[C*KH*KW, O] . dy[O, OH*OW]      (then col2im)
//   conv2d_weight_grad: dw[O, C*KH*KW]       += dy[O, OH*OW]    . cols^T[OH*OW, C*KH*KW]
// All three do N*O*OH*OW*C*KH*KW multiply-adds (as Caffe and PyTorch's slow path lower them).
namespace {
GemmShape conv_gemm(const Shape& x, const Shape& w, const Shape& y) {
  GemmShape r;
  r.batch = x[0];
  r.m = w[0];
  r.n = y[2] * y[3];
  r.k = w[1] * w[2] * w[3];
  return r;
}
}  // namespace

std::optional<GemmShape> gemm_conv2d(const TensorType& result, const std::vector<TensorType>& args) {
  return conv_gemm(args[0].shape, args[1].shape, result.shape);
}

std::optional<GemmShape> gemm_conv2d_input_grad(const TensorType& result, const std::vector<TensorType>& args) {
  GemmShape r = conv_gemm(result.shape, args[1].shape, args[0].shape);
  std::swap(r.m, r.k);  // w^T [C*KH*KW, O] . dy [O, OH*OW]
  r.a_transposed = true;
  return r;
}

std::optional<GemmShape> gemm_conv2d_weight_grad(const TensorType& result, const std::vector<TensorType>& args) {
  GemmShape r = conv_gemm(args[0].shape, result.shape, args[1].shape);
  std::swap(r.n, r.k);  // dy [O, OH*OW] . cols^T [OH*OW, C*KH*KW]
  r.b_transposed = true;
  return r;
}

int64_t op_flops(OpKind kind, const TensorType& result, const std::vector<TensorType>& args) {
  if (std::optional<GemmShape> g = op_info(kind).gemm(result, args))
    return saturating_mul(saturating_mul(saturating_mul(2 * g->batch, g->m), g->n), g->k);
  int64_t most = result.numel();
  for (const TensorType& a : args) most = std::max(most, a.numel());
  return most;
}

}  // namespace gradc
