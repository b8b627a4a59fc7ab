// Lowers graphs to one LLVM module: `gradc_train_step` for the simplified training graph and
// `gradc_predict` for the forward graph, each op a loop nest in a function of its own (inlined
// by O3), every intermediate at a fixed offset of one arena. Fills the Program's slot table;
// its entry points are filled once the JIT has linked the module.
#pragma once

#include <memory>

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include "ir/Graph.h"
#include "runtime/Program.h"

namespace gradc::codegen {

inline constexpr const char* kTrainStepSymbol = "gradc_train_step";
inline constexpr const char* kPredictSymbol = "gradc_predict";

struct EmittedModule {
  std::unique_ptr<llvm::LLVMContext> context;
  std::unique_ptr<llvm::Module> module;
  Program program;  // slots, arena size, errors; entry points still null
};

// `train` may be null (a spec that minimizes nothing has no train step).
EmittedModule emit_module(const Graph* train, const Graph& predict);

}  // namespace gradc::codegen
