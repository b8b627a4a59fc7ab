// gradc's public C++ API: the one header users include.
//
//   gradc::Model model = gradc::compile_file("samples/specs/seed_mlp.gir");  // or compile(graph)
//   gradc::Session s(model, {.seed = 42});      // params, optimizer state, the arena
//   double loss = s.step({{"x", xs}, {"y", ys}});  // one call of the JIT-ed train step
//   const gradc::Tensor& probs = s.predict({{"x", xs}});
//   std::cout << model.dump(gradc::Stage::Llvm);
//
// Graphs can also be built in C++ with gradc::GraphBuilder (gradc/GraphBuilder.h), evaluated by
// the reference interpreter (gradc::interp::evaluate) and checked (gradc::check_gradients).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "gradc/GraphBuilder.h"
#include "interp/Interpreter.h"
#include "gradc/Error.h"
#include "ir/Graph.h"
#include "ir/Kernel.h"
#include "runtime/Session.h"

namespace gradc {

// Reads, parses, infers shapes and verifies a spec. Errors carry file:line:col and the line.
Graph load_spec_file(const std::string& path);
Graph load_spec(std::string_view text, const std::string& file = "<string>");

// The graph stages of the pipeline, each verified:
Graph grad_graph(const Graph& g);        // forward and backward: gradients named NAME.grad
Graph train_graph(const Graph& g);       // plus the optimizer: state and assign lines, loss output
Graph simplified_graph(const Graph& g);  // the training graph after CSE, DCE, folding, identities

// The gradient checker: autodiff against central finite differences, in f64.
struct GradCheckOptions {
  uint64_t seed = 0;      // seeds the random inputs, params and probes
  int coordinates = 6;    // elements of each param probed one by one (all if it has fewer)
  int directions = 2;     // random directions probed for each param (all elements at once)
  double step = 1e-6;     // the finite-difference step h
};
struct ParamCheck {
  std::string param;
  int64_t elements = 0;
  int probes = 0;            // finite differences compared
  int kinks = 0;             // probes dropped because they straddled a kink (relu, max, ...)
  double max_rel_error = 0;  // |autodiff - numeric| / (scale of the param's gradient)
};
std::vector<ParamCheck> check_gradients(const Graph& g, const GradCheckOptions& options = {});

// The stages of the pipeline that `dump` can show (DESIGN.md, "Pipeline").
enum class Stage { Parsed, Grad, Train, Simplified, Fused, Plan, Llvm, Asm };
std::string_view stage_name(Stage s);
std::optional<Stage> parse_stage(std::string_view name);

// The graph at `stage` as spec text (or Graphviz with dot = true).
std::string dump(const Graph& g, Stage stage, bool dot = false);

// The forward graph that `predict` runs: the spec's outputs from its inputs and params, simplified.
Graph predict_graph(const Graph& g);

// The Kernel program of the train step (of predict) after fusion and memory planning; with
// fuse = false every op is a kernel of its own (the baseline fusion is measured against).
KernelProgram train_kernels(const Graph& g, bool fuse = true);
KernelProgram predict_kernels(const Graph& g, bool fuse = true);

// A compiled model: the native train step and predict (a Program a Session runs), the spec it
// came from, and how long compiling took.
class Model : public Program {
 public:
  Graph spec;
  double compile_ms = 0;  // from the parsed spec to callable code (the JIT's O3 and codegen included)
  std::string dump(Stage stage, bool dot = false) const;
};

// Every stage of the pipeline, then LLVM's O3 and ORC's JIT for the host CPU.
Model compile(const Graph& g);
Model compile_file(const std::string& path);
Model compile_string(std::string_view text, const std::string& file = "<string>");

// Random values for every input of `g`, seeded: normal floats, and for i32 inputs class ids in
// range of the op that reads them (softmax_cross_entropy's classes, one_hot's).
std::map<std::string, Tensor> random_inputs(const Graph& g, uint64_t seed);

// Times the compiled step (predict when the spec minimizes nothing) on random inputs: `runs`
// runs of `steps` calls each, after a warm-up.
struct BenchReport {
  double compile_ms = 0;
  int64_t arena_bytes = 0;
  std::vector<double> us_per_step;  // one per run
  double median_us = 0;
};
BenchReport bench(const Graph& spec, int64_t steps, int runs = 5);

// "gradc 0.1.0 (LLVM 19.1.7, host CPU znver5)"
std::string version_string();

}  // namespace gradc
