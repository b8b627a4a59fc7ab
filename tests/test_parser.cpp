// The parser and printer: what specs mean, and print(parse(print(g))) == print(g).
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"

using namespace gradc;

TEST_CASE("parser: the seed's model has the names, types and ops of DESIGN.md") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  CHECK(g.name == "seed_mlp");
  for (auto [name, type] : std::vector<std::pair<std::string, TensorType>>{
           {"x", {DType::F32, {64, 784}}}, {"y", {DType::I32, {64}}},  {"w1", {DType::F32, {784, 10}}},
           {"b1", {DType::F32, {10}}},      {"w2", {DType::F32, {10, 10}}}, {"b2", {DType::F32, {10}}},
           {"h", {DType::F32, {64, 10}}},   {"logits", {DType::F32, {64, 10}}}, {"loss", {DType::F32, {}}},
           {"probs", {DType::F32, {64, 10}}}}) {
    CAPTURE(name);
    std::optional<ValueId> id = g.find(name);
    REQUIRE(id);
    CHECK(g[*id].type == type);
  }
  CHECK(g[*g.find("h")].op == OpKind::Relu);
  CHECK(g[*g.find("w1")].init->kind == "glorot_uniform");
  CHECK(g[*g.find("b1")].init->kind == "zeros");
  REQUIRE(g.outputs.size() == 1);
  CHECK(g[g.outputs[0].value].name == "probs");
  REQUIRE(g.minimize);
  CHECK(g[g.minimize->loss].name == "loss");
  CHECK(g.minimize->optimizer.kind == "adam");
  CHECK(g.minimize->optimizer.args.get("eps").as_number() == doctest::Approx(1e-7));
  CHECK(g.leaves(NodeKind::Param).size() == 4);
}

TEST_CASE("parser: every sample spec round-trips through the printer") {
  for (const std::string& spec : test::sample_specs()) {
    CAPTURE(spec);
    Graph g = load_spec_file(test::source_path(spec));
    std::string printed = print_spec(g);
    Graph again = load_spec(printed, spec + " (printed)");
    CHECK(print_spec(again) == printed);
    CHECK(again.size() == g.size());
  }
}

TEST_CASE("parser: the canonical print of the seed's model") {
  // A golden test: one statement a line, result types, temporaries as %N, attributes explicit.
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  CHECK(print_spec(g) ==
        "model seed_mlp\n"
        "\n"
        "input x : f32[64, 784]\n"
        "input y : i32[64]\n"
        "param w1 : f32[784, 10] = glorot_uniform\n"
        "param b1 : f32[10] = zeros\n"
        "param w2 : f32[10, 10] = glorot_uniform\n"
        "param b2 : f32[10] = zeros\n"
        "\n"
        "%0 : f32[64, 10] = matmul(x, w1)\n"
        "%1 : f32[64, 10] = add(%0, b1)\n"
        "h : f32[64, 10] = relu(%1)\n"
        "%2 : f32[64, 10] = matmul(h, w2)\n"
        "logits : f32[64, 10] = add(%2, b2)\n"
        "loss : f32[] = softmax_cross_entropy(logits, y)\n"
        "probs : f32[64, 10] = softmax(logits, axis=1)\n"
        "\n"
        "output probs\n"
        "minimize loss with adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-07)\n");
}

TEST_CASE("parser: comments, blank lines, multi-line calls, literals, declared types") {
  Graph g = load_spec(R"(
# a comment line
input x : f64[2, 3]   # trailing comment
param s : f64[] = constant(0.5)
state t : f32[3] = normal(0, std=0.3)

h : f64[2, 3] = mul(
    add(x, 1),        # a literal takes x's dtype
    -2.5e-1)
k = sum(h, axes=-1, keepdims=true)
c : f64[] = 3
output total = sum(k)  # with assigns, the first output is the step's loss: a float scalar
output k
assign t = neg(t)
)", "inline.gir");
  CHECK(g.name == "inline");
  const Node& h = g[*g.find("h")];
  CHECK(h.type == TensorType{DType::F64, {2, 3}});
  CHECK(g[h.args[1]].constant == doctest::Approx(-0.25));
  CHECK(g[h.args[1]].type.dtype == DType::F64);  // weak literal adopted f64
  const Node& k = g[*g.find("k")];
  CHECK(k.type == TensorType{DType::F64, {2, 1}});
  CHECK(k.attrs.get("axes").as_ints() == std::vector<int64_t>{1});  // canonical: explicit, non-negative
  CHECK(g[*g.find("c")].type == TensorType{DType::F64, {}});
  CHECK(g[*g.find("s")].init->args.get("value").as_number() == 0.5);
  const Init& tinit = *g[*g.find("t")].init;
  CHECK(tinit.args.get("mean").as_number() == 0.0);
  CHECK(tinit.args.get("std").as_number() == doctest::Approx(0.3));
  REQUIRE(g.assigns.size() == 1);
  CHECK(print_spec(load_spec(print_spec(g), "again.gir")) == print_spec(g));
}

TEST_CASE("parser: defaults are filled the way PyTorch and Keras fill them") {
  Graph g = load_spec(R"(
input x : f32[8, 4]
input lr : f32[]
param w : f32[4, 3]
param b : f32[3]
state m : f32[3]
p = maxpool2d(reshape(x, shape=[2, 1, 4, -1]), kernel=2)
loss = mean(add(matmul(x, w), b))
minimize loss with adamw(lr=lr)
)", "defaults.gir");
  CHECK(g[*g.find("w")].init->kind == "glorot_uniform");
  CHECK(g[*g.find("b")].init->kind == "zeros");
  CHECK(g[*g.find("m")].init->kind == "zeros");
  const Node& p = g[*g.find("p")];
  CHECK(p.attrs.get("stride").as_ints() == std::vector<int64_t>{2, 2});  // stride defaults to kernel
  CHECK(g[p.args[0]].attrs.get("shape").as_ints() == std::vector<int64_t>{2, 1, 4, 4});
  const Attrs& opt = g.minimize->optimizer.args;
  CHECK(opt.get("lr").as_ident() == "lr");
  CHECK(opt.get("beta1").as_number() == doctest::Approx(0.9));
  CHECK(opt.get("eps").as_number() == doctest::Approx(1e-8));
  CHECK(opt.get("weight_decay").as_number() == doctest::Approx(0.01));
  CHECK_FALSE(opt.has("clip_norm"));
}

TEST_CASE("parser: the Graphviz form names every value and edge") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  std::string dot = print_dot(g);
  CHECK(dot.rfind("digraph \"seed_mlp\" {", 0) == 0);
  CHECK(dot.find("label=\"w1\\nparam f32[784, 10]\"") != std::string::npos);
  CHECK(dot.find("label=\"h\\nrelu f32[64, 10]\"") != std::string::npos);
  size_t edges = 0;
  for (size_t pos = dot.find("->"); pos != std::string::npos; pos = dot.find("->", pos + 2)) ++edges;
  size_t operands = 0;
  for (const Node& n : g.nodes) operands += n.args.size();
  CHECK(edges == operands);
  CHECK(dot.back() == '\n');
}
