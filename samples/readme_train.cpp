// The README's first C++ snippet, as a program (tests/test_api.cpp checks that the README shows
// exactly the lines between the markers): a model built with GraphBuilder, trained from
// std::vectors, predict on any number of rows, a checkpoint.
// ---- snippet begin
#include <cstdio>
#include <vector>

#include <gradc/gradc.h>

int main() {
  // The seed's model (samples/specs/seed_mlp.gir) built in C++: one method per op.
  gradc::GraphBuilder b("seed_mlp");
  auto x = b.input("x", {gradc::DType::F32, {64, 784}});
  auto y = b.input("y", {gradc::DType::I32, {64}});
  auto w1 = b.param("w1", {gradc::DType::F32, {784, 10}}, gradc::glorot_uniform());
  auto b1 = b.param("b1", {gradc::DType::F32, {10}}, gradc::zeros());
  auto w2 = b.param("w2", {gradc::DType::F32, {10, 10}}, gradc::glorot_uniform());
  auto b2 = b.param("b2", {gradc::DType::F32, {10}}, gradc::zeros());
  auto h = b.name("h", b.relu(b.add(b.matmul(x, w1), b1)));
  auto logits = b.name("logits", b.add(b.matmul(h, w2), b2));
  auto loss = b.name("loss", b.softmax_cross_entropy(logits, y));
  b.output("probs", b.softmax(logits, {{"axis", 1}}));
  b.minimize(loss, gradc::adam({.lr = 1e-3, .clip_norm = 1.0}));
  gradc::Graph graph = b.build();  // shapes inferred and verified, as for a spec file

  // Compile it and train: one call of the JIT-ed step per batch, fed from std::vector or
  // std::span of the input's element type (its shape is the spec's: 64 rows here).
  gradc::Model model = gradc::compile(graph);
  gradc::Session s(model, {.seed = 42});
  std::vector<float> xs(64 * 784, 0.5f);
  std::vector<int32_t> ys(64, 3);
  for (int step = 1; step <= 10; ++step) std::printf("step %d: loss %.4f\n", step, s.step({{"x", xs}, {"y", ys}}));

  // predict: every output of the spec by name, for any number of rows (100 here).
  std::vector<float> rows(100 * 784, 0.5f);
  const gradc::Outputs& outs = s.predict({{"x", rows}});
  const gradc::Tensor& probs = outs.at("probs");  // f32[100, 10]
  std::printf("P(class 3 | row 99) = %.3f\n", probs.as<float>()[99 * 10 + 3]);

  s.save("ckpt.safetensors");  // params and Adam's state; s.load reads them back
  s.load("ckpt.safetensors");
}
// ---- snippet end
