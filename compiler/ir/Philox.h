// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// counter-based generator JAX and PyTorch use: four 32-bit words of random bits from a counter
// and a key, in ten rounds of multiply-xor. dropout_mask draws element i of step s of op `stream`
// as philox(counter = {i, i >> 32, s, 0}, key = {seed, stream}); codegen emits the same rounds
// (codegen/OpEmitters.cpp), so the JIT and the interpreter draw the same bits.
#pragma once

#include <array>
#include <cstdint>

namespace gradc {

inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint64_t kMul0 = 0xD2511F53, kMul1 = 0xCD9E8D57;
  constexpr uint32_t kWeyl0 = 0x9E3779B9, kWeyl1 = 0xBB67AE85;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = kMul0 * c[0], p1 = kMul1 * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    k = {k[0] + kWeyl0, k[1] + kWeyl1};
  }
  return c;
}

// A uniform draw in [0, 1) from the top 24 bits of a word: exact in f32.
inline double unit_interval(uint32_t word) { return static_cast<double>(word >> 8) * (1.0 / 16777216.0); }

}  // namespace gradc
