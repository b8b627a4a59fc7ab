// gradc's public C++ API: the one header users include.
//
//   gradc::Model model = gradc::compile_file("samples/specs/seed_mlp.gir");  // or compile(graph)
//   gradc::Session s(model, {.seed = 42});      // params, optimizer state, the arena
//   double loss = s.step({{"x", xs}, {"y", ys}});  // one call of the JIT-ed train step
//   const gradc::Tensor& probs = s.predict({{"x", xs}}).at("probs");  // every output by name, any rows
//   std::cout << model.dump(gradc::Stage::Llvm);
//
// Graphs can also be built in C++ with gradc::GraphBuilder (gradc/GraphBuilder.h), evaluated by
// the reference interpreter (gradc::interp::evaluate) and checked (gradc::check_gradients).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradc/Error.h"
#include "gradc/Graph.h"
#include "gradc/GraphBuilder.h"
#include "gradc/Layers.h"
#include "gradc/Interpreter.h"
#include "gradc/Program.h"
#include "gradc/Session.h"
#include "gradc/Tensor.h"

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
  double step = 0;        // the finite-difference step h; 0: per param, 10 cbrt(eps) max(1, max |w|)
  bool interpreter = false;  // evaluate with the reference interpreter instead of the JIT (f64)
  int threads = 0;        // threads the JIT-ed f64 model may use (0: every core)
  double gradient_scale = 1;  // test-only: autodiff's gradients are multiplied by this before the check
};
struct ParamCheck {
  std::string param;
  int64_t elements = 0;
  int probes = 0;            // finite differences compared
  int kinks = 0;             // probes dropped because they straddled a kink (relu, max, ...)
  double step = 0;           // the h used
  double max_abs_error = 0;  // |autodiff - numeric|
  double max_rel_error = 0;  // |autodiff - numeric| / (scale of the param's gradient)
};
std::vector<ParamCheck> check_gradients(const Graph& g, const GradCheckOptions& options = {});

// The stages of the pipeline that `dump` can show (DESIGN.md, "Pipeline").
enum class Stage { Parsed, Grad, Train, Simplified, Fused, Plan, Llvm, Asm };
std::string_view stage_name(Stage s);
std::optional<Stage> parse_stage(std::string_view name);
std::vector<std::string> stage_names();  // in pipeline order

// The graph at `stage` as spec text (or Graphviz with dot = true).
std::string dump(const Graph& g, Stage stage, bool dot = false);

// The forward graph that `predict` runs: the spec's outputs from its inputs and params, simplified.
Graph predict_graph(const Graph& g);

struct Lowered;  // the planned Kernel programs, internal to the compiler (driver/Pipeline.h)

// A compiled model: the native train step and predict (a Program a Session runs), the spec it
// came from, the Kernel programs its code was made from, and how long compiling took.
class Model : public Program {
 public:
  Graph spec;
  // What the pipeline made of the spec, kept so that `bench` (FLOPs, memory), `dump` (the fused
  // and plan stages, LLVM IR) and this code all read the same programs: their figures agree by
  // construction, and nothing is lowered twice.
  std::shared_ptr<const Lowered> lowered;
  double compile_ms = 0;  // from the spec (its text, for compile_file/compile_string) to callable code
  bool cached = false;    // the machine code came from the object cache: no O3, no instruction selection
  // Where compile_ms went: (phase, ms) in order. GRADC_TIME_COMPILE=1 prints them to stderr.
  std::vector<std::pair<std::string, double>> compile_phases;
  std::string dump(Stage stage, bool dot = false) const;
};

struct CompileOptions {
  // Where compiled objects are cached, keyed by the module and the host CPU. Unset: the
  // environment's ($GRADC_CACHE_DIR, else $XDG_CACHE_HOME/gradc, else $HOME/.cache/gradc; none
  // when GRADC_CACHE=0). Empty: no cache.
  std::optional<std::string> cache_dir;
  // The step checks every param and state it updates for NaN and infinity and stops naming the
  // first (see Session::step). Off only to measure what the check costs (bench/finite_check_bench).
  bool check_finite = true;
};

// Every stage of the pipeline, then LLVM's O3 and ORC's JIT for the host CPU (or the cached object).
Model compile(const Graph& g, const CompileOptions& options = {});
Model compile_file(const std::string& path, const CompileOptions& options = {});
Model compile_string(std::string_view text, const std::string& file = "<string>", const CompileOptions& options = {});

// Random values for every input of `g`, seeded: normal floats, and for i32 inputs class ids in
// range of the op that reads them (softmax_cross_entropy's classes, one_hot's).
std::map<std::string, Tensor> random_inputs(const Graph& g, uint64_t seed);

// "gradc 0.1.0 (LLVM 19.1.7, host CPU znver5)"
std::string version_string();

}  // namespace gradc
