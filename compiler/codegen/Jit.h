// From emitted modules to machine code: LLVM's O3 pipeline for the host CPU (its features and
// vector width), instruction selection to an object file, then ORC's LLJIT links the objects.
// The train step's two modules (each with about half its kernels) compile on two threads and
// are linked; jit() then returns, and predict's module compiles on a thread of its own (the
// Program's `predict` future). Objects are cached on disk, keyed by the unoptimized modules and
// the host, so that compiling the same spec again skips O3 and instruction selection; the cache
// file, all the modules' objects, is written once predict's are done. Also prints the modules
// and their assembly for `gradc dump`.
//
// A cache file is `<dir>/<key>.o`: the parts' objects, each as its size (u64, little-endian)
// then its bytes; then a 56-byte trailer
//   "gradcobj" | size of what precedes (u64, little-endian) | FNV-1a 64 of it (u64) | key (32 bytes)
// where the key is the SHA-256 of gradc's cache format version, LLVM's version, the target
// triple, CPU and features, the optimization levels, and the modules' bitcode. A file whose
// trailer does not match (truncated, overwritten, another key's) or whose objects do not link
// is deleted and compiled afresh.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "codegen/ModuleEmitter.h"
#include "ir/Stopwatch.h"

namespace gradc::codegen {

// The cache directory the environment names: $GRADC_CACHE_DIR, else $XDG_CACHE_HOME/gradc, else
// $HOME/.cache/gradc. Empty (no cache) when GRADC_CACHE is 0, off, false or no, or none is set.
std::string cache_dir_from_environment();

struct JitOptions {
  std::string cache_dir;  // where objects are cached; empty: no cache
};

// What jit() did: whether the object came from the cache, and its phases' times in ms.
struct JitReport {
  bool cached = false;
  Phases phases;
};

// Optimizes, compiles and links the modules (or links their cached objects); the returned
// Program's train step is callable, its predict once its future is ready, and its `code` keeps
// the JIT (and the machine code) alive.
// The cache is never an error: a directory that cannot be written is no cache.
Program jit(EmittedModule m, const JitOptions& options = {}, JitReport* report = nullptr);

// The modules as LLVM IR text, before and after the O3 pipeline; and the host's assembly.
std::string print_module(const EmittedModule& m);
std::string optimized_ir(EmittedModule m);
std::string host_assembly(EmittedModule m);

}  // namespace gradc::codegen
