// Links gradc_runtime_core alone (no LLVM, no compiler library): what an ahead-of-time train
// step will link. A checkpoint and an array round-trip through their files, the thread pool
// runs tasks, and initializers fill a param. tests/CMakeLists.txt also checks its link for LLVM.
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "gradc/Init.h"
#include "gradc/ThreadPool.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("gradc_runtime_core_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  try {
    gradc::Tensor w = gradc::Tensor::of<float>({2, 3}, {1, 2, 3, 4, 5, 6});
    gradc::Tensor step = gradc::Tensor::of<int32_t>({}, {7});
    gradc::save_safetensors((dir / "ckpt.safetensors").string(), {{"w", &w}, {"adam.step", &step}});
    auto loaded = gradc::load_safetensors((dir / "ckpt.safetensors").string());
    check(loaded.size() == 2 && loaded.at("w") == w && loaded.at("adam.step") == step, "safetensors round trip");

    gradc::save_npy((dir / "w.npy").string(), w);
    check(gradc::load_npy((dir / "w.npy").string()) == w, "npy round trip");

    gradc::ThreadPool pool(2);
    std::vector<int> done(64, 0);
    auto task = [](void* ctx, int64_t begin, int64_t end) -> int32_t {
      for (int64_t i = begin; i < end; ++i) (*static_cast<std::vector<int>*>(ctx))[static_cast<size_t>(i)] += 1;
      return 0;
    };
    int32_t status = pool.run(task, &done, 64);
    check(status == 0 && done == std::vector<int>(64, 1), "thread pool ran every task once");

    gradc::Tensor p = gradc::initialize({"glorot_uniform", {}}, {gradc::DType::F32, {4, 4}}, 42, "w1");
    bool nonzero = false;
    for (int i = 0; i < 16; ++i) nonzero |= p.as<float>()[i] != 0;
    check(nonzero, "glorot_uniform fills a param");
  } catch (const gradc::Error& e) {
    std::printf("FAILED: %s\n", e.what());
    ++failures;
  }
  fs::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
