#include "OpCases.h"

#include <cmath>

#include <fmt/format.h>

namespace gradc::test {

namespace {

using ITensor = interp::Tensor;

TensorType f64(Shape s) { return {DType::F64, std::move(s)}; }
TensorType i32(Shape s) { return {DType::I32, std::move(s)}; }

const std::string kP = "param p : f32[3, 4]\n";
const std::string kPQ = "param p : f32[3, 4]\nparam q : f32[4]\n";
const std::string kA234 = "param a : f32[2, 3, 4]\n";
const std::string kX7 = "param x : f32[2, 3, 7, 6]\n";

// One operand at a typical size: `input x : TYPE`.
std::string in(std::string_view type) { return fmt::format("input x : {}\n", type); }
std::string in2(std::string_view a, std::string_view b) { return fmt::format("input x : {}\ninput y : {}\n", a, b); }

// The operands of the values computed by hand.
const ITensor kX = ITensor::of(f64({2, 3}), {1, -2, 3, -4, 5, 0.5});
const ITensor kPos = ITensor::of(f64({4}), {1, 4, 0.25, 2});
const ITensor kRow = ITensor::of(f64({3}), {10, 20, 30});
const ITensor kCol = ITensor::of(f64({2, 1}), {0, 2});
const ITensor kBase = ITensor::of(f64({2, 1}), {2, 3});
const ITensor kExps = ITensor::of(f64({1, 3}), {0, 1, 2});
const ITensor kT3 = ITensor::of(f64({2, 2, 2}), {0, 1, 2, 3, 4, 5, 6, 7});
const ITensor kBig = ITensor::of(f64({2, 3}), {1000, 1001, 1002, 0, 0, 0});
const ITensor kLogits = ITensor::of(f64({2, 3}), {1, 2, 3, 1, 1, 1});
const ITensor kImage = ITensor::of(f64({1, 1, 3, 3}), {1, 2, 3, 4, 5, 6, 7, 8, 9});
const ITensor kKernel = ITensor::of(f64({1, 1, 2, 2}), {1, 0, 0, -1});
const ITensor kWindow = ITensor::of(f64({1, 1, 2, 2}), {1, 5, -3, 2});
const ITensor kOne = ITensor::of(f64({1, 1, 1, 1}), {3});

// softmax of {1000, 1001, 1002}: e^-2 / z, e^-1 / z, 1 / z.
const double kE1 = std::exp(-1.0), kE2 = std::exp(-2.0), kZ = 1 + kE1 + kE2;
const double kLse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));

std::vector<OpRecord> make_records() {
  std::vector<OpRecord> r;
  // Elementwise, one operand (the operand kept positive where the op needs it).
  r.push_back({.op = "neg",
               .cases = {{kP, "neg(p)", "f32[3, 4]"}},
               .typical = {in("f32[2, 3]"), "neg(x)", "f32[2, 3]"},
               .values = {{"neg(x)", {{"x", kX}}, {-1, 2, -3, 4, -5, -0.5}}}});
  r.push_back({.op = "exp",
               .cases = {{kP, "exp(p)", "f32[3, 4]"}},
               .typical = {in("f32[2, 3]"), "exp(x)", "f32[2, 3]"},
               .values = {{"exp(x)",
                           {{"x", kX}},
                           {2.718281828459045, 0.1353352832366127, 20.085536923187668, 0.018315638888734,
                            148.4131591025766, 1.6487212707001282}}}});
  r.push_back(
      {.op = "log",
       .cases = {{kP, "log(add(square(p), 0.5))", "f32[3, 4]"}},
       .typical = {in("f64[4]"), "log(x)", "f64[4]"},
       .values = {{"log(p)", {{"p", kPos}}, {0, 1.3862943611198906, -1.3862943611198906, 0.6931471805599453}}}});
  r.push_back({.op = "log1p",
               .cases = {{kP, "log1p(square(p))", "f32[3, 4]"}, {kP, "log1p(mul(sigmoid(p), -0.9))", "f32[3, 4]"}},
               .typical = {in("f32[3, 2]"), "log1p(x)", "f32[3, 2]"},
               .values = {{"log1p(p)",
                           {{"p", kPos}},
                           {0.6931471805599453, 1.6094379124341003, 0.22314355131420976, 1.0986122886681098}},
                          // Where log(1 + x) rounds 1 + x away: log1p keeps x's digits.
                          {"log1p(p)",
                           {{"p", ITensor::of(f64({4}), {1e-10, -1e-12, 0, 3e-17})}},
                           {9.9999999995e-11, -1.0000000000005e-12, 0, 3e-17},
                           1e-20}}});
  r.push_back({.op = "erf",
               .cases = {{kP, "erf(p)", "f32[3, 4]"}, {kP, "erf(mul(p, 3))", "f32[3, 4]"}},
               .typical = {in("f32[64, 512]"), "erf(x)", "f32[64, 512]"},
               .values = {{"erf(x)",
                           {{"x", kX}},
                           {0.8427007929497149, -0.9953222650189527, 0.9999779095030014, -0.9999999845827421,
                            0.9999999999984626, 0.5204998778130465}},
                          // Near 0 erf is 2x/√π, and far out it is ±1.
                          {"erf(p)",
                           {{"p", ITensor::of(f64({3}), {1e-10, -30, 0.1})}},
                           {1.1283791670955126e-10, -1, 0.1124629160182849},
                           1e-16}}});
  r.push_back({.op = "leaky_relu",
               .cases = {{kP, "leaky_relu(p)", "f32[3, 4]"}, {kP, "leaky_relu(p, negative_slope=0.2)", "f32[3, 4]"}},
               .typical = {in("f32[64, 128]"), "leaky_relu(x, negative_slope=0.1)", "f32[64, 128]"},
               .values = {{"leaky_relu(x)", {{"x", kX}}, {1, -0.02, 3, -0.04, 5, 0.5}},
                          {"leaky_relu(x, negative_slope=0.1)", {{"x", kX}}, {1, -0.2, 3, -0.4, 5, 0.5}},
                          // PyTorch's slope may be above 1 or negative.
                          {"leaky_relu(x, negative_slope=-2)", {{"x", kX}}, {1, 4, 3, 8, 5, 0.5}}}});
  r.push_back({.op = "sqrt",
               .cases = {{kP, "sqrt(add(square(p), 0.5))", "f32[3, 4]"}},
               .typical = {in("f32[]"), "sqrt(x)", "f32[]"},
               .values = {{"sqrt(p)", {{"p", kPos}}, {1, 2, 0.5, 1.4142135623730951}}}});
  r.push_back({.op = "rsqrt",
               .cases = {{kP, "rsqrt(add(square(p), 0.5))", "f32[3, 4]"}},
               .typical = {in("f32[5, 1]"), "rsqrt(x)", "f32[5, 1]"},
               .values = {{"rsqrt(p)", {{"p", kPos}}, {1, 0.5, 2, 0.7071067811865476}}}});
  r.push_back({.op = "abs",
               .cases = {{kP, "abs(p)", "f32[3, 4]"}},
               .typical = {in("f32[2, 3]"), "abs(x)", "f32[2, 3]"},
               .values = {{"abs(x)", {{"x", kX}}, {1, 2, 3, 4, 5, 0.5}}}});
  r.push_back({.op = "tanh",
               .cases = {{kP, "tanh(p)", "f32[3, 4]"}},
               .typical = {in("f32[2, 3]"), "tanh(x)", "f32[2, 3]"},
               .values = {{"tanh(x)",
                           {{"x", kX}},
                           {0.7615941559557649, -0.9640275800758169, 0.9950547536867305, -0.999329299739067,
                            0.9999092042625951, 0.46211715726000974}}}});
  r.push_back({.op = "sigmoid",
               .cases = {{kP, "sigmoid(p)", "f32[3, 4]"}},
               .typical = {in("f32[64, 1]"), "sigmoid(x)", "f32[64, 1]"},
               .values = {{"sigmoid(x)",
                           {{"x", kX}},
                           {0.7310585786300049, 0.11920292202211755, 0.9525741268224334, 0.01798620996209156,
                            0.9933071490757153, 0.6224593312018546}}}});
  r.push_back({.op = "relu",
               .cases = {{kP, "relu(p)", "f32[3, 4]"}},
               .typical = {in("f32[64, 128]"), "relu(x)", "f32[64, 128]"},
               .values = {{"relu(x)", {{"x", kX}}, {1, 0, 3, 0, 5, 0.5}}}});
  r.push_back({.op = "square",
               .cases = {{kP, "square(p)", "f32[3, 4]"}},
               .typical = {in("f64[3]"), "square(x)", "f64[3]"},
               .values = {{"square(x)", {{"x", kX}}, {1, 4, 9, 16, 25, 0.25}}}});

  // Elementwise, two operands: broadcast gradients are reduced back to each operand's shape.
  r.push_back({.op = "add",
               .cases = {{kPQ, "add(p, q)", "f32[3, 4]"}, {kPQ, "add(p, 2)", "f32[3, 4]"}},
               .typical = {in2("f32[64, 10]", "f32[10]"), "add(x, y)", "f32[64, 10]"},
               .values = {{"add(x, r3)", {{"x", kX}, {"r3", kRow}}, {11, 18, 33, 6, 25, 30.5}},
                          // A literal scalar broadcasts and takes the operand's dtype.
                          {"add(2, x)", {{"x", kX}}, {3, 0, 5, -2, 7, 2.5}}}});
  r.push_back({.op = "sub",
               .cases = {{kPQ, "sub(p, q)", "f32[3, 4]"}},
               .typical = {in2("f32[2, 1]", "f32[1, 3]"), "sub(x, y)", "f32[2, 3]"},
               .values = {{"sub(x, r3)", {{"x", kX}, {"r3", kRow}}, {-9, -22, -27, -14, -15, -29.5}}}});
  r.push_back({.op = "mul",
               .cases = {{kPQ, "mul(p, q)", "f32[3, 4]"},
                         {kPQ, "mul(3, p)", "f32[3, 4]"},
                         {"param a : f32[3, 1]\nparam b : f32[2, 1, 4]\n", "mul(a, b)", "f32[2, 3, 4]"}},
               .typical = {in2("f32[]", "f32[2, 3]"), "mul(x, y)", "f32[2, 3]"},
               .values = {{"mul(x, r3)", {{"x", kX}, {"r3", kRow}}, {10, -40, 90, -40, 100, 15}},
                          {"mul(b, e)", {{"b", kBase}, {"e", kExps}}, {0, 2, 4, 0, 3, 6}},
                          {"mul(x, 0.5)", {{"x", kX}}, {0.5, -1, 1.5, -2, 2.5, 0.25}}}});
  r.push_back({.op = "div",
               .cases = {{kPQ, "div(p, add(square(q), 0.5))", "f32[3, 4]"}},
               .typical = {in2("f64[4, 3]", "f64[4, 1]"), "div(x, y)", "f64[4, 3]"},
               .values = {{"div(x, r3)", {{"x", kX}, {"r3", kRow}}, {0.1, -0.1, 0.1, -0.4, 0.25, 0.5 / 30}}}});
  r.push_back({.op = "maximum",
               .cases = {{kPQ, "maximum(p, q)", "f32[3, 4]"}},
               .typical = {in2("f32[3]", "f32[3]"), "maximum(x, y)", "f32[3]"},
               .values = {{"maximum(x, c)", {{"x", kX}, {"c", kCol}}, {1, 0, 3, 2, 5, 2}}}});
  r.push_back({.op = "minimum",
               .cases = {{kPQ, "minimum(q, p)", "f32[3, 4]"}},
               .typical = {in2("f32[5, 1, 3]", "f32[4, 1]"), "minimum(x, y)", "f32[5, 4, 3]"},
               .values = {{"minimum(x, c)", {{"x", kX}, {"c", kCol}}, {0, -2, 0, -4, 2, 0.5}}}});
  r.push_back({.op = "pow",
               .cases = {{kPQ, "pow(add(square(p), 0.5), q)", "f32[3, 4]"}},
               .typical = {in2("f32[2, 3]", "f32[]"), "pow(x, y)", "f32[2, 3]"},
               .values = {{"pow(b, e)", {{"b", kBase}, {"e", kExps}}, {1, 2, 4, 1, 3, 9}}}});

  // Linear algebra and layout.
  r.push_back({.op = "matmul",
               .cases = {{"param a : f32[3, 4]\nparam b : f32[4, 5]\n", "matmul(a, b)", "f32[3, 5]"},
                         {"param a : f32[2, 3, 4]\nparam b : f32[2, 4, 5]\n", "matmul(a, b)", "f32[2, 3, 5]"}},
               .typical = {in2("f32[64, 784]", "f32[784, 10]"), "matmul(x, y)", "f32[64, 10]"},
               .values = {{"matmul(a, b)",
                           {{"a", ITensor::of(f64({2, 3}), {1, 2, 3, 4, 5, 6})},
                            {"b", ITensor::of(f64({3, 2}), {7, 8, 9, 10, 11, 12})}},
                           {58, 64, 139, 154}},
                          {"matmul(a, b)",
                           {{"a", ITensor::of(f64({2, 1, 2}), {1, 2, 3, 4})},
                            {"b", ITensor::of(f64({2, 2, 2}), {1, 0, 0, 1, 2, 1, 1, 2})}},
                           {1, 2, 10, 11}}}});
  r.push_back({.op = "transpose",
               .cases = {{kA234, "transpose(a, perm=[2, 0, 1])", "f32[4, 2, 3]"}},
               .typical = {in("f32[2, 3]"), "transpose(x)", "f32[3, 2]"},
               .values = {{"transpose(x)", {{"x", kX}}, {1, -4, -2, 5, 3, 0.5}},
                          {"transpose(t, perm=[0, 2, 1])", {{"t", kT3}}, {0, 2, 1, 3, 4, 6, 5, 7}},
                          {"transpose(t, perm=[2, 0, 1])", {{"t", kT3}}, {0, 2, 4, 6, 1, 3, 5, 7}}}});
  r.push_back({.op = "reshape",
               .cases = {{kA234, "reshape(a, shape=[4, 6])", "f32[4, 6]"}},
               .typical = {in("f32[64, 32, 7, 7]"), "reshape(x, shape=[64, -1])", "f32[64, 1568]"},
               .values = {{"reshape(x, shape=[3, -1])", {{"x", kX}}, {1, -2, 3, -4, 5, 0.5}, 1e-6, "f64[3, 2]"}}});
  r.push_back(
      {.op = "broadcast_to",
       .cases = {{"param a : f32[3, 1]\n", "broadcast_to(a, shape=[2, 3, 4])", "f32[2, 3, 4]"}},
       .typical = {in("f32[1, 3]"), "broadcast_to(x, shape=[2, 3])", "f32[2, 3]"},
       .values = {{"broadcast_to(c, shape=[2, 3])", {{"c", ITensor::of(f64({2, 1}), {7, 8})}}, {7, 7, 7, 8, 8, 8}}}});

  // Reductions over axes, with and without keepdims, and over every axis.
  auto reductions = [&](std::string_view op) {
    return std::vector<OpCase>{{kA234, fmt::format("{}(a, axes=[0, 2])", op), "f32[3]"},
                               {kA234, fmt::format("{}(a, axes=[1], keepdims=true)", op), "f32[2, 1, 4]"},
                               {"param a : f32[2, 3]\n", fmt::format("{}(a)", op), "f32[]"}};
  };
  r.push_back({.op = "sum",
               .cases = reductions("sum"),
               .typical = {in("f32[2, 3]"), "sum(x, axes=[1])", "f32[2]"},
               .values = {{"sum(x)", {{"x", kX}}, {3.5}},
                          {"sum(x, axes=[0])", {{"x", kX}}, {-3, 3, 3.5}},
                          {"sum(t, axes=[0, 2])", {{"t", kT3}}, {0 + 1 + 4 + 5, 2 + 3 + 6 + 7}}}});
  r.push_back({.op = "mean",
               .cases = reductions("mean"),
               .typical = {in("f32[2, 3]"), "mean(x)", "f32[]"},
               .values = {{"mean(x, axes=[1])", {{"x", kX}}, {2.0 / 3, 1.5 / 3}},
                          {"mean(x, axes=[1], keepdims=true)", {{"x", kX}}, {2.0 / 3, 0.5}, 1e-6, "f64[2, 1]"}}});
  r.push_back({.op = "max",
               .cases = reductions("max"),
               .typical = {in("f32[2, 3]"), "max(x, axes=[0], keepdims=true)", "f32[1, 3]"},
               .values = {{"max(x, axes=[-1])", {{"x", kX}}, {3, 5}}, {"max(x)", {{"x", kX}}, {5}}}});

  // Normalizations along one axis: stable where exp would overflow.
  r.push_back(
      {.op = "softmax",
       .cases = {{kP, "softmax(p, axis=0)", "f32[3, 4]"}, {kP, "softmax(p, axis=1)", "f32[3, 4]"}},
       .typical = {in("f32[64, 10]"), "softmax(x)", "f32[64, 10]"},
       .values = {{"softmax(x, axis=1)", {{"x", kBig}}, {kE2 / kZ, kE1 / kZ, 1 / kZ, 1.0 / 3, 1.0 / 3, 1.0 / 3}}}});
  r.push_back({.op = "log_softmax",
               .cases = {{kP, "log_softmax(p, axis=0)", "f32[3, 4]"}, {kP, "log_softmax(p)", "f32[3, 4]"}},
               .typical = {in("f64[64, 10]"), "log_softmax(x, axis=0)", "f64[64, 10]"},
               .values = {{"log_softmax(x)",
                           {{"x", kBig}},
                           {-2 - std::log(kZ), -1 - std::log(kZ), -std::log(kZ), -std::log(3.0), -std::log(3.0),
                            -std::log(3.0)}}}});

  // Losses, in both operands where they are float, each under an optimizer of its own.
  r.push_back(
      {.op = "softmax_cross_entropy",
       .cases = {{"param z : f32[5, 4]\ninput y : i32[5]\n", "softmax_cross_entropy(z, y)", "f32[]", "sgd(lr=1)"},
                 {"param z : f32[5, 4]\nparam q : f32[5, 4]\n", "softmax_cross_entropy(z, softmax(q, axis=1))", "f32[]",
                  "sgd(lr=1)"}},
       .typical = {in2("f32[64, 10]", "i32[64]"), "softmax_cross_entropy(x, y)", "f32[]"},
       .values = {{"softmax_cross_entropy(l, y)",
                   {{"l", kLogits}, {"y", ITensor::of(i32({2}), {2, 0})}},
                   {((kLse0 - 3) + std::log(3.0)) / 2}},
                  // Row 2: -(0.5 + 0.5) log(1/3).
                  {"softmax_cross_entropy(l, p)",
                   {{"l", kLogits}, {"p", ITensor::of(f64({2, 3}), {0, 0, 1, 0.5, 0.5, 0})}},
                   {((kLse0 - 3) + std::log(3.0)) / 2}}}});
  r.push_back(
      {.op = "mse",
       .cases = {{"param a : f32[3, 4]\nparam b : f32[3, 4]\n", "mse(a, b)", "f32[]", "adam(lr=0.1)"}},
       .typical = {in2("f32[32, 1]", "f32[32, 1]"), "mse(x, y)", "f32[]"},
       .values = {{"mse(a, b)",
                   {{"a", ITensor::of(f64({2, 2}), {1, 2, 3, 4})}, {"b", ITensor::of(f64({2, 2}), {1, 0, 0, 4})}},
                   {(0 + 4 + 9 + 0) / 4.0}}}});
  r.push_back(
      {.op = "bce_with_logits",
       .cases = {{"param a : f32[3, 4]\nparam b : f32[3, 4]\n", "bce_with_logits(a, b)", "f32[]",
                  "momentum(lr=0.1, momentum=0.9)"}},
       .typical = {in2("f64[32]", "f64[32]"), "bce_with_logits(x, y)", "f64[]"},
       // -t log s(x) - (1 - t) log(1 - s(x)) per element: log 2, 2 + log(1 + e^-2), 30 + log(1 + e^-30).
       .values = {{"bce_with_logits(x, t)",
                   {{"x", ITensor::of(f64({3}), {0, 2, -30})}, {"t", ITensor::of(f64({3}), {1, 0, 1})}},
                   {(std::log(2.0) + 2 + std::log1p(std::exp(-2.0)) + 30 + std::log1p(std::exp(-30.0))) / 3}}}});

  // Images, NCHW.
  r.push_back(
      {.op = "conv2d",
       .cases = {{kX7 + "param w : f32[4, 3, 3, 2]\n", "conv2d(x, w, stride=2, padding=1)", "f32[2, 4, 4, 4]"},
                 {"param x : f32[1, 2, 5, 5]\nparam w : f32[3, 2, 3, 3]\n", "conv2d(x, w)", "f32[1, 3, 3, 3]"}},
       .typical = {in2("f32[64, 1, 28, 28]", "f32[16, 1, 3, 3]"), "conv2d(x, y, padding=1)", "f32[64, 16, 28, 28]"},
       // Each output a 2x2 window's x[i, j] - x[i+1, j+1]; with padding 1 and stride 2, on the
       // zero-padded 5x5 input, the first three outputs see a padding zero.
       .values = {{"conv2d(x, w)", {{"x", kImage}, {"w", kKernel}}, {1 - 5, 2 - 6, 4 - 8, 5 - 9}},
                  {"conv2d(x, w, stride=2, padding=1)", {{"x", kImage}, {"w", kKernel}}, {-1, -3, -7, 5 - 9}}}});
  r.push_back({.op = "maxpool2d",
               .cases = {{kX7, "maxpool2d(x, kernel=[3, 2], stride=2)", "f32[2, 3, 3, 3]"}},
               .typical = {in("f32[64, 16, 28, 28]"), "maxpool2d(x, kernel=2)", "f32[64, 16, 14, 14]"},
               .values = {{"maxpool2d(x, kernel=2)", {{"x", kWindow}}, {5}}}});
  r.push_back({.op = "avgpool2d",
               .cases = {{kX7, "avgpool2d(x, kernel=2)", "f32[2, 3, 3, 3]"}},
               .typical = {in("f32[1, 2, 7, 5]"), "avgpool2d(x, kernel=3, stride=2)", "f32[1, 2, 3, 2]"},
               .values = {{"avgpool2d(x, kernel=2)", {{"x", kWindow}}, {1.25}}}});

  // The building blocks of gradients: greater and one_hot pass no gradient to their operands.
  r.push_back({.op = "greater",
               .cases = {{kP, "mul(greater(p, 0), p)", "f32[3, 4]"}},  // d/dp = [p > 0]
               .typical = {in2("f32[2, 3]", "f32[3]"), "greater(x, y)", "f32[2, 3]"},
               .values = {{"greater(x, c)", {{"x", kX}, {"c", kCol}}, {1, 0, 1, 0, 1, 0}}}});
  r.push_back({.op = "one_hot",
               .cases = {{kP + "input y : i32[3]\n", "mul(one_hot(y, classes=4, dtype=f32), p)", "f32[3, 4]"}},
               .typical = {"input y : i32[64]\n", "one_hot(y, classes=10)", "f32[64, 10]"},
               .values = {{"one_hot(y, classes=3)",
                           {{"y", ITensor::of(i32({3}), {2, 0, 1})}},
                           {0, 0, 1, 1, 0, 0, 0, 1, 0},
                           1e-6,
                           "f32[3, 3]"}}});

  // The adjoints of conv2d and pooling, ops of their own with no gradient. By hand on the 3x3
  // image and the kernel {1, 0, 0, -1} above, dy = {1, 2, 3, 4}: dx[i, j] = dy[i, j] - dy[i-1, j-1]
  // and dw[a, b] = sum over i, j of x[i+a, j+b] dy[i, j].
  const ITensor dy = ITensor::of(f64({1, 1, 2, 2}), {1, 2, 3, 4});
  OpRecord input_grad{
      .op = "conv2d_input_grad",
      .cases = {{"param w : f32[4, 3, 3, 2]\nparam dy : f32[2, 4, 4, 4]\n",
                 "conv2d_input_grad(dy, w, stride=2, padding=1, shape=[2, 3, 7, 6])", "f32[2, 3, 7, 6]"}},
      .typical = {in2("f32[64, 16, 28, 28]", "f32[16, 1, 3, 3]"),
                  "conv2d_input_grad(x, y, padding=1, shape=[64, 1, 28, 28])", "f32[64, 1, 28, 28]"},
      .values = {{"conv2d_input_grad(dy, w, shape=[1, 1, 3, 3])",
                  {{"dy", dy}, {"w", kKernel}},
                  {1, 2, 0, 3, 3, -2, 0, -3, -4}}},
      .gradient = false};
  OpRecord weight_grad{
      .op = "conv2d_weight_grad",
      .cases = {{kX7 + "param dy : f32[2, 4, 4, 4]\n", "conv2d_weight_grad(x, dy, stride=2, padding=1, kernel=[3, 2])",
                 "f32[4, 3, 3, 2]"}},
      .typical = {in2("f32[64, 1, 28, 28]", "f32[64, 16, 28, 28]"), "conv2d_weight_grad(x, y, padding=1, kernel=3)",
                  "f32[16, 1, 3, 3]"},
      .values = {{"conv2d_weight_grad(x, dy, kernel=2)", {{"x", kImage}, {"dy", dy}}, {37, 47, 67, 77}}},
      .gradient = false};
  // The gradient goes to the first maximum of the window only.
  OpRecord maxpool_grad{.op = "maxpool2d_grad",
                        .cases = {{kX7 + "param dp : f32[2, 3, 3, 5]\n",
                                   "maxpool2d_grad(x, dp, kernel=2, stride=[2, 1])", "f32[2, 3, 7, 6]"}},
                        .typical = {in2("f32[64, 16, 28, 28]", "f32[64, 16, 14, 14]"), "maxpool2d_grad(x, y, kernel=2)",
                                    "f32[64, 16, 28, 28]"},
                        .values = {{"maxpool2d_grad(x, dy, kernel=2)",
                                    {{"x", ITensor::of(f64({1, 1, 2, 2}), {1, 7, 7, 2})}, {"dy", kOne}},
                                    {0, 3, 0, 0}}},
                        .gradient = false};
  OpRecord avgpool_grad{
      .op = "avgpool2d_grad",
      .cases = {{"param dy : f32[2, 4, 4, 4]\n", "avgpool2d_grad(dy, kernel=2, stride=[2, 1], shape=[2, 4, 9, 5])",
                 "f32[2, 4, 9, 5]"}},
      .typical = {in("f32[1, 2, 3, 2]"), "avgpool2d_grad(x, kernel=3, stride=2, shape=[1, 2, 7, 5])",
                  "f32[1, 2, 7, 5]"},
      .values = {{"avgpool2d_grad(dy, kernel=2, shape=[1, 1, 2, 2])", {{"dy", kOne}}, {0.75, 0.75, 0.75, 0.75}}},
      .gradient = false};
  for (OpRecord* adjoint : {&input_grad, &weight_grad, &maxpool_grad, &avgpool_grad}) r.push_back(std::move(*adjoint));

  // where: the cond broadcasts over rows, b over columns; cond from a param (greater has no gradient).
  r.push_back({.op = "where",
               .cases = {{kPQ, "where(greater(q, 0), p, mul(p, 2))", "f32[3, 4]"},
                         {kPQ, "where(greater(p, 0.2), q, square(p))", "f32[3, 4]"}},
               .typical = {in2("f32[64, 1]", "f32[64, 10]"), "where(x, y, 0)", "f32[64, 10]"},
               .values = {{"where(c, x, y)",
                           {{"c", kCol}, {"x", kX}, {"y", kRow}},
                           {10, 20, 30, -4, 5, 0.5}},
                          // A NaN condition is nonzero, as in numpy.
                          {"where(c, x, y)",
                           {{"c", ITensor::of(f64({2}), {std::nan(""), 0})},
                            {"x", ITensor::of(f64({2}), {1, 2})},
                            {"y", ITensor::of(f64({2}), {3, 4})}},
                           {1, 4}}}});
  // gather: random ids repeat, so the scatter-add of its gradient adds rows.
  r.push_back({.op = "gather",
               .cases = {{"param t : f32[5, 3]\ninput ids : i32[7]\n", "gather(t, ids)", "f32[7, 3]"},
                         {kA234 + "input ids : i32[2, 2]\n", "gather(a, ids, axis=1)", "f32[2, 2, 2, 4]"},
                         {kA234 + "input ids : i32[3]\n", "gather(a, ids, axis=-1)", "f32[2, 3, 3]"}},
               .typical = {"input x : f32[256, 64]\ninput y : i32[32, 64]\n", "gather(x, y)", "f32[32, 64, 64]"},
               .values = {{"gather(x, ids)",
                           {{"x", kX}, {"ids", ITensor::of(i32({3}), {1, 0, 1})}},
                           {-4, 5, 0.5, 1, -2, 3, -4, 5, 0.5}},
                          {"gather(x, ids, axis=1)",
                           {{"x", kX}, {"ids", ITensor::of(i32({2}), {2, 0})}},
                           {3, 1, 0.5, -4},
                           1e-6,
                           "f64[2, 2]"}}});
  r.push_back({.op = "gather_grad",
               .cases = {{"param dy : f32[7, 3]\ninput ids : i32[7]\n", "gather_grad(dy, ids, shape=[4, 3])", "f32[4, 3]"},
                         {"param dy : f32[2, 5, 4]\ninput ids : i32[5]\n", "gather_grad(dy, ids, axis=1, shape=[2, 3, 4])",
                          "f32[2, 3, 4]"}},
               .typical = {"input x : f32[32, 64, 64]\ninput y : i32[32, 64]\n", "gather_grad(x, y, shape=[256, 64])",
                           "f32[256, 64]"},
               .values = {{"gather_grad(dy, ids, shape=[3, 2])",
                           {{"dy", ITensor::of(f64({4, 2}), {1, 2, 3, 4, 5, 6, 7, 8})},
                            {"ids", ITensor::of(i32({4}), {2, 0, 2, 1})}},
                           {3, 4, 7, 8, 6, 8}}},
               .gradient = false});
  r.push_back({.op = "slice",
               .cases = {{kP, "slice(p, begin=[1], end=[3])", "f32[2, 4]"},
                         {kA234, "slice(a, begin=[0, -2, 1], end=[2, 100, 4], stride=[1, 1, 2])", "f32[2, 2, 2]"},
                         {kP, "add(slice(p, begin=[0, 0], end=[3, 2]), slice(p, begin=[0, 2], end=[3, 4]))", "f32[3, 2]"}},
               .typical = {in("f32[32, 128, 64]"), "slice(x, begin=[0, 5], end=[32, 6])", "f32[32, 1, 64]"},
               .values = {{"slice(x, begin=[0, 1], end=[2, 3])", {{"x", kX}}, {-2, 3, 5, 0.5}},
                          {"slice(x, begin=[-1, 0], end=[2, 3], stride=[1, 2])", {{"x", kX}}, {-4, 0.5}, 1e-6, "f64[1, 2]"}}});
  r.push_back({.op = "slice_grad",
               .cases = {{"param dy : f32[2, 4]\n", "slice_grad(dy, begin=[1], end=[3], shape=[3, 4])", "f32[3, 4]"},
                         {"param dy : f32[2, 2, 2]\n", "slice_grad(dy, begin=[0, 1, 1], end=[2, 3, 4], stride=[1, 1, 2], shape=[2, 3, 4])",
                          "f32[2, 3, 4]"}},
               .typical = {in("f32[32, 1, 64]"), "slice_grad(x, begin=[0, 5], end=[32, 6], shape=[32, 128, 64])",
                           "f32[32, 128, 64]"},
               .values = {{"slice_grad(dy, begin=[0, 1], end=[1, 3], shape=[2, 3])",
                           {{"dy", ITensor::of(f64({1, 2}), {7, 8})}},
                           {0, 7, 8, 0, 0, 0}}},
               .gradient = false});
  r.push_back({.op = "concat",
               .cases = {{kP, "concat(p, p, axis=1)", "f32[3, 8]"},
                         {kPQ, "concat(p, square(p), reshape(q, shape=[1, 4]))", "f32[7, 4]"},
                         {kA234, "concat(a, axis=-1)", "f32[2, 3, 4]"}},
               .typical = {in2("f32[64, 128]", "f32[64, 32]"), "concat(x, y, axis=-1)", "f32[64, 160]"},
               .values = {{"concat(x, y, axis=1)", {{"x", kX}, {"y", kCol}}, {1, -2, 3, 0, -4, 5, 0.5, 2}},
                          {"concat(y, x, y)", {{"x", ITensor::of(f64({1, 2}), {1, 2})}, {"y", ITensor::of(f64({1, 2}), {3, 4})}},
                           {3, 4, 1, 2, 3, 4}, 1e-6, "f64[3, 2]"}}});
  r.push_back({.op = "cast",
               .cases = {{kP, "cast(p, dtype=f64)", "f64[3, 4]"},
                         {kP, "mul(cast(cast(p, dtype=f64), dtype=f32), p)", "f32[3, 4]"}},
               .typical = {"input x : i32[64, 128]\n", "cast(x, dtype=f32)", "f32[64, 128]"},
               .values = {{"cast(x, dtype=i32)",
                           {{"x", ITensor::of(f64({7}), {1.7, -2.7, 3, -0.5, 1e10, -1e10, std::nan("")})}},
                           {1, -2, 3, 0, 2147483647, -2147483648.0, 0},
                           0,
                           "i32[7]"},
                          {"cast(x, dtype=f32)", {{"x", ITensor::of(f64({2}), {0.1, 1e-50})}}, {0.100000001490116119384765625, 0}, 0},
                          {"cast(n, dtype=f64)", {{"n", ITensor::of(i32({3}), {-5, 0, 2147483647})}}, {-5, 0, 2147483647}, 0}}});
  r.push_back({.op = "tril",
               .cases = {{kP, "tril(p)", "f32[3, 4]"}, {kA234, "tril(a, diagonal=-1)", "f32[2, 3, 4]"},
                         {kP, "tril(p, diagonal=2)", "f32[3, 4]"},
                         // The causal mask of attention, as a spec writes it.
                         {kP, "softmax(where(tril(broadcast_to(1, shape=[3, 4])), p, -1e9), axis=1)", "f32[3, 4]"}},
               .typical = {in("f32[32, 128, 128]"), "tril(x)", "f32[32, 128, 128]"},
               .values = {{"tril(x)", {{"x", kX}}, {1, 0, 0, -4, 5, 0}},
                          {"tril(x, diagonal=1)", {{"x", kX}}, {1, -2, 0, -4, 5, 0.5}},
                          {"tril(x, diagonal=-1)", {{"x", kT3}}, {0, 0, 2, 0, 0, 0, 6, 0}},
                          {"tril(x, diagonal=-5)", {{"x", kX}}, {0, 0, 0, 0, 0, 0}}}});
  // dropout: its values are predict's (x); its cases train through the lowered mask.
  r.push_back({.op = "dropout",
               .cases = {{kP, "dropout(p, rate=0.3)", "f32[3, 4]"}, {kA234, "tanh(dropout(mul(a, 2), rate=0.5))", "f32[2, 3, 4]"}},
               .typical = {in("f32[64, 128]"), "dropout(x, rate=0.1)", "f32[64, 128]"},
               .values = {{"dropout(x, rate=0.5)", {{"x", kX}}, {1, -2, 3, -4, 5, 0.5}}}});
  // dropout_mask: Philox-4x32-10 of counter {i, 0, step, 0} and key {seed, stream}: elements whose
  // draw (the top 24 bits of its first word over 2^24: .7286 .9909 .8172 .9671 .8040 .0173 .6223
  // .8958 here) is at least the rate keep 1 / (1 - rate).
  r.push_back({.op = "dropout_mask",
               .cases = {{kP + "input s : f32[]\ninput t : f32[]\n", "mul(p, dropout_mask(s, t, rate=0.25, stream=3, shape=[3, 4]))", "f32[3, 4]"}},
               .typical = {in2("f32[]", "f32[]"), "dropout_mask(x, y, rate=0.1, stream=0, shape=[64, 128])", "f32[64, 128]"},
               .values = {{"dropout_mask(s, t, rate=0.8, stream=1, shape=[2, 4])",
                           {{"s", ITensor::of(f64({}), {5})}, {"t", ITensor::of(f64({}), {2})}},
                           {0, 5, 5, 5, 5, 0, 0, 5}}}});
  // Composite ops (ir/Composites.cpp): their expansion is all they are.
  r.push_back({.op = "softplus",
               .cases = {{kP, "softplus(p)", "f32[3, 4]"}, {kP, "softplus(mul(p, 40))", "f32[3, 4]"}},
               .typical = {in("f32[64, 10]"), "softplus(x)", "f32[64, 10]"},
               .values = {{"softplus(x)",
                           {{"x", kX}},
                           {1.3132616875182228, 0.1269280110429725, 3.048587351573742, 0.018149927917809738,
                            5.006715348489118, 0.9740769841801067}},
                          // Far from 0, where log(1 + e^x) would overflow or round to 0 or 1 + x.
                          {"softplus(x)",
                           {{"x", ITensor::of(f64({4}), {100, -100, 800, -30})}},
                           {100, 3.720075976020836e-44, 800, 9.357622968839737e-14},
                           1e-15}}});
  r.push_back({.op = "gelu",
               .cases = {{kP, "gelu(p)", "f32[3, 4]"}, {kP, "gelu(mul(p, 3), approximate=tanh)", "f32[3, 4]"}},
               .typical = {in("f32[64, 512]"), "gelu(x, approximate=\"tanh\")", "f32[64, 512]"},
               .values = {{"gelu(x)",
                           {{"x", kX}},
                           {0.8413447460685429, -0.04550026389635842, 2.99595030590511, -0.00012668496733247991,
                            4.999998566742141, 0.34573123063700656}},
                          {"gelu(x, approximate=tanh)",
                           {{"x", kX}},
                           {0.8411919906082768, -0.04540230591222494, 2.996362607918227, -7.024594819227126e-05,
                            4.999999770820381, 0.34571400982514394}}}});
  // layer_norm, checked against PyTorch's F.layer_norm values (biased variance, eps inside the root).
  const std::string ln = "param p : f32[3, 4]\nparam g : f32[4]\nparam b : f32[4]\n";
  r.push_back({.op = "layer_norm",
               .cases = {{ln, "layer_norm(p, g, b)", "f32[3, 4]"},
                         {kA234 + "param g : f32[3, 4]\nparam b : f32[3, 4]\n", "layer_norm(a, g, b, axis=1, eps=0.1)",
                          "f32[2, 3, 4]"}},
               .typical = {"input x : f32[64, 128, 256]\ninput y : f32[256]\n", "layer_norm(x, y, y)", "f32[64, 128, 256]"},
               .values = {{"layer_norm(x, g, b)",
                           {{"x", kX}, {"g", ITensor::of(f64({3}), {2, 1, 0.5})}, {"b", ITensor::of(f64({3}), {0, 1, -1})}},
                           {0.32444245805357863, -0.2977698322143143, -0.4322256984062375, -2.449488835565259,
                            2.224744417782629, -1}},
                          {"layer_norm(x, g, b, axis=0)",
                           {{"x", kX}, {"g", ITensor::of(f64({2, 3}), {1, 1, 1, 1, 1, 1})}, {"b", ITensor::of(f64({2, 3}), {0, 0, 0, 0, 0, 0})}},
                           {0.1399182326632398, -0.8674930425120869, 0.8115257494467909, -1.539100559295638,
                            1.4831332662303423, -0.02798364653264798}}}});
  r.push_back({.op = "logsumexp",
               .cases = {{kP, "logsumexp(p, axes=[1])", "f32[3]"},
                         {kA234, "logsumexp(mul(a, 20), axes=[0, 2], keepdims=true)", "f32[1, 3, 1]"},
                         {kP, "logsumexp(p)", "f32[]"}},
               .typical = {in("f32[64, 10]"), "logsumexp(x, axes=[-1])", "f32[64]"},
               .values = {{"logsumexp(x, axes=[1])", {{"x", kLogits}}, {kLse0, std::log(3.0) + 1}},
                          // 1000s overflow e^x: the max is taken out first.
                          {"logsumexp(x, axes=[1], keepdims=true)",
                           {{"x", kBig}},
                           {1002 + std::log(kZ), std::log(3.0)},
                           1e-12,
                           "f64[2, 1]"}}});
  return r;
}

}  // namespace

const std::vector<OpRecord>& op_records() {
  static const std::vector<OpRecord> records = make_records();
  return records;
}

const OpRecord* find_record(std::string_view op) {
  for (const OpRecord& r : op_records())
    if (r.op == op) return &r;
  return nullptr;
}

std::string weighted_spec(const OpCase& c) {
  return c.decls +
         fmt::format("input r : {}\nout = {}\nloss = sum(mul(out, r))\noutput out\nminimize loss with sgd(lr=0.1)\n",
                     c.type, c.expr);
}

std::string spec_of(const OpRecord& record, const OpCase& c) {
  if (!record.gradient) return c.decls + fmt::format("output out = {}\n", c.expr);
  if (!c.minimize.empty()) return c.decls + fmt::format("loss = {}\nminimize loss with {}\n", c.expr, c.minimize);
  return weighted_spec(c);
}

std::string in_f64(std::string spec) {
  for (size_t at = spec.find("f32"); at != std::string::npos; at = spec.find("f32", at)) spec.replace(at, 3, "f64");
  return spec;
}

}  // namespace gradc::test
