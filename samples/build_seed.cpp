// The seed's model built in C++ with gradc::GraphBuilder; prints the same spec text as
// `gradc dump samples/specs/seed_mlp.gir` (tests/test_builder.cpp checks that).
#include <iostream>

#include <gradc/gradc.h>

int main() {
  using gradc::DType;
  try {
    gradc::GraphBuilder b("seed_mlp");
    auto x = b.input("x", {DType::F32, {64, 784}});
    auto y = b.input("y", {DType::I32, {64}});
    auto w1 = b.param("w1", {DType::F32, {784, 10}}, gradc::glorot_uniform());
    auto b1 = b.param("b1", {DType::F32, {10}}, gradc::zeros());
    auto w2 = b.param("w2", {DType::F32, {10, 10}}, gradc::glorot_uniform());
    auto b2 = b.param("b2", {DType::F32, {10}}, gradc::zeros());

    auto h = b.name("h", b.relu(b.add(b.matmul(x, w1), b1)));
    auto logits = b.name("logits", b.add(b.matmul(h, w2), b2));
    auto loss = b.name("loss", b.softmax_cross_entropy(logits, y));

    b.output("probs", b.softmax(logits, {{"axis", 1}}));
    b.minimize(loss, gradc::adam(0.001, 0.9, 0.999, 1e-7));
    std::cout << gradc::dump(b.build(), gradc::Stage::Parsed);
  } catch (const gradc::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
