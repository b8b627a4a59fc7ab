// The FMA peak of this machine, measured: what "% of peak" in `gradc bench` is a percentage of.
//
// 1. Pick the widest FMA this CPU runs (AVX-512, else AVX2+FMA, else plain C++), at run time.
// 2. Run 16 independent chains acc = acc * a + b in vector registers: 16 covers an FMA latency
//    of 4 cycles on 2 pipes twice over, so the pipes, not the chains, are the limit.
// 3. Calibrate the loop to about 40 ms, keep the best of 5 runs (the machine may be shared), count
//    2 FLOPs per lane per FMA.
// With T threads, T copies run at once (one per thread) and their FLOPs add up.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "driver/Bench.h"
#include "gradc/gradc.h"

namespace gradc {

namespace {

constexpr int kChains = 16;
// The chains converge to b / (1 - a) = 1: no overflow, no denormals, however long they run.
constexpr float kA = 0.999999f, kB = 1e-6f;

std::atomic<float> sink{0};  // keeps the chains' results alive

struct FmaLoop {
  const char* isa;
  int lanes;                       // floats per FMA
  float (*run)(int64_t iterations);  // kChains FMAs per iteration
};

__attribute__((target("avx512f,fma"))) float fma_chains_avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(kA), b = _mm512_set1_ps(kB);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 16  // every chain in a register of its own, whatever -O level the build uses
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];  // not _mm512_reduce_add_ps: GCC 12's warns -Wuninitialized inside it
  _mm512_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(kA), b = _mm256_set1_ps(kB);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 16  // every chain in a register of its own, whatever -O level the build uses
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

// No FMA: a multiply and an add per chain step (2 FLOPs, as an FMA counts), SSE2 at best.
float fma_chains_generic(int64_t iterations) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 16
    for (float& v : acc) v = v * kA + kB;
  float total = 0;
  for (float v : acc) total += v;
  return total;
}

FmaLoop host_kernel() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {"AVX-512", 16, fma_chains_avx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"AVX2+FMA", 8, fma_chains_avx2};
  return {"scalar", 1, fma_chains_generic};
}

using Clock = std::chrono::steady_clock;

// Seconds for `threads` threads to each run `iterations`, started together.
double timed(const FmaLoop& k, int threads, int64_t iterations) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  auto body = [&] {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    float r = k.run(iterations);
    sink.store(sink.load(std::memory_order_relaxed) + r, std::memory_order_relaxed);
  };
  std::vector<std::thread> others;
  for (int t = 1; t < threads; ++t) others.emplace_back(body);
  while (ready.load() < threads - 1) std::this_thread::yield();
  ready.fetch_add(1);
  Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  float r = k.run(iterations);
  sink.store(sink.load(std::memory_order_relaxed) + r, std::memory_order_relaxed);
  for (std::thread& t : others) t.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

FmaPeak measure_fma_peak(int threads) {
  threads = std::max(threads, 1);
  FmaLoop k = host_kernel();
  // Calibrate on one thread: grow the loop until it takes 5 ms, then scale it to about 40 ms.
  int64_t iterations = 1 << 14;
  double seconds = timed(k, 1, iterations);
  while (seconds < 5e-3) {
    iterations *= 4;
    seconds = timed(k, 1, iterations);
  }
  iterations = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iterations) * 40e-3 / seconds));
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    double s = timed(k, threads, iterations);
    double flops = 2.0 * k.lanes * kChains * static_cast<double>(iterations) * threads;
    best = std::max(best, flops / s / 1e9);
  }
  return {.gflops = best, .threads = threads, .isa = k.isa};
}

double measure_fma_peak_gflops(int threads) { return measure_fma_peak(threads).gflops; }

}  // namespace gradc
