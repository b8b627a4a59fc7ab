// Arena packing, the memory plan's last step: offsets for buffers whose live ranges are known,
// in one arena, so that buffers never live at once share bytes. place_buffers and check_plan
// are declared in passes/MemoryPlan.h (the tests and the fuzzer call them); this header has
// what the plan's totals also need: the alignment and the bound no packing can beat.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/Kernel.h"

namespace gradc {

// Every buffer starts at a multiple of 64 bytes (a cache line) and takes a whole number of
// them. Sizes and offsets saturate rather than wrap, so that a model too big for any memory
// gets a huge arena, which the compile's memory check refuses.
constexpr int64_t kArenaAlign = 64;
int64_t arena_aligned(int64_t bytes);

// The most aligned bytes live at once over kernels 0..end: no packing of `buffers` is smaller.
int64_t peak_live_bytes(const std::vector<ArenaBuffer>& buffers, int32_t end);

}  // namespace gradc
