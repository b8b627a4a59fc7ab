// Vectorized conv2d, its adjoints and pooling (the plan is at the top of ConvEmitters.h).
//
// A spatial axis of an output reads its source through an AxisMap: output position o at tap t
// reads source position (a·o + b·t + c) / d where that divides exactly and lands inside the
// source. conv2d and its weight gradient read x at (s·o + t − p); the input gradient reads dy
// at (o − t + p) / s, which gathers what conv2d scattered (for s > 1 each phase o mod s of the
// output rows reads its own subset of the kernel rows, known here). Rows are scalars: a row
// that falls in the padding reads a constant row of zeros instead (one pointer select per row
// and kernel row, outside the vector work). Columns are vector lanes: a chunk of lanes at a
// known position reads through a constant mask and constant offsets (one load when they are
// contiguous, a wide load and a shuffle when they are strided, a gather otherwise); chunks
// whose every lane reads inside at every tap run in a loop.
#include "codegen/ConvEmitters.h"

#include <algorithm>
#include <limits>
#include <optional>

#include <llvm/IR/Intrinsics.h>
#include <llvm/TargetParser/Host.h>

namespace gradc::codegen {

namespace {

using Values = std::vector<llvm::Value*>;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0); }

// The host's widest vector registers: their bytes and how many there are.
struct HostVectors {
  int64_t bytes = 16, registers = 16;
};
const HostVectors& host_vectors() {
  static const HostVectors host = [] {
    auto features = llvm::sys::getHostCPUFeatures();
    if (features.lookup("avx512f")) return HostVectors{64, 32};
    if (features.lookup("avx")) return HostVectors{32, 16};
    return HostVectors{16, 16};
  }();
  return host;
}

// The lanes of one vector that touch memory, and the element offset (from a base) each touches.
struct LaneMap {
  std::vector<int64_t> off;
  std::vector<bool> on;
  bool any() const { return std::find(on.begin(), on.end(), true) != on.end(); }
  bool all() const { return std::find(on.begin(), on.end(), false) == on.end(); }
};

// Lanes [0, len) at offsets 0, 1, ...: a contiguous stretch of an output row.
LaneMap contiguous(int64_t lanes, int64_t len) {
  LaneMap m;
  for (int64_t l = 0; l < lanes; ++l) {
    m.off.push_back(l);
    m.on.push_back(l < len);
  }
  return m;
}

// Vectors of one dtype, as wide as the host's registers, and their loads and stores.
class Vectors {
 public:
  Vectors(KernelBuilder& k, DType dt)
      : k_(k), elem_(k.elem(dt)), lanes(host_vectors().bytes / (dt == DType::F64 ? 8 : 4)),
        type_(llvm::FixedVectorType::get(elem_, static_cast<unsigned>(lanes))) {}

  llvm::Value* zero() const { return llvm::Constant::getNullValue(type_); }
  llvm::Value* splat(llvm::Value* s) const { return k_.b.CreateVectorSplat(static_cast<unsigned>(lanes), s); }
  llvm::Value* fma(llvm::Value* a, llvm::Value* b, llvm::Value* c) const {
    return k_.b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {type_}, {a, b, c});
  }
  // Adds up the lanes one after the other (an ordered reduction: the same sum on every run).
  llvm::Value* sum(llvm::Value* v) const { return k_.b.CreateFAddReduce(llvm::ConstantFP::get(elem_, 0.0), v); }

  // buf[base + m.off[l]] in the lanes that are on, 0 in the others.
  llvm::Value* load(const Buffer& buf, llvm::Value* base, const LaneMap& m) const {
    if (buf.constant) return m.any() ? k_.b.CreateSelect(mask(m.on), splat(buf.constant), zero()) : zero();
    return load_from(buf.ptr, base, m);
  }
  // The same from the elements at `ptr`.
  llvm::Value* load_from(llvm::Value* ptr, llvm::Value* base, const LaneMap& m) const {
    auto& b = k_.b;
    if (!m.any()) return zero();
    Pattern p = pattern(m);
    if (p.step == 1) {
      llvm::Value* at = b.CreateGEP(elem_, ptr, b.CreateAdd(base, k_.index(p.first)));
      if (m.all()) return b.CreateAlignedLoad(type_, at, align());
      return b.CreateMaskedLoad(type_, at, align(), mask(m.on), zero());
    }
    if (p.step > 1 && p.step <= kMaxStride) {  // one wide load, then the lanes it needs
      auto* wide = llvm::FixedVectorType::get(elem_, static_cast<unsigned>(lanes * p.step));
      llvm::Value* at = b.CreateGEP(elem_, ptr, b.CreateAdd(base, k_.index(p.first)));
      llvm::Value* all = b.CreateMaskedLoad(wide, at, align(), mask(spread(m.on, p.step)),
                                            llvm::Constant::getNullValue(wide));
      std::vector<int> pick;
      for (int64_t l = 0; l < lanes; ++l) pick.push_back(static_cast<int>(l * p.step));
      return b.CreateShuffleVector(all, pick);
    }
    return b.CreateMaskedGather(type_, pointers(ptr, base, m), align(), mask(m.on), zero());
  }

  // buf[base + m.off[l]] = v[l] in the lanes that are on (distinct offsets).
  void store(const Buffer& buf, llvm::Value* base, const LaneMap& m, llvm::Value* v) const {
    auto& b = k_.b;
    if (!m.any()) return;
    Pattern p = pattern(m);
    if (p.step == 1) {
      llvm::Value* at = b.CreateGEP(elem_, buf.ptr, b.CreateAdd(base, k_.index(p.first)));
      if (m.all()) b.CreateAlignedStore(v, at, align());
      else b.CreateMaskedStore(v, at, align(), mask(m.on));
      return;
    }
    if (p.step > 1 && p.step <= kMaxStride) {  // spread over a wide vector, stored under a mask
      std::vector<int> put;
      for (int64_t w = 0; w < lanes * p.step; ++w) put.push_back(w % p.step == 0 ? static_cast<int>(w / p.step) : -1);
      llvm::Value* wide = b.CreateShuffleVector(v, put);
      llvm::Value* at = b.CreateGEP(elem_, buf.ptr, b.CreateAdd(base, k_.index(p.first)));
      b.CreateMaskedStore(wide, at, align(), mask(spread(m.on, p.step)));
      return;
    }
    b.CreateMaskedScatter(v, pointers(buf.ptr, base, m), align(), mask(m.on));
  }

  KernelBuilder& k_;
  llvm::Type* elem_;
  const int64_t lanes;

 private:
  static constexpr int64_t kMaxStride = 4;

  // The lanes that are on read first + l * step (step 0: no such pattern).
  struct Pattern {
    int64_t first = 0, step = 0;
  };
  Pattern pattern(const LaneMap& m) const {
    std::vector<int64_t> on;
    for (int64_t l = 0; l < lanes; ++l)
      if (m.on[static_cast<size_t>(l)]) on.push_back(l);
    if (on.size() == 1) return {m.off[static_cast<size_t>(on[0])] - on[0], 1};
    int64_t l0 = on[0], l1 = on[1];
    int64_t d = m.off[static_cast<size_t>(l1)] - m.off[static_cast<size_t>(l0)];
    if (d <= 0 || d % (l1 - l0) != 0) return {};
    int64_t step = d / (l1 - l0), first = m.off[static_cast<size_t>(l0)] - l0 * step;
    for (int64_t l : on)
      if (m.off[static_cast<size_t>(l)] != first + l * step) return {};
    return {first, step};
  }

  llvm::Align align() const { return llvm::Align(elem_->getPrimitiveSizeInBits() / 8); }

  llvm::Constant* mask(const std::vector<bool>& on) const {
    std::vector<llvm::Constant*> bits;
    for (bool v : on) bits.push_back(k_.b.getInt1(v));
    return llvm::ConstantVector::get(bits);
  }
  // Lane l of `on` as lane l * step of a vector `step` times as wide.
  std::vector<bool> spread(const std::vector<bool>& on, int64_t step) const {
    std::vector<bool> wide(on.size() * static_cast<size_t>(step), false);
    for (size_t l = 0; l < on.size(); ++l) wide[l * static_cast<size_t>(step)] = on[l];
    return wide;
  }
  llvm::Value* pointers(llvm::Value* ptr, llvm::Value* base, const LaneMap& m) const {
    int64_t safe = 0;  // lanes that are off point where an on lane does
    for (size_t l = 0; l < m.on.size(); ++l)
      if (m.on[l]) safe = m.off[l];
    std::vector<llvm::Constant*> offs;
    for (size_t l = 0; l < m.on.size(); ++l) offs.push_back(k_.b.getInt64(static_cast<uint64_t>(m.on[l] ? m.off[l] : safe)));
    llvm::Value* at = k_.b.CreateAdd(k_.b.CreateVectorSplat(static_cast<unsigned>(lanes), base), llvm::ConstantVector::get(offs));
    return k_.b.CreateGEP(elem_, ptr, at);
  }

  llvm::FixedVectorType* type_;
};

// How position o of one spatial axis of the output reads its source at tap t.
struct AxisMap {
  int64_t a = 1, b = 1, c = 0, d = 1;
  int64_t size = 0;  // of the source
  int64_t out = 0;   // of the output
  int64_t taps = 0;  // of the kernel

  // (a·o + b·t + c) / d, when the division is exact and the result lies in [0, size).
  std::optional<int64_t> src(int64_t o, int64_t t) const {
    int64_t v = a * o + b * t + c;
    if (v - floor_div(v, d) * d != 0) return std::nullopt;
    v = floor_div(v, d);
    if (v < 0 || v >= size) return std::nullopt;
    return v;
  }
  // Position o reads inside the source at every tap whose division is exact.
  bool interior(int64_t o) const {
    for (int64_t t = 0; t < taps; ++t) {
      int64_t v = a * o + b * t + c;
      if (v - floor_div(v, d) * d == 0 && !src(o, t)) return false;
    }
    return true;
  }
};

// `count` output rows phase + d·(m + r), r < count, of one phase of the row map (every row
// when d is 1).
struct RowTile {
  int64_t phase = 0, count = 1;
  llvm::Value* m = nullptr;
};

// The output row of row r of the tile.
llvm::Value* out_row(KernelBuilder& k, const AxisMap& map, const RowTile& rows, int64_t r) {
  return k.b.CreateAdd(k.b.CreateMul(rows.m, k.index(map.d)), k.index(rows.phase + map.d * r));
}

// The source row that row r of a tile reads at tap t, and whether it lies inside the source;
// no row when the tile's phase never reads tap t.
struct SrcRow {
  llvm::Value* row = nullptr;
  llvm::Value* inside = nullptr;
  bool never() const {  // known here to read nothing
    auto* c = llvm::dyn_cast_or_null<llvm::ConstantInt>(inside);
    return !row || (c && c->isZero());
  }
};
SrcRow src_row(KernelBuilder& k, const AxisMap& map, const RowTile& rows, int64_t r, int64_t t) {
  int64_t q = map.a * rows.phase + map.b * t + map.c;
  if (q - floor_div(q, map.d) * map.d != 0) return {};
  q = floor_div(q, map.d);
  llvm::Value* row = k.b.CreateAdd(k.b.CreateMul(rows.m, k.index(map.a)), k.index(map.a * r + q));
  return {row, k.b.CreateICmpULT(row, k.index(map.size))};  // 0 <= row < size
}

// Calls tile() for tiles of `per_tile` rows (a loop over them) and one of the rest, per phase.
void for_row_tiles(KernelBuilder& k, const AxisMap& map, int64_t per_tile, const std::function<void(const RowTile&)>& tile) {
  for (int64_t phase = 0; phase < std::min(map.d, map.out); ++phase) {
    int64_t rows = (map.out - phase + map.d - 1) / map.d, full = rows / per_tile;
    if (full == 1) tile({phase, per_tile, k.index(0)});
    else k.rolled_loop(full, [&](llvm::Value* i) { tile({phase, per_tile, k.b.CreateMul(i, k.index(per_tile))}); });
    if (rows % per_tile) tile({phase, rows % per_tile, k.index(full * per_tile)});
  }
}

// `len` lanes of output columns from ow0. `fixed` holds ow0 when it is known here; otherwise
// the chunk is interior (every lane on, every tap inside, d = 1), like the chunk at `like`.
struct Chunk {
  llvm::Value* ow0 = nullptr;
  std::optional<int64_t> fixed;
  int64_t like = 0;
  int64_t len = 0;
};

// The source columns the chunk's lanes read at tap t, from the base column_base() returns.
LaneMap src_columns(const AxisMap& map, const Chunk& ch, int64_t lanes, int64_t t) {
  LaneMap m;
  int64_t ow0 = ch.fixed ? *ch.fixed : ch.like;
  for (int64_t l = 0; l < lanes; ++l) {
    std::optional<int64_t> s = l < ch.len ? map.src(ow0 + l, t) : std::nullopt;
    m.on.push_back(s.has_value());
    m.off.push_back(s ? *s - (ch.fixed ? 0 : map.a * ch.like) : 0);
  }
  return m;
}
llvm::Value* column_base(KernelBuilder& k, const AxisMap& map, const Chunk& ch) {
  return ch.fixed ? k.index(0) : k.b.CreateMul(ch.ow0, k.index(map.a));
}

// Calls body() for chunks of `lanes` output columns that cover the row: runs of interior chunks
// in a loop, the others one by one.
void for_chunks(KernelBuilder& k, const AxisMap& map, int64_t lanes, const std::function<void(const Chunk&)>& body) {
  int64_t chunks = (map.out + lanes - 1) / lanes;
  auto interior = [&](int64_t q) {
    if (map.d != 1 || (q + 1) * lanes > map.out) return false;
    for (int64_t l = 0; l < lanes; ++l)
      if (!map.interior(q * lanes + l)) return false;
    return true;
  };
  for (int64_t q = 0; q < chunks;) {
    int64_t run = 0;
    while (q + run < chunks && interior(q + run)) ++run;
    if (run >= 2) {
      k.rolled_loop(run, [&](llvm::Value* i) {
        body({k.b.CreateMul(k.b.CreateAdd(i, k.index(q)), k.index(lanes)), std::nullopt, q * lanes, lanes});
      });
      q += run;
      continue;
    }
    int64_t ow0 = q * lanes;
    body({k.index(ow0), ow0, 0, std::min(lanes, map.out - ow0)});
    ++q;
  }
}

// Calls body(first, count) for blocks of `per_block` of `total` (a loop over the full blocks,
// then the rest).
void for_blocks(KernelBuilder& k, int64_t total, int64_t per_block, const std::function<void(llvm::Value*, int64_t)>& body) {
  int64_t full = total / per_block;
  if (full == 1) body(k.index(0), per_block);
  else k.rolled_loop(full, [&](llvm::Value* i) { body(k.b.CreateMul(i, k.index(per_block)), per_block); });
  if (total % per_block) body(k.index(full * per_block), total % per_block);
}

// y[n, j, oh, ow] = sum over i, kh, kw of w(j, i, kh, kw) · x[n, i, rows(oh, kh), cols(ow, kw)]
// for x [N, I, H, W] and y [N, J, OH, OW], w read at strides w_strides.
struct Correlation {
  Buffer x, w, y;
  int64_t batch = 0, in_ch = 0, out_ch = 0;
  std::array<int64_t, 4> w_strides{};
  AxisMap rows, cols;
  ConvEpilogue epilogue;  // when set, takes each y[n, j, oh, ow] instead of the store
};

// The tile of a correlation: output channels × rows in registers (× one chunk of lanes). Per
// input channel it loads KW vectors from each of rows + KH − 1 input rows and broadcasts
// KH·KW weights per channel, for channels · rows · KH · KW multiply-adds: the larger the
// tile the fewer loads per multiply-add, as long as the accumulators, one row's vectors and a
// broadcast fit in the registers. Blocks that leave a remainder cost a second copy of the code.
struct TileShape {
  int64_t channels = 1, rows = 1;
};
TileShape tile_shape(const Correlation& c) {
  const int64_t regs = host_vectors().registers, KH = c.rows.taps, KW = c.cols.taps;
  const int64_t per_phase = (c.rows.out + c.rows.d - 1) / c.rows.d;
  TileShape best;
  double best_score = 0;
  for (int64_t r = 1; r <= std::min<int64_t>(per_phase, 8); ++r)
    for (int64_t t = 1; t <= std::min<int64_t>(c.out_ch, 16); ++t) {
      if (t * r + r + 4 > regs || c.out_ch % t != 0) continue;
      double loads = static_cast<double>((r + KH - 1) * KW + t * KH * KW);
      double score = static_cast<double>(t * r * KH * KW) / loads * (per_phase % r ? 0.9 : 1.0);
      if (score > best_score) best_score = score, best = {t, r};
    }
  return best;
}

// A finished tile through the epilogue: each register of sums as it is; or, for an epilogue of
// single sums, its sums to `tile_sums` (tile t, r at (t·count + r)·lanes), then the epilogue's
// code once, in loops over the tile's channels, rows and the chunk's lanes (written out per
// accumulator it would be channels·rows·lanes copies of it per kind of tile).
// Every loop stays rolled: LLVM then vectorizes the loop over the lanes, where the elements are
// contiguous; unrolled, it vectorized the loop over rows instead, with gathers and scatters
// (conv + bias + relu of the CNN's first layer took three to four times as long as it does now).
void run_epilogue(KernelBuilder& k, const Vectors& v, const Correlation& c, llvm::Value* tile_sums, const Values& acc,
                  llvm::Value* n, llvm::Value* j0, int64_t channels, const RowTile& rows, const Chunk& ch) {
  auto& b = k.b;
  if (c.epilogue.lanes) {
    for (int64_t t = 0; t < channels; ++t)
      for (int64_t r = 0; r < rows.count; ++r)
        c.epilogue.lanes({n, b.CreateAdd(j0, k.index(t)), out_row(k, c.rows, rows, r), ch.ow0},
                         k.get(acc[static_cast<size_t>(t * rows.count + r)]), ch.len);
    return;
  }
  for (int64_t i = 0; i < channels * rows.count; ++i)
    b.CreateAlignedStore(k.get(acc[static_cast<size_t>(i)]), b.CreateConstInBoundsGEP1_64(v.elem_, tile_sums, static_cast<uint64_t>(i * v.lanes)),
                         llvm::Align(64));
  k.rolled_loop(channels, [&](llvm::Value* t) {
    k.rolled_loop(rows.count, [&](llvm::Value* r) {
      // out_row() with r known only when the code runs
      llvm::Value* oh = b.CreateAdd(b.CreateMul(b.CreateAdd(rows.m, r), k.index(c.rows.d)), k.index(rows.phase));
      llvm::Value* sums = b.CreateMul(b.CreateAdd(b.CreateMul(t, k.index(rows.count)), r), k.index(v.lanes));
      k.rolled_loop(ch.len, [&](llvm::Value* l) {
        llvm::Value* sum = b.CreateLoad(v.elem_, b.CreateInBoundsGEP(v.elem_, tile_sums, b.CreateAdd(sums, l)));
        c.epilogue.each({n, b.CreateAdd(j0, t), oh, b.CreateAdd(ch.ow0, l)}, sum);
      });
    });
  });
}

void correlate(KernelBuilder& k, const Correlation& c) {
  Vectors v(k, c.y.type.dtype);
  auto& b = k.b;
  const int64_t H = c.rows.size, W = c.cols.size, OH = c.rows.out, OW = c.cols.out;
  const int64_t KH = c.rows.taps, KW = c.cols.taps;
  TileShape tile = tile_shape(c);
  // What a row of x reads in the padding: W zeros, with a margin on either side that the
  // lanes a mask turns off may point into (a masked load whose off lanes cross into an unmapped
  // page still works, but through a microcode assist that costs hundreds of cycles).
  const int64_t margin = 8 * v.lanes;
  auto* zeros_type = llvm::ArrayType::get(v.elem_, static_cast<uint64_t>(W + 2 * margin));
  auto* zeros = new llvm::GlobalVariable(*k.fn->getParent(), zeros_type, /*isConstant=*/true, llvm::GlobalValue::PrivateLinkage,
                                         llvm::ConstantAggregateZero::get(zeros_type), "conv.zero_row");
  zeros->setAlignment(llvm::Align(64));
  llvm::Value* zero_row = b.CreateConstInBoundsGEP1_64(v.elem_, zeros, static_cast<uint64_t>(margin));
  // The epilogue's tile: every accumulator of the largest tile, on the stack.
  llvm::Value* tile_sums = nullptr;
  if (c.epilogue.each && !c.epilogue.lanes) {
    llvm::IRBuilder<> at_entry(&k.fn->getEntryBlock(), k.fn->getEntryBlock().begin());
    auto* type = llvm::ArrayType::get(v.elem_, static_cast<uint64_t>(tile.channels * tile.rows * v.lanes));
    auto* buffer = at_entry.CreateAlloca(type);
    buffer->setAlignment(llvm::Align(64));
    tile_sums = buffer;
  }
  k.rolled_loop(c.batch, [&](llvm::Value* n) {
    llvm::Value* x_n = b.CreateMul(n, k.index(c.in_ch * H * W));
    for_blocks(k, c.out_ch, tile.channels, [&](llvm::Value* j0, int64_t channels) {
      for_row_tiles(k, c.rows, tile.rows, [&](const RowTile& rows) {
        for_chunks(k, c.cols, v.lanes, [&](const Chunk& ch) {
          std::vector<llvm::Value*> acc;
          for (int64_t i = 0; i < channels * rows.count; ++i) acc.push_back(k.local(v.zero()));
          llvm::Value* col0 = column_base(k, c.cols, ch);
          std::vector<LaneMap> taps;
          for (int64_t kw = 0; kw < KW; ++kw) taps.push_back(src_columns(c.cols, ch, v.lanes, kw));
          k.rolled_loop(c.in_ch, [&](llvm::Value* i) {
            llvm::Value* x_i = b.CreateAdd(x_n, b.CreateMul(i, k.index(H * W)));
            llvm::Value* w_i = b.CreateAdd(b.CreateMul(j0, k.index(c.w_strides[0])), b.CreateMul(i, k.index(c.w_strides[1])));
            for (int64_t kh = 0; kh < KH; ++kh) {
              // Each row's elements, or a row of zeros where it reads the padding.
              Values row_ptr(static_cast<size_t>(rows.count)), inside(row_ptr.size());
              for (int64_t r = 0; r < rows.count; ++r) {
                SrcRow src = src_row(k, c.rows, rows, r, kh);
                if (src.never()) continue;
                inside[static_cast<size_t>(r)] = src.inside;
                if (c.x.constant) continue;
                llvm::Value* at = b.CreateGEP(v.elem_, c.x.ptr, b.CreateAdd(x_i, b.CreateMul(src.row, k.index(W))));
                row_ptr[static_cast<size_t>(r)] = b.CreateSelect(src.inside, at, zero_row);
              }
              for (int64_t kw = 0; kw < KW; ++kw) {
                const LaneMap& lanes = taps[static_cast<size_t>(kw)];
                if (!lanes.any()) continue;
                Values xv(inside.size());
                for (size_t r = 0; r < inside.size(); ++r)
                  if (inside[r])
                    xv[r] = c.x.constant ? b.CreateSelect(inside[r], v.load(c.x, col0, lanes), v.zero())
                                         : v.load_from(row_ptr[r], col0, lanes);
                for (int64_t t = 0; t < channels; ++t) {
                  int64_t w_off = t * c.w_strides[0] + kh * c.w_strides[2] + kw * c.w_strides[3];
                  llvm::Value* wv = v.splat(k.load(c.w, b.CreateAdd(w_i, k.index(w_off))));
                  for (size_t r = 0; r < xv.size(); ++r) {
                    if (!xv[r]) continue;
                    llvm::Value* a = acc[static_cast<size_t>(t * rows.count) + r];
                    k.set(a, v.fma(wv, xv[r], k.get(a)));
                  }
                }
              }
            }
          });
          LaneMap out = contiguous(v.lanes, ch.len);
          if (c.epilogue) return run_epilogue(k, v, c, tile_sums, acc, n, j0, channels, rows, ch);
          for (int64_t t = 0; t < channels; ++t)
            for (int64_t r = 0; r < rows.count; ++r) {
              llvm::Value* plane = b.CreateAdd(b.CreateMul(n, k.index(c.out_ch)), b.CreateAdd(j0, k.index(t)));
              llvm::Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(plane, k.index(OH)), out_row(k, c.rows, rows, r)), k.index(OW)), ch.ow0);
              v.store(c.y, at, out, k.get(acc[static_cast<size_t>(t * rows.count + r)]));
            }
        });
      });
    });
  });
}

// The row and column maps of conv2d (stride s, padding p): x at s·o + t − p.
std::pair<AxisMap, AxisMap> forward_maps(const Node& n, const Shape& xs, const Shape& ws, const Shape& ys) {
  const std::vector<int64_t>& s = n.attrs.get("stride").as_ints();
  const std::vector<int64_t>& p = n.attrs.get("padding").as_ints();
  return {AxisMap{s[0], 1, -p[0], 1, xs[2], ys[2], ws[2]}, AxisMap{s[1], 1, -p[1], 1, xs[3], ys[3], ws[3]}};
}

// A pool's maps: x at s·o + t (no padding; every window lies inside).
std::pair<AxisMap, AxisMap> pool_maps(const Node& n, const Shape& xs, const Shape& ys) {
  const std::vector<int64_t>& kern = n.attrs.get("kernel").as_ints();
  const std::vector<int64_t>& s = n.attrs.get("stride").as_ints();
  return {AxisMap{s[0], 1, 0, 1, xs[2], ys[2], kern[0]}, AxisMap{s[1], 1, 0, 1, xs[3], ys[3], kern[1]}};
}

// Calls window(base row index of x, y row offset, chunk) for every output row chunk of a pool.
void pool_chunks(KernelBuilder& k, const AxisMap& rows, const AxisMap& cols, int64_t planes, int64_t lanes,
                 const std::function<void(llvm::Value* plane, llvm::Value* oy, const Chunk& ch)>& window) {
  k.rolled_loop(planes, [&](llvm::Value* plane) {
    k.rolled_loop(rows.out, [&](llvm::Value* oy) { for_chunks(k, cols, lanes, [&](const Chunk& ch) { window(plane, oy, ch); }); });
  });
}

// The element offset of x's row s·oy + i in `plane`, plus the chunk's column base.
llvm::Value* window_row(KernelBuilder& k, const AxisMap& rows, const AxisMap& cols, llvm::Value* plane, llvm::Value* oy,
                        int64_t i, const Chunk& ch) {
  auto& b = k.b;
  llvm::Value* row = b.CreateAdd(b.CreateMul(plane, k.index(rows.size)), b.CreateAdd(b.CreateMul(oy, k.index(rows.a)), k.index(i)));
  return b.CreateAdd(b.CreateMul(row, k.index(cols.size)), column_base(k, cols, ch));
}

llvm::Value* y_row(KernelBuilder& k, const AxisMap& rows, const AxisMap& cols, llvm::Value* plane, llvm::Value* oy, const Chunk& ch) {
  auto& b = k.b;
  return b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(plane, k.index(rows.out)), oy), k.index(cols.out)), ch.ow0);
}

// dx of a pool: contribution(tap) for each tap of each window, added where windows overlap,
// stored where they do not (after zeros where some element is in no window).
void pool_grad(KernelBuilder& k, const Node& n, const Buffer& dx, const Shape& ys,
               const std::function<void(Vectors&, llvm::Value* plane, llvm::Value* oy, const Chunk& ch,
                                        const std::function<void(int64_t i, int64_t j, llvm::Value* contribution)>& put)>& windows) {
  Vectors v(k, dx.type.dtype);
  auto [rows, cols] = pool_maps(n, dx.type.shape, ys);
  bool overlap = rows.a < rows.taps || cols.a < cols.taps;
  bool gaps = rows.a > rows.taps || cols.a > cols.taps || (rows.out - 1) * rows.a + rows.taps < rows.size ||
              (cols.out - 1) * cols.a + cols.taps < cols.size;
  if (overlap || gaps) {
    llvm::Value* zero = llvm::Constant::getNullValue(v.elem_);
    k.loop(dx.numel(), [&](llvm::Value* i) { k.store(dx, i, zero); });  // a memset
  }
  pool_chunks(k, rows, cols, ys[0] * ys[1], v.lanes, [&](llvm::Value* plane, llvm::Value* oy, const Chunk& ch) {
    windows(v, plane, oy, ch, [&](int64_t i, int64_t j, llvm::Value* contribution) {
      llvm::Value* at = window_row(k, rows, cols, plane, oy, i, ch);
      LaneMap lanes = src_columns(cols, ch, v.lanes, j);
      if (overlap) contribution = k.b.CreateFAdd(v.load(dx, at, lanes), contribution);
      v.store(dx, at, lanes, contribution);
    });
  });
}

}  // namespace

int64_t conv_vector_lanes(DType dt) { return host_vectors().bytes / (dt == DType::F64 ? 8 : 4); }

void vector_conv2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out,
                   const ConvEpilogue& epilogue) {
  const Shape &xs = args[0].type.shape, &ws = args[1].type.shape, &ys = out.type.shape;
  auto [rows, cols] = forward_maps(n, xs, ws, ys);
  correlate(k, {args[0], args[1], out, ys[0], xs[1], ys[1], {ws[1] * ws[2] * ws[3], ws[2] * ws[3], ws[3], 1}, rows, cols, epilogue});
}

// dx[n, c, iy, ix] = sum of w[o, c, kh, kw] · dy[n, o, (iy − kh + p) / s, (ix − kw + p) / s].
void vector_conv2d_input_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out) {
  const Shape &dys = args[0].type.shape, &ws = args[1].type.shape, &xs = out.type.shape;
  const std::vector<int64_t>& s = n.attrs.get("stride").as_ints();
  const std::vector<int64_t>& p = n.attrs.get("padding").as_ints();
  AxisMap rows{1, -1, p[0], s[0], dys[2], xs[2], ws[2]}, cols{1, -1, p[1], s[1], dys[3], xs[3], ws[3]};
  correlate(k, {args[0], args[1], out, xs[0], dys[1], xs[1], {ws[2] * ws[3], ws[1] * ws[2] * ws[3], ws[3], 1}, rows, cols, {}});
}

// dw[o, c, kh, kw] = sum over n, oh, ow of dy[n, o, oh, ow] · x[n, c, s·oh + kh − p, s·ow + kw − p]:
// per (block of output channels, input channel, kernel row) one accumulator per output channel
// and kernel column, over every batch, every output row that reads inside x at this kernel row
// (a range known here) and every chunk; then each is summed across its lanes.
// In registers: channels × KW accumulators, KW vectors of x, one of dy.
int64_t weight_grad_block(const Shape& ws) {
  return std::clamp<int64_t>((host_vectors().registers - 4 - ws[3]) / ws[3], 1, ws[0]);
}

int64_t conv2d_weight_grad_units(const Shape& ws) {
  int64_t per_block = weight_grad_block(ws);
  return (ws[0] + per_block - 1) / per_block * ws[1];
}

void vector_conv2d_weight_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out,
                               const UnitRange& units) {
  const Buffer &x = args[0], &dy = args[1];
  const Shape &xs = x.type.shape, &ys = dy.type.shape, &ws = out.type.shape;
  auto [rows, cols] = forward_maps(n, xs, ws, ys);
  Vectors v(k, out.type.dtype);
  auto& b = k.b;
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ys[1], OH = ys[2], OW = ys[3], KH = ws[2], KW = ws[3];
  int64_t per_block = weight_grad_block(ws), full = O / per_block;
  // Unit u: input channel u mod C of the block of output channels u / C.
  llvm::Value* first = units.begin ? units.begin : k.index(0);
  llvm::Value* last = units.end ? units.end : k.index(conv2d_weight_grad_units(ws));
  auto unit = [&](llvm::Value* o0, int64_t channels, llvm::Value* c) {
    for (int64_t kh = 0; kh < KH; ++kh) {
      int64_t lo = OH, hi = 0;  // the output rows that read row s·oh + kh − p inside x
      for (int64_t oh = 0; oh < OH; ++oh)
        if (rows.src(oh, kh)) lo = std::min(lo, oh), hi = std::max(hi, oh + 1);
      std::vector<llvm::Value*> acc;
      for (int64_t i = 0; i < channels * KW; ++i) acc.push_back(k.local(v.zero()));
      k.rolled_loop(N, [&](llvm::Value* nn) {
        llvm::Value* x_c = b.CreateMul(b.CreateAdd(b.CreateMul(nn, k.index(C)), c), k.index(H * W));
        llvm::Value* dy_o = b.CreateAdd(b.CreateMul(nn, k.index(O)), o0);
        k.rolled_loop(hi - lo, [&](llvm::Value* i) {
          llvm::Value* oh = b.CreateAdd(i, k.index(lo));
          llvm::Value* src = b.CreateAdd(b.CreateMul(oh, k.index(rows.a)), k.index(kh * rows.b + rows.c));
          llvm::Value* x_row = b.CreateAdd(x_c, b.CreateMul(src, k.index(W)));
          for_chunks(k, cols, v.lanes, [&](const Chunk& ch) {
            Values xv(static_cast<size_t>(KW));
            for (int64_t kw = 0; kw < KW; ++kw) {
              LaneMap lanes = src_columns(cols, ch, v.lanes, kw);
              if (lanes.any()) xv[static_cast<size_t>(kw)] = v.load(x, b.CreateAdd(x_row, column_base(k, cols, ch)), lanes);
            }
            LaneMap out_lanes = contiguous(v.lanes, ch.len);
            for (int64_t t = 0; t < channels; ++t) {
              llvm::Value* plane = b.CreateAdd(dy_o, k.index(t));
              llvm::Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(plane, k.index(OH)), oh), k.index(OW)), ch.ow0);
              llvm::Value* dyv = v.load(dy, at, out_lanes);
              for (int64_t kw = 0; kw < KW; ++kw) {
                if (!xv[static_cast<size_t>(kw)]) continue;
                llvm::Value* a = acc[static_cast<size_t>(t * KW + kw)];
                k.set(a, v.fma(dyv, xv[static_cast<size_t>(kw)], k.get(a)));
              }
            }
          });
        });
      });
      for (int64_t t = 0; t < channels; ++t)
        for (int64_t kw = 0; kw < KW; ++kw) {
          llvm::Value* o = b.CreateAdd(o0, k.index(t));
          llvm::Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(o, k.index(C)), c), k.index(KH * KW)), k.index(kh * KW + kw));
          k.store(out, at, v.sum(k.get(acc[static_cast<size_t>(t * KW + kw)])));
        }
    }
  };
  k.rolled_loop(first, last, [&](llvm::Value* u) {
    llvm::Value* block = b.CreateUDiv(u, k.index(C));
    llvm::Value* c = b.CreateURem(u, k.index(C));
    llvm::Value* o0 = b.CreateMul(block, k.index(per_block));
    if (O % per_block == 0) return unit(o0, per_block, c);
    k.if_else(b.CreateICmpULT(block, k.index(full)), [&] { unit(o0, per_block, c); }, [&] { unit(o0, O % per_block, c); });
  });
}

void vector_maxpool2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out) {
  Vectors v(k, out.type.dtype);
  auto [rows, cols] = pool_maps(n, args[0].type.shape, out.type.shape);
  llvm::Value* lowest = v.splat(k.real(out.type.dtype, -std::numeric_limits<double>::infinity()));
  pool_chunks(k, rows, cols, out.type.shape[0] * out.type.shape[1], v.lanes, [&](llvm::Value* plane, llvm::Value* oy, const Chunk& ch) {
    llvm::Value* m = lowest;
    for (int64_t i = 0; i < rows.taps; ++i) {
      llvm::Value* at = window_row(k, rows, cols, plane, oy, i, ch);
      for (int64_t j = 0; j < cols.taps; ++j) m = k.max_nan(m, v.load(args[0], at, src_columns(cols, ch, v.lanes, j)));
    }
    v.store(out, y_row(k, rows, cols, plane, oy, ch), contiguous(v.lanes, ch.len), m);
  });
}

void vector_avgpool2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out) {
  Vectors v(k, out.type.dtype);
  auto [rows, cols] = pool_maps(n, args[0].type.shape, out.type.shape);
  llvm::Value* share = v.splat(k.real(out.type.dtype, 1.0 / static_cast<double>(rows.taps * cols.taps)));
  pool_chunks(k, rows, cols, out.type.shape[0] * out.type.shape[1], v.lanes, [&](llvm::Value* plane, llvm::Value* oy, const Chunk& ch) {
    llvm::Value* sum = v.zero();
    for (int64_t i = 0; i < rows.taps; ++i) {
      llvm::Value* at = window_row(k, rows, cols, plane, oy, i, ch);
      for (int64_t j = 0; j < cols.taps; ++j)
        sum = k.b.CreateFAdd(sum, k.b.CreateFMul(v.load(args[0], at, src_columns(cols, ch, v.lanes, j)), share));
    }
    v.store(out, y_row(k, rows, cols, plane, oy, ch), contiguous(v.lanes, ch.len), sum);
  });
}

// Each window's gradient goes to its first maximum (or first NaN), as the interpreter.
void vector_maxpool2d_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out) {
  const Buffer &x = args[0], &dy = args[1];
  const Shape& ys = dy.type.shape;
  auto [rows, cols] = pool_maps(n, x.type.shape, ys);
  pool_grad(k, n, out, ys, [&](Vectors& v, llvm::Value* plane, llvm::Value* oy, const Chunk& ch, const auto& put) {
    auto& b = k.b;
    llvm::Value *best = nullptr, *m = nullptr;
    auto* lane_ids = llvm::FixedVectorType::get(b.getInt32Ty(), static_cast<unsigned>(v.lanes));
    auto tap_id = [&](int64_t tap) { return b.CreateVectorSplat(static_cast<unsigned>(v.lanes), b.getInt32(static_cast<uint32_t>(tap))); };
    for (int64_t i = 0; i < rows.taps; ++i) {
      llvm::Value* at = window_row(k, rows, cols, plane, oy, i, ch);
      for (int64_t j = 0; j < cols.taps; ++j) {
        llvm::Value* xv = v.load(x, at, src_columns(cols, ch, v.lanes, j));
        if (!m) {
          m = xv;
          best = llvm::Constant::getNullValue(lane_ids);
          continue;
        }
        llvm::Value* better = b.CreateOr(b.CreateFCmpOGT(xv, m), b.CreateAnd(b.CreateFCmpUNO(xv, xv), b.CreateFCmpORD(m, m)));
        m = b.CreateSelect(better, xv, m);
        best = b.CreateSelect(better, tap_id(i * cols.taps + j), best);
      }
    }
    llvm::Value* dyv = v.load(dy, y_row(k, rows, cols, plane, oy, ch), contiguous(v.lanes, ch.len));
    for (int64_t i = 0; i < rows.taps; ++i)
      for (int64_t j = 0; j < cols.taps; ++j)
        put(i, j, b.CreateSelect(b.CreateICmpEQ(best, tap_id(i * cols.taps + j)), dyv, v.zero()));
  });
}

void vector_avgpool2d_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out) {
  const Buffer& dy = args[0];
  const Shape& ys = dy.type.shape;
  auto [rows, cols] = pool_maps(n, out.type.shape, ys);
  pool_grad(k, n, out, ys, [&](Vectors& v, llvm::Value* plane, llvm::Value* oy, const Chunk& ch, const auto& put) {
    llvm::Value* share = v.splat(k.real(out.type.dtype, 1.0 / static_cast<double>(rows.taps * cols.taps)));
    llvm::Value* each = k.b.CreateFMul(v.load(dy, y_row(k, rows, cols, plane, oy, ch), contiguous(v.lanes, ch.len)), share);
    for (int64_t i = 0; i < rows.taps; ++i)
      for (int64_t j = 0; j < cols.taps; ++j) put(i, j, each);
  });
}

}  // namespace gradc::codegen
