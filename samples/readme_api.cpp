// The README's second C++ snippet, as a program (tests/test_api.cpp checks that the README shows
// exactly the lines between the markers): spec files, the stages, the raw entry point and the
// reference interpreter. Run from the source tree (it reads samples/specs/seed_mlp.gir).
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <gradc/gradc.h>

int main() {
  try {
    // ---- snippet begin
    // A spec file: parsed, shapes inferred, verified; each stage of the pipeline as spec text.
    gradc::Graph g = gradc::load_spec_file("samples/specs/seed_mlp.gir");
    std::string text = gradc::dump(g, gradc::Stage::Simplified);

    // Compiled: a Session feeds Tensors (dtype and shape checked) as well as vectors and spans.
    gradc::Model model = gradc::compile_file("samples/specs/seed_mlp.gir");  // or compile(g)
    gradc::Session s(model, {.seed = 42, .threads = 1});
    std::map<std::string, gradc::Tensor> batch = gradc::random_inputs(model.spec, /*seed=*/0);
    double loss = s.step({{"x", batch.at("x")}, {"y", batch.at("y")}});
    std::string ir = model.dump(gradc::Stage::Llvm);  // or Fused, Plan, Asm

    // The raw entry point: int32_t train_step(void* const* slots, std::byte* arena, void* pool),
    // slots as listed in model.slots (inputs, params, state, outputs), an arena of
    // model.arena_bytes; the Session's are at hand for callers who manage memory themselves.
    int32_t status = model.train_step(s.raw_slots(), s.raw_arena(), s.raw_pool());  // 0: done

    // The reference interpreter: every node's value from fed inputs and params, and a whole
    // training step on the training graph (its params and state updated in `feeds`).
    gradc::Graph train = gradc::train_graph(g);
    gradc::interp::Feeds feeds;
    for (const gradc::Node& n : train.nodes)
      if (n.is_leaf()) feeds[n.name] = gradc::interp::Tensor::zeros(n.type);
    std::vector<gradc::interp::Tensor> values = gradc::interp::evaluate(g, feeds);
    gradc::interp::step(train, feeds);
    // ---- snippet end
    std::printf("%zu bytes of spec text, loss %.4f, status %d, %zu bytes of IR, %zu values\n", text.size(), loss,
                static_cast<int>(status), ir.size(), values.size());
  } catch (const gradc::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
