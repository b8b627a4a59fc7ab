// What the fuzzer drives, shared with the test that replays the inputs it once crashed on:
// spec text through parse, shape inference and the verifier, then (for a spec that minimizes
// a loss) autodiff, optimizer lowering, simplify, fusion and memory planning, each stage
// verified. Bad input must end in gradc::Error; anything else (a crash, a sanitizer report, an
// unsound memory plan) is a bug.
#pragma once

#include <cstdlib>
#include <string_view>

#include "runtime/Format.h"
#include "ir/Parser.h"
#include "ir/Verifier.h"
#include "passes/Autodiff.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"
#include "passes/OptimizerLowering.h"
#include "passes/ShapeInference.h"
#include "passes/Simplify.h"

namespace gradc::fuzz {

// Returns true when the text was a spec the whole pipeline took, false for a refused one.
inline bool run_pipeline(std::string_view text) {
  try {
    Graph g = infer_shapes(parse_spec(text, "fuzz.gir"));
    verify_or_throw(g);
    if (!g.minimize) return true;
    Graph train = lower_optimizer(differentiate(g));
    verify_or_throw(train);
    Graph simple = simplify(train);
    verify_or_throw(simple);
    KernelProgram p = fuse(simple);
    plan_memory(p);
    if (!check_plan(p.buffers, p.arena_bytes).empty()) std::abort();  // an unsound plan is a bug
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace gradc::fuzz
