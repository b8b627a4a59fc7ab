// The one pass pipeline (driver/Pipeline.cpp): its passes in order, what `gradc dump --passes`
// prints, and that compile, the stage dumps and train_kernels/predict_kernels run the same passes.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"

namespace gradc {

namespace {

std::vector<std::string> names(const Lowered& l) {
  std::vector<std::string> n;
  for (const PassRun& p : l.passes) n.push_back(p.name);
  return n;
}

const std::vector<std::string> kTrainPasses = {"expand composites", "dropout",
                                               "autodiff",          "optimizer",
                                               "simplify",
                                               "train fusion",      "train memory plan",
                                               "forward graph (outputs, simplified)",
                                               "predict fusion",    "predict memory plan"};

}  // namespace

TEST_CASE("pipeline: the passes run in order, and compile, train_kernels and the stage dumps run the same ones") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  Lowered l = lower(g);
  CHECK(names(l) == kTrainPasses);
  REQUIRE(l.train);
  CHECK(print_kernels(*l.train) == print_kernels(train_kernels(g)));
  CHECK(print_plan(l.predict) == print_plan(predict_kernels(g)));
  CHECK(print_spec(simplified_graph(g)) == print_spec(l.train->graph));
  // The compile's phases are the pipeline's passes, then LLVM's.
  Model m = compile(g);
  std::vector<std::string> phases;
  for (const auto& [phase, ms] : m.compile_phases) phases.push_back(phase);
  REQUIRE(phases.size() > kTrainPasses.size());
  CHECK(std::vector<std::string>(phases.begin(), phases.begin() + static_cast<ptrdiff_t>(kTrainPasses.size())) ==
        kTrainPasses);
}

TEST_CASE("pipeline: a spec without a loss runs the predict passes alone, and a pass that changes nothing says so") {
  // Nothing to simplify: every statement is used and none folds.
  Graph g = load_spec("model plain\ninput x : f32[2, 3]\nparam w : f32[3, 4] = ones\noutput y = tanh(matmul(x, w))\n",
                      "plain.gir");
  Lowered l = lower(g, {.trace = true});
  CHECK_FALSE(l.train);
  std::vector<std::string> predict_passes(kTrainPasses.begin() + 7, kTrainPasses.end());
  predict_passes.insert(predict_passes.begin(), "expand composites");
  CHECK(names(l) == predict_passes);
  CHECK_FALSE(l.passes[0].changed);  // no composite op to expand
  CHECK_FALSE(l.passes[1].changed);
  // The seed's simplify removes the dead and the repeated: changed.
  Lowered seed = lower(load_spec_file(test::source_path("samples/specs/seed_mlp.gir")), {.trace = true});
  CHECK_FALSE(seed.passes[1].changed);  // no dropout to lower
  CHECK(seed.passes[4].name == "simplify");
  CHECK(seed.passes[4].changed);
  // A composite op is expanded: changed, and no later pass sees it.
  Lowered soft = lower(load_spec("input x : f32[2, 3]\noutput y = softplus(x)\n", "soft.gir"), {.trace = true});
  CHECK(soft.passes[0].name == "expand composites");
  CHECK(soft.passes[0].changed);
  CHECK(print_spec(soft.predict.graph).find("softplus") == std::string::npos);
}

TEST_CASE("pipeline: gradc dump --passes lists every pass with its time, --print-after-all the IR after each") {
  std::string spec = test::source_path("samples/specs/seed_mlp.gir");
  test::CommandResult r = test::run_gradc("dump " + spec + " --passes");
  REQUIRE(r.exit_code == 0);
  size_t at = 0;
  for (const std::string& pass : kTrainPasses) {
    size_t next = r.out.find(pass, at);
    CHECK_MESSAGE(next != std::string::npos, pass, " missing or out of order in:\n", r.out);
    if (next != std::string::npos) at = next;
  }
  CHECK(r.out.find(" ms\n") != std::string::npos);
  CHECK(r.out.find("every pass before LLVM") != std::string::npos);
  CHECK(r.out.find("# ---- after") == std::string::npos);

  test::CommandResult all = test::run_gradc("dump " + spec + " --passes --print-after-all");
  REQUIRE(all.exit_code == 0);
  for (const std::string& pass : kTrainPasses) CHECK(all.out.find("# ---- after " + pass + "\n") != std::string::npos);
  CHECK(all.out.find("w1.grad") != std::string::npos);  // the graph after autodiff

  test::CommandResult lone = test::run_gradc("dump " + spec + " --print-after-all");
  CHECK(lone.exit_code == 1);
  CHECK(lone.err.find("--print-after-all requires --passes") != std::string::npos);
  test::CommandResult both = test::run_gradc("dump " + spec + " --passes --stage fused");
  CHECK(both.exit_code == 1);
}

}  // namespace gradc
