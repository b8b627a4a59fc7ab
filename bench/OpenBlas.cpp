#include "OpenBlas.h"

#include <dlfcn.h>

#include <random>

namespace gradc::benchmark {

namespace {

// cblas.h's enums, by value (the header is not needed to build).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

}  // namespace

std::optional<OpenBlas> OpenBlas::load(int threads) {
  void* handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!handle) return std::nullopt;
  OpenBlas blas;
  blas.handle_ = std::shared_ptr<void>(handle, [](void* h) { dlclose(h); });
  blas.sgemm_ = reinterpret_cast<Sgemm>(dlsym(handle, "cblas_sgemm"));
  if (!blas.sgemm_) return std::nullopt;
  if (auto set_threads = reinterpret_cast<void (*)(int)>(dlsym(handle, "openblas_set_num_threads"))) set_threads(threads);
  if (auto get_threads = reinterpret_cast<int (*)()>(dlsym(handle, "openblas_get_num_threads")))
    blas.threads_ = get_threads();
  if (auto config = reinterpret_cast<char* (*)()>(dlsym(handle, "openblas_get_config"))) blas.config_ = config();
  if (auto core = reinterpret_cast<char* (*)()>(dlsym(handle, "openblas_get_corename"))) blas.core_ = core();
  return blas;
}

std::string OpenBlas::describe() const {
  return fmt::format("{} (core {}, {} thread{})", config_.empty() ? "OpenBLAS" : config_, core_.empty() ? "?" : core_,
                     threads_, threads_ == 1 ? "" : "s");
}

void OpenBlas::sgemm(bool a_transposed, bool b_transposed, int64_t m, int64_t n, int64_t k, const float* a,
                     const float* b, float beta, float* c) const {
  // Row-major: A is [M, K] (lda K), or [K, M] read transposed (lda M); B likewise.
  sgemm_(kRowMajor, a_transposed ? kTrans : kNoTrans, b_transposed ? kTrans : kNoTrans, static_cast<int>(m),
         static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(a_transposed ? m : k), b,
         static_cast<int>(b_transposed ? k : n), beta, c, static_cast<int>(n));
}

StepGemms::StepGemms(const OpenBlas& blas, std::vector<StepGemm> gemms) : blas_(blas) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> value(-1, 1);
  auto random = [&](int64_t count) {
    std::vector<float> v(static_cast<size_t>(count));
    for (float& x : v) x = value(rng);
    return v;
  };
  for (StepGemm& s : gemms) {
    Buffers g;
    bool shared_a = s.op == OpKind::Conv2d || s.op == OpKind::Conv2dInputGrad;  // the weights
    bool shared_c = s.op == OpKind::Conv2dWeightGrad;                            // their gradient
    g.a_stride = shared_a ? 0 : s.m * s.k;
    g.c_stride = shared_c ? 0 : s.m * s.n;
    g.beta = shared_c ? 1.0f : 0.0f;
    g.a = random(shared_a ? s.m * s.k : s.batch * s.m * s.k);
    g.b = random(s.batch * s.k * s.n);
    g.c = random(shared_c ? s.m * s.n : s.batch * s.m * s.n);
    g.shape = std::move(s);
    gemms_.push_back(std::move(g));
  }
}

void StepGemms::run() {
  for (Buffers& g : gemms_) {
    const StepGemm& s = g.shape;
    for (int64_t i = 0; i < s.batch; ++i)
      blas_.sgemm(s.a_transposed, s.b_transposed, s.m, s.n, s.k, g.a.data() + i * g.a_stride,
                  g.b.data() + i * s.k * s.n, g.beta, g.c.data() + i * g.c_stride);
  }
}

}  // namespace gradc::benchmark
