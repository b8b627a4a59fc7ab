// From an emitted module to machine code: LLVM's O3 pipeline for the host CPU (its features
// and vector width), then ORC's LLJIT. Also prints the module and its assembly for `gradc dump`.
#pragma once

#include <string>

#include "codegen/ModuleEmitter.h"

namespace gradc::codegen {

// Optimizes and links the module; the returned Program's entry points are callable and its
// `code` keeps the JIT (and so the machine code) alive.
Program jit(EmittedModule m);

// The module as LLVM IR text, before and after the O3 pipeline; and the host's assembly.
std::string print_module(const EmittedModule& m);
std::string optimized_ir(EmittedModule m);
std::string host_assembly(EmittedModule m);

}  // namespace gradc::codegen
