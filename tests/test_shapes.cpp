// Shape rules: every op's result type (each case of its record), canonical attributes and
// mismatch messages.
#include <doctest/doctest.h>

#include "OpCases.h"
#include "gradc/gradc.h"
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

TEST_CASE("shapes: where broadcasts its three operands, its condition f32 or f64") {
  CHECK(infer("where", {f32({2, 1}), f32({2, 3}), f32({3})}) == f32({2, 3}));
  CHECK(infer("where", {f64({4, 1, 1}), f64({}), f64({1, 5})}) == f64({4, 1, 5}));
  CHECK_THROWS_WITH_AS(infer("where", {f32({2}), f32({3}), f32({3})}),
                       doctest::Contains("where of f32[2], f32[3] and f32[3]: shapes do not broadcast"), Error);
  CHECK(infer("where", {f32({3}), f64({3}), f64({3})}) == f64({3}));  // the condition's dtype is its own
  CHECK_THROWS_WITH_AS(infer("where", {i32({3}), f32({3}), f32({3})}),
                       doctest::Contains("the condition must be f32 or f64"), Error);
  CHECK_THROWS_WITH_AS(infer("where", {f32({3}), f32({3}), f64({3})}),
                       doctest::Contains("where of f32[3] and f64[3]: dtypes differ"), Error);
}

TEST_CASE("shapes: gelu's approximate is none or tanh, leaky_relu's slope finite, logsumexp reduces") {
  Attrs tanh_form{{"approximate", Attr(Ident{"tanh"})}};
  CHECK(infer("gelu", {f32({2, 3})}, tanh_form) == f32({2, 3}));
  CHECK_THROWS_WITH_AS(infer("gelu", {f32({2})}, Attrs{{"approximate", Attr(Ident{"sigmoid"})}}),
                       doctest::Contains("gelu: approximate=sigmoid is not one of none, tanh"), Error);
  CHECK_THROWS_WITH_AS(infer("leaky_relu", {f32({2})}, Attrs{{"negative_slope", Attr(1e300)}}),
                       doctest::Contains("negative_slope=1e+300 is not a finite f32 number"), Error);
  CHECK(infer("logsumexp", {f32({2, 3, 4})}, Attrs{{"axes", Attr(std::vector<int64_t>{-1})}}) == f32({2, 3}));
  CHECK(infer("logsumexp", {f32({2, 3})}) == f32({}));
}

TEST_CASE("shapes: elementwise ops keep the type — binary ops broadcast") {
  for (const char* op : {"neg", "exp", "log", "log1p", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "square", "erf",
                        "leaky_relu", "gelu", "softplus"}) {
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
  CHECK_THROWS_WITH_AS(infer("matmul", {f32({3}), f32({3})}), doctest::Contains("matmul of f32[3] by f32[3]"), Error);
  CHECK_THROWS_WITH_AS(infer("matmul", {f32({2, 3}), f64({3, 4})}),
                       doctest::Contains("matmul of f32[2, 3] by f64[3, 4]: dtypes differ"), Error);
  CHECK_THROWS_WITH_AS(infer("matmul", {i32({2, 3}), f32({3, 4})}),
                       doctest::Contains("matmul expects a float tensor, got i32[2, 3]"), Error);
}

TEST_CASE("shapes: transpose, reshape and broadcast_to canonicalize their attributes") {
  Attrs a;
  CHECK(infer("transpose", {f32({2, 3, 4})}, {}, &a) == f32({4, 3, 2}));
  CHECK(ints(a, "perm") == std::vector<int64_t>{2, 1, 0});
  CHECK(infer("transpose", {f32({2, 3, 4})}, {{"perm", {0, 2, 1}}}) == f32({2, 4, 3}));
  CHECK_THROWS_WITH_AS(infer("transpose", {f32({2, 3})}, {{"perm", {0, 0}}}),
                       doctest::Contains("transpose of f32[2, 3]: perm=[0, 0] is not a permutation"), Error);
  CHECK_THROWS_WITH_AS(infer("transpose", {f32({2, 3})}, {{"perm", {1, 0, 2}}}),
                       doctest::Contains("perm=[1, 0, 2] is not a permutation of the 2 axes"), Error);
  CHECK_THROWS_WITH_AS(infer("transpose", {f32({2, 3})}, {{"perm", {-1, 0}}}), doctest::Contains("not a permutation"),
                       Error);

  CHECK(infer("reshape", {f32({2, 3, 4})}, {{"shape", {6, -1}}}, &a) == f32({6, 4}));
  CHECK(ints(a, "shape") == std::vector<int64_t>{6, 4});
  CHECK(infer("reshape", {f32({6})}, {{"shape", {1, 6, 1}}}) == f32({1, 6, 1}));
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {4, 2}}}),
                       doctest::Contains("reshape of f32[2, 3] to [4, 2]: element counts differ (6 vs 8)"), Error);
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {4, -1}}}), doctest::Contains("do not split"),
                       Error);
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {-1, -1}}}),
                       doctest::Contains("reshape of f32[2, 3] to [-1, -1]: dimensions must be positive"), Error);
  CHECK_THROWS_WITH_AS(infer("reshape", {f32({2, 3})}, {{"shape", {0, 6}}}),
                       doctest::Contains("dimensions must be positive"), Error);

  CHECK(infer("broadcast_to", {f32({3})}, {{"shape", {2, 3}}}) == f32({2, 3}));
  CHECK(infer("broadcast_to", {f32({2, 1})}, {{"shape", {5, 2, 4}}}) == f32({5, 2, 4}));
  CHECK_THROWS_WITH_AS(infer("broadcast_to", {f32({2, 3})}, {{"shape", {3}}}),
                       doctest::Contains("broadcast_to of f32[2, 3] to [3]"), Error);
  CHECK_THROWS_WITH_AS(infer("broadcast_to", {f32({1})}, {{"shape", {0, 1}}}),
                       doctest::Contains("dimensions must be positive"), Error);

  // Labels are the one integer operand; layout ops do not take them either.
  CHECK_THROWS_WITH_AS(infer("transpose", {i32({2, 3})}),
                       doctest::Contains("transpose expects a float tensor, got i32[2, 3]"), Error);
  CHECK_THROWS_WITH_AS(infer("reshape", {i32({6})}, {{"shape", {2, 3}}}), doctest::Contains("got i32[6]"), Error);
  CHECK_THROWS_WITH_AS(infer("broadcast_to", {i32({3})}, {{"shape", {2, 3}}}), doctest::Contains("got i32[3]"), Error);
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
    CHECK(infer(op, {f32({2, 3, 4})}, {{"keepdims", true}}, &a) == f32({1, 1, 1}));
    CHECK(ints(a, "axes") == std::vector<int64_t>{0, 1, 2});
    CHECK(infer(op, {f32({2, 3})}, {{"axes", std::vector<int64_t>{}}}) == f32({2, 3}));
    CHECK(infer(op, {f32({})}, {}, &a) == f32({}));
    CHECK(ints(a, "axes").empty());
    CHECK_THROWS_WITH_AS(infer(op, {f32({})}, {{"axes", {0}}}), doctest::Contains("out of range for f32[]"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {i32({4})}), doctest::Contains("expects a float tensor, got i32[4]"), Error);
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
    CHECK(infer(op, {f32({2, 3, 4})}, {{"axis", -2}}, &a) == f32({2, 3, 4}));
    CHECK(a.get("axis").as_int() == 1);
    CHECK_THROWS_WITH_AS(infer(op, {f32({2, 3})}, {{"axis", -3}}), doctest::Contains("axis -3 is out of range"), Error);
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
                       doctest::Contains("of f32[4] and i32[4]: logits must be [N, C]"), Error);
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {f32({4, 3}), f64({4, 3})}),
                       doctest::Contains("of f32[4, 3] and f64[4, 3]: labels must be"), Error);
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {f32({4, 3}), i32({4, 1})}),
                       doctest::Contains("of f32[4, 3] and i32[4, 1]"), Error);
  CHECK_THROWS_WITH_AS(infer("softmax_cross_entropy", {i32({4, 3}), i32({4})}),
                       doctest::Contains("expects a float tensor, got i32[4, 3]"), Error);
  for (const char* op : {"mse", "bce_with_logits"}) {
    CAPTURE(op);
    CHECK(infer(op, {f32({32, 1}), f32({32, 1})}) == f32({}));
    CHECK(infer(op, {f64({5}), f64({5})}) == f64({}));
    CHECK_THROWS_WITH_AS(infer(op, {f32({32, 1}), f32({32})}),
                         doctest::Contains("of f32[32, 1] and f32[32]: shapes differ"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({3}), i32({3})}), doctest::Contains("i32[3]"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({3}), f64({3})}), doctest::Contains("of f32[3] and f64[3]: dtypes differ"),
                         Error);
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
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 4, 4}), f32({1, 1, 3, 3})}),
                       doctest::Contains("conv2d of f32[1, 4, 4] by f32[1, 1, 3, 3]: expected an input [N, C, H, W]"),
                       Error);
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 1, 4, 4}), f32({1, 1, 3, 3})}, {{"padding", -1}}),
                       doctest::Contains("padding must be in [0, 1048576], got [-1, -1]"), Error);
  CHECK_THROWS_WITH_AS(infer("conv2d", {f32({1, 1, 4, 4}), f64({1, 1, 3, 3})}),
                       doctest::Contains("conv2d of f32[1, 1, 4, 4] by f64[1, 1, 3, 3]: dtypes differ"), Error);
  // Padding makes room for a kernel wider than the input: (2 + 2*1 - 3) / 1 + 1 = 2.
  CHECK(infer("conv2d", {f32({1, 1, 2, 2}), f32({1, 1, 3, 3})}, {{"padding", 1}}) == f32({1, 1, 2, 2}));
}

TEST_CASE("shapes: pooling — the stride defaults to the kernel") {
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
    CHECK_THROWS_WITH_AS(infer(op, {f32({1, 1, 4, 4})}, {{"kernel", 2}, {"stride", 0}}),
                         doctest::Contains("must be in [1, 1048576], got kernel=[2, 2] stride=[0, 0]"), Error);
    CHECK_THROWS_WITH_AS(infer(op, {f32({1, 1, 4, 4})}, {{"kernel", {0, 2}}}), doctest::Contains("got kernel=[0, 2]"),
                         Error);
    CHECK_THROWS_WITH_AS(infer(op, {i32({1, 1, 4, 4})}, {{"kernel", 2}}), doctest::Contains("got i32[1, 1, 4, 4]"),
                         Error);
  }
}

TEST_CASE("shapes: the building blocks of gradients") {
  CHECK(infer("greater", {f32({2, 3}), f32({})}) == f32({2, 3}));
  CHECK_THROWS_WITH_AS(infer("greater", {f32({2}), f64({2})}), doctest::Contains("dtypes differ"), Error);
  CHECK(infer("one_hot", {i32({64})}, {{"classes", 10}}) == f32({64, 10}));
  CHECK(infer("one_hot", {i32({2, 3})}, {{"classes", 4}, {"dtype", Ident{"f64"}}}) == f64({2, 3, 4}));
  CHECK_THROWS_WITH_AS(infer("one_hot", {f32({4})}, {{"classes", 3}}), doctest::Contains("class ids i32"), Error);
  CHECK_THROWS_WITH_AS(infer("one_hot", {i32({4})}, {{"classes", 3}, {"dtype", Ident{"i32"}}}),
                       doctest::Contains("dtype must be f32 or f64"), Error);

  Attrs conv{{"stride", 2}, {"padding", 1}, {"shape", {2, 3, 7, 6}}};
  CHECK(infer("conv2d_input_grad", {f32({2, 4, 4, 4}), f32({4, 3, 3, 2})}, conv) == f32({2, 3, 7, 6}));
  CHECK_THROWS_WITH_AS(infer("conv2d_input_grad", {f32({2, 4, 4, 3}), f32({4, 3, 3, 2})}, conv),
                       doctest::Contains("gradient is f32[2, 4, 4, 3] but the forward op gives f32[2, 4, 4, 4]"),
                       Error);
  Attrs wconv{{"stride", 2}, {"padding", 1}, {"kernel", {3, 2}}};
  CHECK(infer("conv2d_weight_grad", {f32({2, 3, 7, 6}), f32({2, 4, 4, 4})}, wconv) == f32({4, 3, 3, 2}));
  CHECK_THROWS_WITH_AS(infer("conv2d_weight_grad", {f32({2, 3, 7, 6}), f32({2, 4, 5, 4})}, wconv),
                       doctest::Contains("incoming gradient"), Error);

  Attrs a;
  CHECK(infer("maxpool2d_grad", {f32({1, 2, 7, 5}), f32({1, 2, 3, 2})}, {{"kernel", 2}}, &a) == f32({1, 2, 7, 5}));
  CHECK(ints(a, "stride") == std::vector<int64_t>{2, 2});
  CHECK_THROWS_WITH_AS(infer("maxpool2d_grad", {f32({1, 2, 7, 5}), f32({1, 2, 3, 3})}, {{"kernel", 2}}),
                       doctest::Contains("incoming gradient"), Error);
  CHECK(infer("avgpool2d_grad", {f32({1, 2, 3, 2})}, {{"kernel", 2}, {"shape", {1, 2, 7, 5}}}) == f32({1, 2, 7, 5}));
  CHECK_THROWS_WITH_AS(infer("avgpool2d_grad", {f32({1, 2, 3, 2})}, {{"kernel", 2}, {"shape", {1, 2, 0, 5}}}),
                       doctest::Contains("avgpool2d_grad: shape=[1, 2, 0, 5] must have positive dimensions"), Error);
}

TEST_CASE("shapes: wrong operand counts are caught before the rule runs") {
  Attrs none;
  CHECK_THROWS_WITH_AS(infer_type(OpKind::Add, {f32({2})}, none, {}), doctest::Contains("add takes 2 operands, got 1"),
                       Error);
}

// Every case of every op's record (OpCases.h), and its typical call at a model's size, has the
// type the record names.
TEST_CASE("shapes: every case of every op's record has the type it names") {
  for (const test::OpRecord& r : test::op_records()) {
    std::vector<test::OpCase> cases = r.cases;
    cases.push_back(r.typical);
    for (const test::OpCase& c : cases) {
      INFO(r.op, ": ", c.expr);
      Graph g = load_spec(c.decls + "out = " + c.expr + "\noutput out\n", "shape.gir");
      CHECK(fmt::format("{}", g[*g.find("out")].type) == c.type);
    }
  }
}
