// The compiler's passes in order, in one place (as Halide's Lower.cpp): a spec's graph to the
// train step's and predict's planned Kernel programs.
//
//   train:   expand composites -> autodiff -> optimizer -> simplify -> fusion -> memory plan
//   predict: expand composites -> forward graph (the outputs alone, simplified) -> fusion -> memory plan
//
// The graph verifier runs after every graph pass, the Kernel-program verifier after fusion and
// after the plan, and the plan checker after the plan in debug builds. The stage dumps, the
// tests' train_kernels/predict_kernels and compile all run these same passes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ir/Graph.h"
#include "ir/Kernel.h"

namespace gradc {

struct PassRun {
  std::string name;  // "autodiff", "train fusion", ...
  double ms = 0;
  bool changed = true;  // false: the pass gave back its input as it was (graph passes, traced only)
  std::string after;    // the IR after the pass (with print_after)
};

struct PipelineOptions {
  bool fuse = true;          // false: one op per kernel (the baseline fusion is measured against)
  bool trace = false;        // tell each graph pass's output from its input (prints both)
  bool print_after = false;  // keep the IR after each pass (`gradc dump --passes --print-after-all`)
};

struct Lowered {
  std::optional<KernelProgram> train;  // when the spec trains
  KernelProgram predict;
  std::vector<PassRun> passes;  // in the order they ran
};

Lowered lower(const Graph& spec, const PipelineOptions& options = {});

// The program a step runs: the train step's, predict's when the spec minimizes nothing (what
// `gradc bench` times and `dump --stage fused/plan` prints).
const KernelProgram& step_program(const Lowered& l);

// `gradc dump SPEC --passes`: each pass with its time, "unchanged" where it changed nothing.
std::string print_passes(const Lowered& l);

// The Kernel program of the train step (of predict) after fusion and memory planning; with
// fuse = false every op is a kernel of its own (the baseline fusion is measured against).
KernelProgram train_kernels(const Graph& g, bool fuse = true);
KernelProgram predict_kernels(const Graph& g, bool fuse = true);

}  // namespace gradc
