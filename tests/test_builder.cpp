// gradc::GraphBuilder builds the same Graph as the parser.
#include <doctest/doctest.h>

#include "JitUtil.h"
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

// The layer helpers are the spec a user would write: a two-step LSTM (its params shared by both
// steps), layer norm and a dense head print as that spec, and its JIT-ed step equals the interpreter's.
TEST_CASE("builder: the layer helpers (dense, layer_norm, lstm_cell, conv_block) build the spec a user writes") {
  GraphBuilder b("layers");
  auto x0 = b.input("x0", {DType::F32, {4, 6}});
  auto x1 = b.input("x1", {DType::F32, {4, 6}});
  auto y = b.input("y", {DType::I32, {4}});
  auto h0 = b.input("h0", {DType::F32, {4, 5}});
  layers::Lstm cell = layers::lstm(b, "cell", 6, 5);
  auto [h1, c1] = layers::lstm_cell(b, cell, x0, h0, h0);
  auto [h2, c2] = layers::lstm_cell(b, cell, x1, h1, c1);
  auto logits = layers::dense(b, "out", layers::layer_norm(b, "norm", h2, 5), 5, 3);
  b.minimize(b.name("loss", b.softmax_cross_entropy(logits, y)), adam(0.01));
  std::string printed = print_spec(b.build());

  const std::string cell_step =
      "gates{t} = add(add(matmul({x}, cell.w), matmul({h}, cell.u)), cell.b)\n"
      "c{t} = add(mul(sigmoid(slice(gates{t}, begin=[0, 5], end=[1099511627776, 10])), {c}), "
      "mul(sigmoid(slice(gates{t}, begin=[0, 0], end=[1099511627776, 5])), tanh(slice(gates{t}, begin=[0, 10], end=[1099511627776, 15]))))\n"
      "h{t} = mul(sigmoid(slice(gates{t}, begin=[0, 15], end=[1099511627776, 20])), tanh(c{t}))\n";
  std::string spec =
      "model layers\ninput x0 : f32[4, 6]\ninput x1 : f32[4, 6]\ninput y : i32[4]\ninput h0 : f32[4, 5]\n"
      "param cell.w : f32[6, 20] = glorot_uniform\nparam cell.u : f32[5, 20] = glorot_uniform\nparam cell.b : f32[20] = zeros\n" +
      fmt::format(fmt::runtime(cell_step), fmt::arg("t", 1), fmt::arg("x", "x0"), fmt::arg("h", "h0"), fmt::arg("c", "h0")) +
      fmt::format(fmt::runtime(cell_step), fmt::arg("t", 2), fmt::arg("x", "x1"), fmt::arg("h", "h1"), fmt::arg("c", "c1")) +
      "param norm.gamma : f32[5] = ones\nparam norm.beta : f32[5] = zeros\n"
      "param out.w : f32[5, 3] = glorot_uniform\nparam out.b : f32[3] = zeros\n"
      "loss = softmax_cross_entropy(add(matmul(layer_norm(h2, norm.gamma, norm.beta, eps=1e-05), out.w), out.b), y)\n"
      "minimize loss with adam(lr=0.01)\n";
  Graph parsed = load_spec(spec, "layers.gir");
  Graph built = b.build();
  // The same params in the same order, and the same loss on the same values (C++ leaves the order
  // of a call's arguments open, so the builder's nodes may be listed in another order).
  auto params_of = [](const Graph& g) {
    std::vector<std::string> names;
    for (const Node& n : g.nodes)
      if (n.kind == NodeKind::Param) names.push_back(fmt::format("{} {}", n.name, n.type));
    return names;
  };
  CHECK(params_of(built) == params_of(parsed));
  interp::Feeds feeds;
  double v = 0.1;
  for (const Node& n : parsed.nodes)
    if (n.kind == NodeKind::Param || n.kind == NodeKind::Input) {
      interp::Tensor t = interp::Tensor::zeros(n.type);
      for (double& e : t.data) e = n.type.dtype == DType::I32 ? 1 : std::sin(v += 0.37);
      feeds[n.name] = t;
    }
  double built_loss = interp::evaluate(built, feeds)[static_cast<size_t>(built.minimize->loss)].data[0];
  double parsed_loss = interp::evaluate(parsed, feeds)[static_cast<size_t>(parsed.minimize->loss)].data[0];
  CHECK(built_loss == parsed_loss);
  CHECK(test::check_against_interpreter(printed, 1e-5, "layers.gir") <= 1e-5);

  GraphBuilder cb("conv");
  auto images = cb.input("x", {DType::F32, {2, 1, 8, 8}});
  auto labels = cb.input("y", {DType::I32, {2}});
  auto p = layers::conv_block(cb, "c1", images, 1, 4);
  auto flat = cb.reshape(p, {{"shape", Attr(std::vector<int64_t>{2, 64})}});
  cb.minimize(cb.name("loss", cb.softmax_cross_entropy(layers::dense(cb, "fc", flat, 64, 10), labels)), sgd(0.1));
  Graph conv = cb.build();
  CHECK(conv[conv.minimize->loss].type == TensorType{DType::F32, {}});
  CHECK(test::check_against_interpreter(print_spec(conv), 1e-5, "conv.gir") <= 1e-5);
}
