// Lowers Kernel programs to LLVM modules: `gradc_train_step` for the training graph's and
// `gradc_predict` for the forward graph's, each kernel a function of its own over the buffers
// its memory plan gives it. Fills the Program's slot table; its entry points are filled once
// the JIT has linked the modules.
#pragma once

#include <memory>

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include "ir/Kernel.h"
#include "gradc/Program.h"

namespace gradc::codegen {

inline constexpr const char* kTrainStepSymbol = "gradc_train_step";
inline constexpr const char* kPredictSymbol = "gradc_predict";

// A module with a context of its own, so that the parts of a step compile on separate threads.
struct ModulePart {
  std::unique_ptr<llvm::LLVMContext> context;
  std::unique_ptr<llvm::Module> module;
  bool later = false;  // compiled after the others are linked and callable (predict's, when training)
};

struct EmittedModule {
  std::vector<ModulePart> parts;  // the step's code in two, then predict's (see emit_module)
  Program program;                // slots, arena size, errors; entry points still null
};

// `train` may be null (a spec that minimizes nothing has no train step). Both are planned.
// `check_finite`: the train step checks the new value of every param and state for NaN and
// infinity as it stores it (see Program's errors_after_update).
EmittedModule emit_module(const KernelProgram* train, const KernelProgram& predict, bool check_finite = true);

}  // namespace gradc::codegen
