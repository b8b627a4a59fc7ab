// Large generated graphs compile and their native steps equal the interpreter's (issue 14,
// fault 3: fusion was cubic in the graph's size). Correctness only: compile times are measured
// by bench/compile_bench, never asserted here.
#include <fmt/format.h>

#include "JitUtil.h"
#include "bench/ScaleSpecs.h"
#include "ir/Kernel.h"
#include "passes/Fusion.h"

namespace gradc {

namespace {

std::string chain_spec(int n, const std::string& optimizer) { return scale::chain_spec(n, 4, 16, optimizer); }

// Dense layers of one width with tanh (bounded, so that random params keep every value finite).
std::string mlp_spec(int layers, const std::string& optimizer) {
  return scale::mlp_spec(layers, {.batch = 8, .inputs = 24, .width = 16, .activation = "tanh"}, optimizer);
}

// Eight identical hidden layers, SGD: their forward and input-gradient GEMMs repeat (the weight
// gradients' GEMMs have the update fused, whose NaN check returns a code of its own).
std::string mlp_spec_for_dedupe() { return mlp_spec(10, "sgd(lr=0.1)"); }

// Residual blocks of two branches, each block's input read by four kernels and a reduction.
std::string branchy_spec(int blocks, const std::string& optimizer) {
  std::string s = fmt::format("model branchy_{}\ninput x : f32[4, 8]\ninput t : f32[4, 8]\n", blocks);
  for (int i = 0; i < blocks; ++i)
    s += fmt::format("param wa{0} : f32[8, 8] = glorot_uniform\nparam wb{0} : f32[8, 8] = glorot_uniform\n"
                     "param s{0} : f32[8] = ones\n", i);
  std::string h = "x";
  for (int i = 0; i < blocks; ++i) {
    s += fmt::format("a{0} = tanh(matmul({1}, wa{0}))\nb{0} = sigmoid(matmul({1}, wb{0}))\n"
                     "c{0} = add(mul(a{0}, b{0}), mul(tanh({1}), s{0}))\nr{0} = add(c{0}, mul(mean({1}), 0.1))\n", i, h);
    h = fmt::format("r{}", i);
  }
  return s + fmt::format("loss = mse({0}, t)\noutput {0}\nminimize loss with {1}\n", h, optimizer);
}

// The native step against the interpreter's, from the spec's own (seeded) init: random N(0, 1)
// params (test::check_against_interpreter) put a deep net where f32's rounding grows with each
// layer. Three steps; the losses and every param and state after them, within `tol`.
void check_steps(const std::string& text, double tol) {
  Model model = compile_string(text, "scale.gir");
  Session session(model, {.seed = 7});
  interp::Feeds feeds;
  for (const std::string& name : session.param_names()) feeds[name] = test::to_interp(session.param(name));
  auto inputs = random_inputs(model.spec, 2);
  for (const auto& [name, t] : inputs) feeds[name] = test::to_interp(t);
  Graph train = simplified_graph(model.spec);
  for (int s = 0; s < 3; ++s) {
    double loss = session.step(test::views(inputs));
    double expected = interp::step(train, feeds)[static_cast<size_t>(train.outputs[0].value)].data[0];
    INFO("step ", s + 1, ": loss ", loss, ", the interpreter's ", expected);
    CHECK(std::fabs(loss - expected) <= tol * std::max(std::fabs(expected), 1e-30));
  }
  for (const std::string& name : session.param_names()) {  // params, then optimizer state
    double err = test::relative_error(session.param(name), feeds.at(name));
    INFO(name, ": relative error ", err);
    CHECK(err <= tol);
  }
}

}  // namespace

TEST_CASE("compile scale: a chain of 2,000 tanh ops fuses into kernels of at most 512 members and equals the interpreter") {
  std::string spec = chain_spec(2000, "sgd(lr=0.1)");
  KernelProgram p = train_kernels(load_spec(spec, "chain.gir"));
  size_t members = 0;
  for (const Kernel& k : p.kernels) {
    CHECK(k.members.size() <= kMaxKernelMembers);
    members += k.members.size();
  }
  INFO(members, " members in ", p.kernels.size(), " kernels");
  CHECK(p.kernels.size() * 200 <= members);  // fused all the same: 200 ops a kernel on average, at least
  CHECK(verify_kernels(p, true).empty());
  check_steps(spec, 1e-4);
}

TEST_CASE("compile scale: a 50-layer MLP (identical layers share their kernels' code) equals the interpreter") {
  for (const char* optimizer : {"adam(lr=0.01)", "momentum(lr=0.1, momentum=0.9, clip_norm=1.0)"}) {
    INFO(optimizer);
    std::string spec = mlp_spec(50, optimizer);
    KernelProgram p = train_kernels(load_spec(spec, "mlp.gir"));
    CHECK(verify_kernels(p, true).empty());
    CHECK(p.kernels.size() >= 150);  // three GEMMs a layer, at least
    check_steps(spec, 1e-4);
  }
}

TEST_CASE("compile scale: 60 residual blocks of two branches, with and without clip_norm, equal the interpreter") {
  for (const char* optimizer : {"adam(lr=0.01)", "sgd(lr=0.1, clip_norm=0.5)"}) {
    INFO(optimizer);
    std::string spec = branchy_spec(60, optimizer);
    CHECK(verify_kernels(train_kernels(load_spec(spec, "branchy.gir")), true).empty());
    check_steps(spec, 1e-4);
  }
}

}  // namespace gradc

namespace gradc {

TEST_CASE("compile scale: kernels whose code repeats (a deep MLP's layers) are emitted once and called for each") {
  std::string spec = mlp_spec_for_dedupe();
  size_t kernels = train_kernels(load_spec(spec, "mlp.gir")).kernels.size();
  std::string ir = compile_string(spec, "mlp.gir").dump(Stage::Llvm);
  ir = ir.substr(0, ir.find("; ---- after LLVM's O3"));
  size_t defined = 0;
  for (size_t at = ir.find("define "); at != std::string::npos; at = ir.find("define ", at + 1))
    if (ir.compare(ir.find('@', at), 7, "@step.k") == 0 && ir.find(".task", at) > ir.find('(', at)) ++defined;
  INFO(kernels, " kernels, ", defined, " kernel functions defined");
  CHECK(defined + 10 <= kernels);  // the forward and input-gradient GEMMs of the middle layers, at least
  check_steps(spec, 1e-4);
}

}  // namespace gradc
