// DESIGN.md's C++ API example, as a program (tests/test_api.cpp checks that DESIGN.md shows
// exactly the lines between the markers). Run from the source tree.
#include <cstdio>
#include <string>
#include <vector>

#include <gradc/gradc.h>

int main() {
  std::vector<float> xs(64 * 784, 0.25f);
  std::vector<int32_t> ys(64, 1);
  try {
    // ---- snippet begin
    gradc::Model model = gradc::compile_file("samples/specs/seed_mlp.gir");   // or compile(graph) / compile_string(text)
    gradc::Session s(model, {.seed = 42});        // owns params, optimizer state and the arena
    float loss = s.step({{"x", xs}, {"y", ys}});   // one call of the JIT-ed train_step; xs, ys: std::vector or
                                                  // std::span of the element type, shape from the spec
    auto outs = s.predict({{"x", xs}});            // forward only: every output by name, outs.at("probs")
    s.save("ckpt.safetensors");  s.load("ckpt.safetensors");
    std::string ir = model.dump(gradc::Stage::Fused);
    // ---- snippet end
    std::printf("loss %.4f, %zu outputs, %zu bytes of kernels\n", static_cast<double>(loss), outs.size(), ir.size());
  } catch (const gradc::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
