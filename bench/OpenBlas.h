// OpenBLAS, loaded at run time: the SGEMM that gradc_bench times on a step's GEMM shapes.
//
// dlopen("libopenblas.so.0") reads OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS as the library
// loads, so set them first (gradc_bench does, before anything loads a BLAS). Not installed:
// load() returns nothing and the table says n/a.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "driver/Bench.h"
#include "gradc/gradc.h"

namespace gradc::benchmark {

class OpenBlas {
 public:
  static std::optional<OpenBlas> load(int threads);

  std::string describe() const;  // "OpenBLAS 0.3.21 ... (core SkylakeX, 1 thread)"

  // Row-major C = op(A) . op(B), as cblas_sgemm(CblasRowMajor, ...) with alpha 1.
  void sgemm(bool a_transposed, bool b_transposed, int64_t m, int64_t n, int64_t k, const float* a,
             const float* b, float beta, float* c) const;

 private:
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
  std::shared_ptr<void> handle_;
  Sgemm sgemm_ = nullptr;
  std::string config_, core_;
  int threads_ = 1;
};

// The GEMMs of one step, on buffers of their own with random values: call run() once per step.
class StepGemms {
 public:
  StepGemms(const OpenBlas& blas, std::vector<StepGemm> gemms);
  void run();

 private:
  struct Buffers {
    StepGemm shape;
    std::vector<float> a, b, c;
    int64_t a_stride = 0, c_stride = 0;  // per batch element; 0 for a conv's weights
    float beta = 0;                       // conv2d_weight_grad sums over the images
  };
  const OpenBlas& blas_;
  std::vector<Buffers> gemms_;
};

}  // namespace gradc::benchmark
