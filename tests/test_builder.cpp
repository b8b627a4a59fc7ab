// gradc::GraphBuilder builds the same Graph as the parser.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"

using namespace gradc;

TEST_CASE("builder: the seed's model built in C++ prints as the parsed spec") {
  GraphBuilder b("seed_mlp");
  auto x = b.input("x", {DType::F32, {64, 784}});
  auto y = b.input("y", {DType::I32, {64}});
  auto w1 = b.param("w1", {DType::F32, {784, 10}}, glorot_uniform());
  auto b1 = b.param("b1", {DType::F32, {10}}, zeros());
  auto w2 = b.param("w2", {DType::F32, {10, 10}}, glorot_uniform());
  auto b2 = b.param("b2", {DType::F32, {10}}, zeros());
  auto h = b.name("h", b.relu(b.add(b.matmul(x, w1), b1)));
  auto logits = b.name("logits", b.add(b.matmul(h, w2), b2));
  auto loss = b.name("loss", b.softmax_cross_entropy(logits, y));
  b.output("probs", b.softmax(logits, {{"axis", 1}}));
  b.minimize(loss, adam(0.001, 0.9, 0.999, 1e-7));

  Graph built = b.build();
  Graph parsed = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  CHECK(print_spec(built) == print_spec(parsed));
}

TEST_CASE("builder: the sample program prints the parsed seed model") {
  std::string out = (test::temp_dir() / "build_seed.txt").string();
  int status = std::system(fmt::format("{}/build_seed >{}", GRADC_BUILD_DIR, out).c_str());
  REQUIRE(status == 0);
  Graph parsed = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  CHECK(test::read_file(out) == print_spec(parsed));
}

TEST_CASE("builder: literals, defaults and errors") {
  GraphBuilder b("small");
  auto x = b.input("x", {DType::F64, {2, 3}});
  auto w = b.param("w", {DType::F64, {3, 3}});  // glorot_uniform, as in a spec
  auto y = b.name("y", b.mul(b.matmul(x, w), b.constant(0.5)));
  b.output(y);
  Graph g = b.build();
  CHECK(g[*g.find("w")].init->kind == "glorot_uniform");
  CHECK(g[*g.find("y")].type == TensorType{DType::F64, {2, 3}});
  CHECK(print_spec(g).find("y : f64[2, 3] = mul(%0, 0.5)") != std::string::npos);

  CHECK_THROWS_WITH_AS(b.relu(x, x), doctest::Contains("relu takes 1 operand, got 2"), Error);
  CHECK_THROWS_WITH_AS(b.call("relux", {x}), doctest::Contains("unknown op 'relux'"), Error);
  CHECK_THROWS_WITH_AS(b.softmax(x, {{"axes", 1}}), doctest::Contains("softmax has no attribute 'axes'"), Error);

  GraphBuilder bad("bad");
  auto a = bad.input("a", {DType::F32, {64, 784}});
  auto m = bad.param("m", {DType::F32, {10, 10}});
  bad.matmul(a, m);
  CHECK_THROWS_WITH_AS(bad.build(), doctest::Contains("f32[64, 784] by f32[10, 10]"), Error);
}

// A Value belongs to the builder that made it: another builder's value with an id in range was
// taken for this builder's value of that id (b.add(y, q) built add(y, x)).
TEST_CASE("builder: a value of another builder, or a default Value, is refused by every method") {
  GraphBuilder b("m"), other("n");
  Value x = b.input("x", {DType::F32, {4, 3}});
  Value y = b.input("y", {DType::F32, {4, 3}});
  Value q = other.input("q", {DType::F32, {4, 3}});
  CHECK_THROWS_WITH_AS(b.add(y, q), doctest::Contains("add: the value is not one of this builder's (model 'm') but another builder's"), Error);
  CHECK_THROWS_WITH_AS(b.output(q), doctest::Contains("output: the value is not one of this builder's"), Error);
  CHECK_THROWS_WITH_AS(b.name("z", q), doctest::Contains("name: the value is not one of this builder's"), Error);
  CHECK_THROWS_WITH_AS(b.minimize(q, sgd(0.1)), doctest::Contains("minimize: the value is not one"), Error);
  CHECK_THROWS_WITH_AS(b.relu(Value{}), doctest::Contains("a default Value, made by no builder"), Error);
  CHECK_NOTHROW(b.output("s", b.add(x, y)));
}
