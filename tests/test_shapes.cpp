// Shape rules: every op's result type, canonical attributes and mismatch messages.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "ir/OpTable.h"

using namespace gradc;

namespace {

TensorType f32(Shape s) { return {DType::F32, std::move(s)}; }
TensorType f64(Shape s) { return {DType::F64, std::move(s)}; }
TensorType i32(Shape s) { return {DType::I32, std::move(s)}; }

// Binds attributes as the parser does, then runs the op's shape rule.
TensorType infer(std::string_view op, std::vector<TensorType> args, const Attrs& keywords = {},
                 Attrs* canonical = nullptr) {
  std::optional<OpKind> kind = find_op(op);
  REQUIRE(kind);
  Attrs attrs = bind_attrs(op_info(*kind).attrs, op, {}, keywords, {});
  TensorType t = infer_type(*kind, args, attrs, {});
  if (canonical) *canonical = attrs;
  return t;
}

std::vector<int64_t> ints(const Attrs& a, std::string_view name) { return a.get(name).as_ints(); }

}  // namespace

TEST_CASE("shapes: elementwise ops keep the type; binary ops broadcast") {
  for (const char* op : {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "square"}) {
    CAPTURE(op);
    CHECK(infer(op, {f32({2, 3})}) == f32({2, 3}));
    CHECK(infer(op, {f64({})}) == f64({}));
    CHECK_THROWS_WITH_AS(infer(op, {i32({4})}), doctest::Contains("expects a float tensor, got i32[4]"), Error);
  }
  for (const char* op : {"add", "sub", "mul", "div", "maximum", "minimum", "pow"}) {
    CAPTURE(op);
    CHECK(infer(op, {f32({2, 3}), f32({3})}) == f32({2, 3}));
    CHECK(infer(op, {f32({2, 1}), f32({1, 3})}) == f32({2, 3}));
    CHECK(infer(op, {f32({}), f32({4, 1, 5})}) == f32({4, 1, 5}));
    CHECK(infer(op, {f64({5, 1, 3}), f64({4, 1})}) == f64({5, 4, 3}));
    CHECK_THROWS_WITH_AS(infer(op, {f32({64, 10}), f32({3})}),
                         doctest::Contains("of f32[64, 10] and f32[3]: shapes do not broadcast"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({2}), f64({2})}), doctest::Contains("of f32[2] and f64[2]: dtypes differ"),
                         Error);
  }
}

TEST_CASE("shapes: matmul, plain and batched") {
  CHECK(infer("matmul", {f32({64, 784}), f32({784, 10})}) == f32({64, 10}));
  CHECK(infer("matmul", {f64({4, 2, 3}), f64({4, 3, 5})}) == f64({4, 2, 5}));
  CHECK_THROWS_WITH_AS(infer("matmul", {f32({64, 784}), f32({10, 10})}),
                       doctest::Contains("matmul of f32[64, 784] by f32[10, 10]: inner dimensions differ (784 vs 10)"),
                       Error);
  CHECK_THROWS_WITH_AS(infer("matmul", {f32({4, 2, 3}), f32({5, 3, 5})}),
                       doctest::Contains("batch dimensions differ (4 vs 5)"), Error);
  CHECK_THROWS_WITH_AS(infer("matmul", {f32({2, 3}), f32({1, 3, 5})}),
                       doctest::Contains("matmul of f32[2, 3] by f32[1, 3, 5]"), Error);
}

TEST_CASE("shapes: transpose, reshape and broadcast_to canonicalize their attributes") {
  Attrs a;
  CHECK(infer("transpose", {f32({2, 3, 4})}, {}, &a) == f32({4, 3, 2}));
  CHECK(ints(a, "perm") == std::vector<int64_t>{2, 1, 0});
  CHECK(infer("transpose", {f32({2, 3, 4})}, {{"perm", {0, 2, 1}}}) == f32({2, 4, 3}));
  CHECK_THROWS_WITH_AS(infer("transpose", {f32({2, 3})}, {{"perm", {0, 0}}}),
                       doctest::Contains("transpose of f32[2, 3]: perm=[0, 0] is not a permutation"), Error);

  CHECK(infer("reshape", {f32({2, 3, 4})}, {{"shape", {6, -1}}}, &a) == f32({6, 4}));
  CHECK(ints(a, "shape") == std::vector<int64_t>{6, 4});
  CHECK(infer("reshape", {f32({6})}, {{"shape", {1, 6, 1}}}) == f32({1, 6, 1}));
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {4, 2}}}),
                       doctest::Contains("reshape of f32[2, 3] to [4, 2]: element counts differ (6 vs 8)"), Error);
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {4, -1}}}), doctest::Contains("do not split"),
                       Error);

  CHECK(infer("broadcast_to", {f32({3})}, {{"shape", {2, 3}}}) == f32({2, 3}));
  CHECK(infer("broadcast_to", {f32({2, 1})}, {{"shape", {5, 2, 4}}}) == f32({5, 2, 4}));
  CHECK_THROWS_WITH_AS(infer("broadcast_to", {f32({2, 3})}, {{"shape", {3}}}),
                       doctest::Contains("broadcast_to of f32[2, 3] to [3]"), Error);
}

TEST_CASE("shapes: reductions over axes, with and without keepdims") {
  for (const char* op : {"sum", "mean", "max"}) {
    CAPTURE(op);
    Attrs a;
    CHECK(infer(op, {f32({2, 3, 4})}, {}, &a) == f32({}));
    CHECK(ints(a, "axes") == std::vector<int64_t>{0, 1, 2});
    CHECK(infer(op, {f32({2, 3, 4})}, {{"axes", {-1, 0}}}, &a) == f32({3}));
    CHECK(ints(a, "axes") == std::vector<int64_t>{0, 2});
    CHECK(infer(op, {f64({2, 3, 4})}, {{"axes", {1}}, {"keepdims", true}}) == f64({2, 1, 4}));
    CHECK(infer(op, {f32({})}) == f32({}));
    CHECK_THROWS_WITH_AS(infer(op, {f32({2, 3})}, {{"axes", {2}}}),
                         doctest::Contains("axis 2 is out of range for f32[2, 3]"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({2, 3})}, {{"axes", {1, -1}}}), doctest::Contains("named twice"), Error);
  }
}

TEST_CASE("shapes: softmax and log_softmax normalize the axis") {
  for (const char* op : {"softmax", "log_softmax"}) {
    CAPTURE(op);
    Attrs a;
    CHECK(infer(op, {f32({64, 10})}, {}, &a) == f32({64, 10}));
    CHECK(a.get("axis").as_int() == 1);
    CHECK(infer(op, {f32({2, 3, 4})}, {{"axis", 0}}, &a) == f32({2, 3, 4}));
    CHECK(a.get("axis").as_int() == 0);
    CHECK_THROWS_WITH_AS(infer(op, {f32({2, 3})}, {{"axis", 2}}), doctest::Contains("axis 2 is out of range"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({})}), doctest::Contains("of a scalar"), Error);
  }
}

TEST_CASE("shapes: losses are scalars of the prediction's dtype") {
  CHECK(infer("softmax_cross_entropy", {f32({64, 10}), i32({64})}) == f32({}));
  CHECK(infer("softmax_cross_entropy", {f64({4, 3}), f64({4, 3})}) == f64({}));
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {f32({4, 10}), i32({5})}),
                       doctest::Contains("of f32[4, 10] and i32[5]: class ids must be i32[4]"), Error);
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {f32({4, 3}), f32({4, 2})}),
                       doctest::Contains("of f32[4, 3] and f32[4, 2]"), Error);
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {f32({4}), i32({4})}),
                       doctest::Contains("logits must be [N, C]"), Error);
  for (const char* op : {"mse", "bce_with_logits"}) {
    CAPTURE(op);
    CHECK(infer(op, {f32({32, 1}), f32({32, 1})}) == f32({}));
    CHECK(infer(op, {f64({5}), f64({5})}) == f64({}));
    CHECK_THROWS_WITH_AS(infer(op, {f32({32, 1}), f32({32})}),
                         doctest::Contains("of f32[32, 1] and f32[32]: shapes differ"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({3}), i32({3})}), doctest::Contains("i32[3]"), Error);
  }
}

TEST_CASE("shapes: conv2d with stride, padding and odd sizes") {
  CHECK(infer("conv2d", {f32({64, 1, 28, 28}), f32({16, 1, 3, 3})}, {{"padding", 1}}) == f32({64, 16, 28, 28}));
  CHECK(infer("conv2d", {f32({2, 3, 5, 7}), f32({4, 3, 3, 2})}) == f32({2, 4, 3, 6}));
  Attrs a;
  CHECK(infer("conv2d", {f32({2, 3, 5, 7}), f32({4, 3, 3, 3})}, {{"stride", 2}, {"padding", {1, 0}}}, &a) ==
        f32({2, 4, 3, 3}));
  CHECK(ints(a, "stride") == std::vector<int64_t>{2, 2});
  CHECK(ints(a, "padding") == std::vector<int64_t>{1, 0});
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 3, 8, 8}), f32({4, 2, 3, 3})}),
                       doctest::Contains("conv2d of f32[1, 3, 8, 8] by f32[4, 2, 3, 3]: input channels differ"), Error);
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 1, 2, 2}), f32({1, 1, 3, 3})}),
                       doctest::Contains("larger than the padded input"), Error);
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 1, 4, 4}), f32({1, 1, 3, 3})}, {{"stride", 0}}),
                       doctest::Contains("stride must be in [1, 1048576], got [0, 0]"), Error);
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 4, 4}), f32({1, 1, 3, 3})}), doctest::Contains("[N, C, H, W]"), Error);
}

TEST_CASE("shapes: pooling; the stride defaults to the kernel") {
  for (const char* op : {"maxpool2d", "avgpool2d"}) {
    CAPTURE(op);
    Attrs a;
    CHECK(infer(op, {f32({64, 16, 28, 28})}, {{"kernel", 2}}, &a) == f32({64, 16, 14, 14}));
    CHECK(ints(a, "stride") == std::vector<int64_t>{2, 2});
    CHECK(infer(op, {f32({1, 2, 7, 5})}, {{"kernel", 3}, {"stride", 1}}) == f32({1, 2, 5, 3}));
    CHECK(infer(op, {f32({1, 2, 7, 5})}, {{"kernel", {3, 2}}, {"stride", 2}}) == f32({1, 2, 3, 2}));
    CHECK_THROWS_WITH_AS(infer(op, {f32({1, 1, 2, 2})}, {{"kernel", 3}}), doctest::Contains("larger than the input"),
                         Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({4, 4})}, {{"kernel", 2}}), doctest::Contains("rank-4"), Error);
  }
}

TEST_CASE("shapes: wrong operand counts are caught before the rule runs") {
  Attrs none;
  CHECK_THROWS_WITH_AS(infer_type(OpKind::Add, {f32({2})}, none, {}), doctest::Contains("add takes 2 operands, got 1"),
                       Error);
}

TEST_CASE("shapes: every op of the table has a shape test in this file") {
  // CTest runs each test case in a process of its own, so look for the ops in the source.
  std::string source = test::read_file(test::source_path("tests/test_shapes.cpp"));
  for (const OpInfo& op : all_ops()) {
    CAPTURE(op.name);
    CHECK(source.find(fmt::format("\"{}\"", op.name)) != std::string::npos);
  }
}
