// Arena packing: each buffer, with its live range (LiveRanges.h) and its sharing (AliasAnalysis.h)
// settled, gets an offset in the one arena of the step, best fit in order of first use as an
// allocator running the step would; and the checker that proves the packing sound, which the
// tests and the debug pipeline run on every plan.
#include "passes/ArenaPacking.h"

#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include "passes/MemoryPlan.h"
#include "runtime/Format.h"

namespace gradc {

int64_t arena_aligned(int64_t bytes) { return saturating_add(bytes, kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

// Best fit in order of first use, as an allocator would run the step: a buffer's bytes are
// freed after its last kernel (merged with free neighbours), and each new buffer takes the
// smallest free range that holds it, else the free range at the top of the arena grown to fit,
// else new bytes at the top. O(n log n) in buffers: placing each against every buffer live at
// its time (largest first) packed as well on the samples but took 1.3 s on a 10,000-op chain.
int64_t place_buffers(std::vector<ArenaBuffer>& buffers) {
  std::vector<size_t> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {  // by first use, larger first
    const ArenaBuffer &x = buffers[a], &y = buffers[b];
    return x.first != y.first ? x.first < y.first : x.bytes != y.bytes ? x.bytes > y.bytes : a < b;
  });
  std::map<int64_t, int64_t> free_at;                // offset -> bytes of each free range
  std::set<std::pair<int64_t, int64_t>> free_sizes;  // (bytes, offset) of the same ranges
  auto add_free = [&](int64_t at, int64_t bytes) {
    auto next = free_at.find(saturating_add(at, bytes));
    if (next != free_at.end()) {  // merge with the range after
      bytes = saturating_add(bytes, next->second);
      free_sizes.erase({next->second, next->first});
      free_at.erase(next);
    }
    auto prev = free_at.lower_bound(at);
    if (prev != free_at.begin() && saturating_add(std::prev(prev)->first, std::prev(prev)->second) == at) {
      --prev;  // merge with the range before
      free_sizes.erase({prev->second, prev->first});
      at = prev->first, bytes = saturating_add(bytes, prev->second);
      free_at.erase(prev);
    }
    free_at.emplace(at, bytes);
    free_sizes.emplace(bytes, at);
  };
  auto take_free = [&](int64_t at, int64_t bytes) {
    free_at.erase(at);
    free_sizes.erase({bytes, at});
  };
  // Live buffers by their last kernel, the soonest to end first.
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>, std::greater<>> live;
  int64_t top = 0;
  for (size_t i : order) {
    ArenaBuffer& buf = buffers[i];
    while (!live.empty() && live.top().first < buf.first) {
      const ArenaBuffer& done = buffers[live.top().second];
      add_free(done.offset, arena_aligned(done.bytes));
      live.pop();
    }
    int64_t need = arena_aligned(buf.bytes);
    if (auto fit = free_sizes.lower_bound({need, INT64_MIN}); fit != free_sizes.end()) {
      auto [bytes, at] = *fit;
      take_free(at, bytes);
      if (bytes > need) add_free(saturating_add(at, need), bytes - need);
      buf.offset = at;
    } else if (!free_at.empty() && saturating_add(free_at.rbegin()->first, free_at.rbegin()->second) == top) {
      auto [at, bytes] = *free_at.rbegin();  // the free range at the top, too small: grow it
      take_free(at, bytes);
      buf.offset = at;
      top = saturating_add(at, need);
    } else {
      buf.offset = top;
      top = saturating_add(top, need);
    }
    live.emplace(buf.last, i);
  }
  return top;
}

std::vector<std::string> check_plan(const std::vector<ArenaBuffer>& buffers, int64_t arena_bytes) {
  std::vector<std::string> faults;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const ArenaBuffer& a = buffers[i];
    if (a.offset % kArenaAlign != 0) faults.push_back(fmt::format("buffer of value {} at offset {} is not aligned", a.value, a.offset));
    if (a.offset < 0 || saturating_add(a.offset, a.bytes) > arena_bytes)
      faults.push_back(fmt::format("buffer of value {} ({} bytes at {}) leaves the arena of {}", a.value, a.bytes, a.offset, arena_bytes));
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      const ArenaBuffer& b = buffers[j];
      bool same_time = a.first <= b.last && b.first <= a.last;
      bool same_bytes = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes && a.bytes > 0 && b.bytes > 0;
      if (same_time && same_bytes)
        faults.push_back(fmt::format("values {} and {} are live at once (kernels {}..{} and {}..{}) and share bytes "
                                     "({}+{} and {}+{})", a.value, b.value, a.first, a.last, b.first, b.last, a.offset,
                                     a.bytes, b.offset, b.bytes));
    }
  }
  return faults;
}

int64_t peak_live_bytes(const std::vector<ArenaBuffer>& buffers, int32_t end) {
  // A sweep over the kernels: each buffer joins at first, leaves after last.
  std::vector<int64_t> change(static_cast<size_t>(end) + 2, 0);
  for (const ArenaBuffer& b : buffers) {
    change[static_cast<size_t>(b.first)] += arena_aligned(b.bytes);
    change[static_cast<size_t>(b.last) + 1] -= arena_aligned(b.bytes);
  }
  int64_t live = 0, peak = 0;
  for (int32_t t = 0; t <= end; ++t) {
    live += change[static_cast<size_t>(t)];
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace gradc
