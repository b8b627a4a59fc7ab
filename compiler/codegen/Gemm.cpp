#include "codegen/Gemm.h"

#include <algorithm>
#include <tuple>

#include <llvm/IR/Intrinsics.h>
#include <llvm/TargetParser/Host.h>

namespace gradc::codegen {

int64_t host_vector_lanes() {
  static const int64_t lanes = [] {  // asked once: the host does not change, and asking costs a CPUID walk
    llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
    auto has = [&](const char* f) { return features.lookup(f); };
    if (has("avx512f")) return int64_t{16};
    if (has("avx2") && has("fma")) return int64_t{8};
    return int64_t{4};
  }();
  return lanes;
}

GemmPlan plan_gemm(int64_t batches, int64_t m, int64_t n, int64_t k, bool a_transposed, bool b_transposed, int64_t lanes) {
  // A result narrower than a vector from a transposed A (a narrow layer's weight gradient Xᵀ·dY)
  // is computed as its transpose dYᵀ·X, whose columns are X's rows: whole vectors rather than
  // n of the lanes, and no copy of X.
  bool swap = a_transposed && n < lanes && m >= 2 * lanes;
  GemmPlan p{batches, swap ? n : m, swap ? m : n, k, swap ? !b_transposed : a_transposed, swap ? !a_transposed : b_transposed, lanes};
  p.swapped = swap;
  std::tie(m, n, a_transposed, b_transposed) = std::tuple(p.m, p.n, p.a_transposed, p.b_transposed);
  if (!a_transposed && n < lanes && k >= 4 * lanes) {
    p.dot = true;
    p.nr = lanes;
    p.mr = std::clamp<int64_t>(24 / n, 1, m);  // mr × n accumulators
    while (m % p.mr != 0 && p.mr > 1) --p.mr;   // one copy of the microkernel
    p.kc = k;
    return p;
  }
  // Accumulators take all but a few of the vector registers (32 with AVX-512, else 16): one or
  // two vectors of B per row of the tile, as many rows as fit.
  int64_t registers = lanes == 16 ? 32 : 16;
  int64_t vectors = std::min<int64_t>((n + lanes - 1) / lanes, 2);
  p.nr = vectors * lanes;
  p.mr = std::clamp<int64_t>((registers - 8) / vectors, 1, m);
  // A tile height that divides m (if one is at least half the most that fits) leaves no
  // remainder block, whose microkernel would be a second copy of the code to compile.
  for (int64_t mr = p.mr; mr * 2 >= p.mr && mr > 1; --mr)
    if (m % mr == 0) {
      p.mr = mr;
      break;
    }
  // A panel read straight from B strides over its rows by n floats: fine while that is short,
  // but wide rows (or B transposed) would put every k in a different page and cache set.
  p.pack_b = b_transposed || (n > 64 && k > 128);
  // Every panel reads all of A: when there are several, one copy of A in the order the
  // microkernel reads it (mr floats per k, contiguous) saves each a walk over mr rows that may
  // sit 4 KiB apart, in one cache set.
  p.pack_a = p.panels() >= 2;
  // About 32 KiB of B per chunk (L1 holds 48 KiB here, with A's and the sums' lines beside it).
  int64_t kc_max = std::max<int64_t>(32 * 1024 / (p.nr * 4), 16);
  p.kc = p.k <= kc_max ? std::max<int64_t>(p.k, 1) : (p.k + (p.k + kc_max - 1) / kc_max - 1) / ((p.k + kc_max - 1) / kc_max);
  return p;
}

namespace {

class GemmEmitter {
 public:
  GemmEmitter(KernelBuilder& k, const GemmPlan& p, llvm::Value* a, llvm::Value* b, llvm::Value* scratch)
      : k_(k), ir_(k.b), p_(p), a_(a), b_(b), scratch_(scratch) {
    f32_ = ir_.getFloatTy();
    vec_ = llvm::FixedVectorType::get(f32_, static_cast<unsigned>(p.lanes));
    llvm::BasicBlock& entry = k.fn->getEntryBlock();
    llvm::IRBuilder<> at_entry(&entry, entry.begin());
    auto* tile = at_entry.CreateAlloca(llvm::ArrayType::get(f32_, static_cast<uint64_t>(p.mr * p.nr)));
    tile->setAlignment(llvm::Align(64));
    tile_ = tile;
  }

  // scratch[((batch * blocks + i / mr) * k + p) * mr + i % mr] = A[i, p] for the row blocks
  // [begin, end) of all batches' (blocks of mr rows, numbered batch by batch); rows past m stay
  // unset (the microkernel of the last block reads only its rows).
  void pack_a(llvm::Value* begin, llvm::Value* end) {
    // Block by block, the inner loop along A's memory: over p when A is as stored, over the
    // block's rows when it is read transposed (its rows are then columns in memory).
    auto block = [&](llvm::Value* batch, llvm::Value* at, llvm::Value* b, int64_t rows) {
      llvm::Value* to = ir_.CreateInBoundsGEP(f32_, scratch_, ir_.CreateMul(at, k_.index(p_.k * p_.mr)));
      llvm::Value* i0 = ir_.CreateMul(b, k_.index(p_.mr));
      auto copy = [&](llvm::Value* p, llvm::Value* r) {
        llvm::Value* v = load_f32(a_, a_at(batch, ir_.CreateAdd(i0, r), p));
        ir_.CreateStore(v, ir_.CreateInBoundsGEP(f32_, to, k_.offset({p, r}, {p_.mr, 1})));
      };
      if (p_.a_transposed)
        k_.loop(p_.k, [&](llvm::Value* p) { k_.loop(rows, [&](llvm::Value* r) { copy(p, r); }); });
      else
        k_.loop(rows, [&](llvm::Value* r) { k_.loop(p_.k, [&](llvm::Value* p) { copy(p, r); }); });
    };
    int64_t blocks = p_.row_blocks(), rest = p_.m % p_.mr;
    k_.rolled_loop(begin, end, [&](llvm::Value* at) {
      llvm::Value* batch = ir_.CreateUDiv(at, k_.index(blocks));
      llvm::Value* b = ir_.CreateURem(at, k_.index(blocks));
      if (rest == 0) return block(batch, at, b, p_.mr);
      k_.if_else(ir_.CreateICmpULT(b, k_.index(blocks - 1)), [&] { block(batch, at, b, p_.mr); },
                 [&] { block(batch, at, b, rest); });
    });
  }

  // scratch[(batch * n + j) * k + p] = B[p, j]: Bᵀ's rows, for a dot plan (n < lanes). Blocks of
  // lanes rows of B through registers: a masked load of each row's n floats, a transpose in
  // shuffles, a store of lanes consecutive p for each column; the last k % lanes rows one by one.
  void pack_bt() {
    int64_t L = p_.lanes, k_full = p_.k / L * L;
    auto to = [&](llvm::Value* batch, llvm::Value* j, llvm::Value* p) {
      return ir_.CreateInBoundsGEP(f32_, scratch_, k_.offset({batch, j, p}, {p_.n * p_.k, p_.k, 1}));
    };
    k_.loop(p_.batches, [&](llvm::Value* batch) {
      k_.rolled_loop(k_full / L, [&](llvm::Value* pb) {
        llvm::Value* p0 = ir_.CreateMul(pb, k_.index(L));
        std::vector<llvm::Value*> rows;
        for (int64_t i = 0; i < L; ++i) {
          llvm::Value* row = ir_.CreateInBoundsGEP(f32_, b_, b_at(batch, ir_.CreateAdd(p0, k_.index(i)), k_.index(0)));
          rows.push_back(ir_.CreateMaskedLoad(vec_, row, llvm::Align(4), k_.lane_mask(p_.n, L), llvm::Constant::getNullValue(vec_)));
        }
        transpose(rows);
        for (int64_t j = 0; j < p_.n; ++j) ir_.CreateAlignedStore(rows[static_cast<size_t>(j)], to(batch, k_.index(j), p0), llvm::Align(4));
      });
      k_.loop(p_.k - k_full, [&](llvm::Value* pr) {
        llvm::Value* p = ir_.CreateAdd(pr, k_.index(k_full));
        k_.loop(p_.n, [&](llvm::Value* j) { ir_.CreateStore(load_f32(b_, b_at(batch, p, j)), to(batch, j, p)); });
      });
    });
  }

  // A dot plan's tasks (one per batch): every block of mr rows, its tile, then the epilogue.
  void dot_tasks(llvm::Value* begin, llvm::Value* end, const TileEpilogue& epilogue) {
    k_.loop(begin, end, [&](llvm::Value* batch) {
      int64_t blocks = p_.m / p_.mr, rest = p_.m % p_.mr;
      auto block = [&](llvm::Value* row0, int64_t rows) {
        dot_microkernel(batch, row0, rows);
        epilogue(batch, row0, rows, k_.index(0), p_.n, tile_);
      };
      k_.rolled_loop(blocks, [&](llvm::Value* i) { block(ir_.CreateMul(i, k_.index(p_.mr)), p_.mr); });
      if (rest > 0) block(k_.index(blocks * p_.mr), rest);
    });
  }

  // tile[r * nr + c] = sum over p of A[row0 + r, p] * B[p, c]: vectors of lanes along p (the
  // last one masked when k is not a multiple), then each vector's lanes added up (a fixed tree).
  void dot_microkernel(llvm::Value* batch, llvm::Value* row0, int64_t rows) {
    std::vector<llvm::Value*> a_row, bt_row, acc;
    for (int64_t r = 0; r < rows; ++r)
      a_row.push_back(ir_.CreateInBoundsGEP(f32_, a_, a_at(batch, ir_.CreateAdd(row0, k_.index(r)), k_.index(0))));
    for (int64_t c = 0; c < p_.n; ++c)
      bt_row.push_back(p_.b_transposed ? ir_.CreateInBoundsGEP(f32_, b_, b_at(batch, k_.index(0), k_.index(c)))
                                       : ir_.CreateInBoundsGEP(f32_, scratch_, ir_.CreateAdd(ir_.CreateMul(batch, k_.index(p_.n * p_.k)), k_.index(c * p_.k))));
    for (int64_t i = 0; i < rows * p_.n; ++i) acc.push_back(k_.local(llvm::Constant::getNullValue(vec_)));
    auto step = [&](llvm::Value* at, int64_t valid) {
      auto load = [&](llvm::Value* row) {
        llvm::Value* ptr = ir_.CreateInBoundsGEP(f32_, row, at);
        if (valid == p_.lanes) return static_cast<llvm::Value*>(ir_.CreateAlignedLoad(vec_, ptr, llvm::Align(4)));
        return static_cast<llvm::Value*>(
            ir_.CreateMaskedLoad(vec_, ptr, llvm::Align(4), k_.lane_mask(valid, p_.lanes), llvm::Constant::getNullValue(vec_)));
      };
      std::vector<llvm::Value*> av, bv;
      for (llvm::Value* row : a_row) av.push_back(load(row));
      for (llvm::Value* row : bt_row) bv.push_back(load(row));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < p_.n; ++c) {
          llvm::Value* slot = acc[static_cast<size_t>(r * p_.n + c)];
          k_.set(slot, ir_.CreateIntrinsic(llvm::Intrinsic::fmuladd, {vec_}, {av[static_cast<size_t>(r)], bv[static_cast<size_t>(c)], k_.get(slot)}));
        }
    };
    k_.rolled_loop(p_.k / p_.lanes, [&](llvm::Value* v) { step(ir_.CreateMul(v, k_.index(p_.lanes)), p_.lanes); });
    if (p_.k % p_.lanes) step(k_.index(p_.k / p_.lanes * p_.lanes), p_.k % p_.lanes);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<llvm::Value*> row;
      for (int64_t c = 0; c < p_.n; ++c) row.push_back(k_.get(acc[static_cast<size_t>(r * p_.n + c)]));
      ir_.CreateMaskedStore(lane_sums(row), ir_.CreateConstInBoundsGEP1_64(f32_, tile_, static_cast<uint64_t>(r * p_.nr)), llvm::Align(4),
                            k_.lane_mask(p_.n, p_.lanes));
    }
  }

  // One vector whose lane i is the sum of the lanes of vs[i] (at most `lanes` of them): halves
  // of pairs of vectors added, then quarters, ..., in a fixed tree (a transpose as it adds up:
  // log2(lanes) rounds of two shuffles and an add per pair, not a reduction per vector).
  llvm::Value* lane_sums(std::vector<llvm::Value*> vs) {
    const int64_t lanes = p_.lanes;
    llvm::Constant* none = llvm::ConstantFP::get(vec_, -0.0);  // x + -0.0 == x: missing inputs fold away
    vs.resize(static_cast<size_t>(lanes), none);
    // Before a round, each vector holds segments of 2 * width lanes, the partial sums of one input
    // each, in order; the round halves the segments and pairs the vectors.
    for (int64_t width = lanes / 2; width >= 1; width /= 2) {
      std::vector<llvm::Value*> next;
      for (size_t i = 0; i < vs.size(); i += 2) {
        if (vs[i] == none && vs[i + 1] == none) {
          next.push_back(none);
          continue;
        }
        std::vector<int> lo, hi;  // per segment of the pair, in order: its low half, its high half
        for (int64_t from : {int64_t{0}, lanes})
          for (int64_t seg = 0; seg < lanes / width; seg += 2)
            for (int64_t l = 0; l < width; ++l) {
              lo.push_back(static_cast<int>(from + seg * width + l));
              hi.push_back(static_cast<int>(from + seg * width + width + l));
            }
        next.push_back(ir_.CreateFAdd(ir_.CreateShuffleVector(vs[i], vs[i + 1], lo), ir_.CreateShuffleVector(vs[i], vs[i + 1], hi)));
      }
      vs = std::move(next);
    }
    return vs[0];
  }

  void tasks(llvm::Value* begin, llvm::Value* end, const TileEpilogue& epilogue) {
    if (p_.dot) return dot_tasks(begin, end, epilogue);
    int64_t full = p_.n / p_.nr, rest = p_.n % p_.nr;
    k_.loop(begin, end, [&](llvm::Value* t) {
      llvm::Value* batch = ir_.CreateUDiv(t, k_.index(p_.panels()));
      llvm::Value* panel = ir_.CreateURem(t, k_.index(p_.panels()));
      llvm::Value* col0 = ir_.CreateMul(panel, k_.index(p_.nr));
      llvm::Value* panels = ir_.CreateInBoundsGEP(f32_, scratch_, k_.index(p_.packed_a_floats()));
      llvm::Value* packed = p_.pack_b ? ir_.CreateInBoundsGEP(f32_, panels, ir_.CreateMul(t, k_.index(p_.k * p_.nr))) : nullptr;
      llvm::Value* sums = nullptr;
      if (p_.chunks() > 1) {
        llvm::Value* all = ir_.CreateInBoundsGEP(f32_, scratch_, k_.index(p_.packed_a_floats() + p_.packed_b_floats()));
        sums = ir_.CreateInBoundsGEP(f32_, all, ir_.CreateMul(t, k_.index(p_.row_blocks() * p_.mr * p_.nr)));
      }
      auto run = [&](int64_t cols) { panel_code(batch, col0, cols, packed, sums, epilogue); };
      if (rest == 0) return run(p_.nr);
      if (full == 0) return run(rest);
      k_.if_else(ir_.CreateICmpULT(panel, k_.index(full)), [&] { run(p_.nr); }, [&] { run(rest); });
    });
  }

 private:
  // B's element (row p, column col) of this batch, as a flat index.
  llvm::Value* b_at(llvm::Value* batch, llvm::Value* p, llvm::Value* col) {
    llvm::Value* base = ir_.CreateMul(batch, k_.index(p_.k * p_.n));
    return ir_.CreateAdd(base, p_.b_transposed ? k_.offset({col, p}, {p_.k, 1}) : k_.offset({p, col}, {p_.n, 1}));
  }
  llvm::Value* a_at(llvm::Value* batch, llvm::Value* row, llvm::Value* p) {
    llvm::Value* base = ir_.CreateMul(batch, k_.index(p_.m * p_.k));
    return ir_.CreateAdd(base, p_.a_transposed ? k_.offset({p, row}, {p_.m, 1}) : k_.offset({row, p}, {p_.k, 1}));
  }
  llvm::Value* load_f32(llvm::Value* base, llvm::Value* at) { return ir_.CreateLoad(f32_, ir_.CreateInBoundsGEP(f32_, base, at)); }

  // One panel: every row block's tile over all of k, then the epilogue on it. With chunks of k,
  // the tiles of the whole panel wait in `sums` (row r at sums[r * nr]) from chunk to chunk.
  void panel_code(llvm::Value* batch, llvm::Value* col0, int64_t cols, llvm::Value* packed, llvm::Value* sums,
                  const TileEpilogue& epilogue) {
    if (packed) pack(batch, col0, cols, packed);
    int64_t blocks = p_.m / p_.mr, rest = p_.m % p_.mr;
    auto each_block = [&](const std::function<void(llvm::Value*, int64_t)>& block) {
      k_.rolled_loop(blocks, [&](llvm::Value* i) { block(ir_.CreateMul(i, k_.index(p_.mr)), p_.mr); });
      if (rest > 0) block(k_.index(blocks * p_.mr), rest);
    };
    if (!sums) {
      return each_block([&](llvm::Value* row0, int64_t rows) {
        microkernel(batch, row0, rows, col0, cols, packed, k_.index(0), k_.index(p_.k), nullptr);
        epilogue(batch, row0, rows, col0, cols, tile_);
      });
    }
    auto tile_at = [&](llvm::Value* row0) { return ir_.CreateInBoundsGEP(f32_, sums, ir_.CreateMul(row0, k_.index(p_.nr))); };
    k_.rolled_loop(p_.chunks(), [&](llvm::Value* c) {
      llvm::Value* k0 = ir_.CreateMul(c, k_.index(p_.kc));
      llvm::Value* k1 = ir_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, ir_.CreateAdd(k0, k_.index(p_.kc)), k_.index(p_.k));
      llvm::Value* first = ir_.CreateICmpEQ(c, k_.index(0));
      each_block([&](llvm::Value* row0, int64_t rows) { microkernel(batch, row0, rows, col0, cols, packed, k0, k1, tile_at(row0), first); });
    });
    each_block([&](llvm::Value* row0, int64_t rows) { epilogue(batch, row0, rows, col0, cols, tile_at(row0)); });
  }

  // packed[p * nr + c] = B[p, col0 + c], zero past the last column.
  void pack(llvm::Value* batch, llvm::Value* col0, int64_t cols, llvm::Value* packed) {
    auto store = [&](llvm::Value* p, llvm::Value* c, llvm::Value* v) {
      ir_.CreateStore(v, ir_.CreateInBoundsGEP(f32_, packed, k_.offset({p, c}, {p_.nr, 1})));
    };
    if (p_.b_transposed) {  // read along B's rows, which are our columns
      // Blocks of lanes × lanes through registers: a vector load along each of B's rows, a
      // transpose in shuffles, a vector store along each packed row; the edges one by one.
      int64_t L = p_.lanes, c_full = cols / L * L, k_full = p_.k / L * L;
      k_.rolled_loop(c_full / L, [&](llvm::Value* cb) {
        llvm::Value* c0 = ir_.CreateMul(cb, k_.index(L));
        k_.rolled_loop(k_full / L, [&](llvm::Value* pb) {
          llvm::Value* p0 = ir_.CreateMul(pb, k_.index(L));
          std::vector<llvm::Value*> rows;
          for (int64_t i = 0; i < L; ++i) {
            llvm::Value* c = ir_.CreateAdd(ir_.CreateAdd(col0, c0), k_.index(i));
            rows.push_back(ir_.CreateAlignedLoad(vec_, ir_.CreateInBoundsGEP(f32_, b_, b_at(batch, p0, c)), llvm::Align(4)));
          }
          transpose(rows);
          for (int64_t j = 0; j < L; ++j)
            ir_.CreateAlignedStore(rows[static_cast<size_t>(j)],
                                   ir_.CreateInBoundsGEP(f32_, packed, k_.offset({ir_.CreateAdd(p0, k_.index(j)), c0}, {p_.nr, 1})),
                                   llvm::Align(static_cast<uint64_t>(L * 4)));
        });
        k_.loop(p_.k - k_full, [&](llvm::Value* pr) {
          llvm::Value* p = ir_.CreateAdd(pr, k_.index(k_full));
          k_.loop(L, [&](llvm::Value* i) {
            llvm::Value* c = ir_.CreateAdd(c0, i);
            store(p, c, load_f32(b_, b_at(batch, p, ir_.CreateAdd(col0, c))));
          });
        });
      });
      k_.loop(cols - c_full, [&](llvm::Value* cr) {
        llvm::Value* c = ir_.CreateAdd(cr, k_.index(c_full));
        k_.loop(p_.k, [&](llvm::Value* p) { store(p, c, load_f32(b_, b_at(batch, p, ir_.CreateAdd(col0, c)))); });
      });
    } else {
      k_.loop(p_.k, [&](llvm::Value* p) {
        k_.loop(cols, [&](llvm::Value* c) { store(p, c, load_f32(b_, b_at(batch, p, ir_.CreateAdd(col0, c)))); });
      });
    }
    if (cols < p_.nr)
      k_.loop(p_.k, [&](llvm::Value* p) {
        k_.loop(p_.nr - cols, [&](llvm::Value* c) { store(p, ir_.CreateAdd(c, k_.index(cols)), llvm::ConstantFP::get(f32_, 0.0)); });
      });
  }

  // rows[j][i] = rows[i][j] for lanes × lanes floats: log2(lanes) rounds of shuffles, each
  // swapping the off-diagonal halves of every block twice its size (blocks of lanes/2 first).
  void transpose(std::vector<llvm::Value*>& rows) {
    int64_t L = p_.lanes;
    for (int64_t h = L / 2; h >= 1; h /= 2)
      for (int64_t i = 0; i < L; ++i) {
        if (i & h) continue;
        std::vector<int> lo, hi;
        for (int64_t j = 0; j < L; ++j) {
          int64_t base = j / (2 * h) * (2 * h), o = j - base;
          lo.push_back(static_cast<int>(o < h ? base + o : L + base + o - h));
          hi.push_back(static_cast<int>(o < h ? base + h + o : L + base + o));
        }
        llvm::Value *a = rows[static_cast<size_t>(i)], *b = rows[static_cast<size_t>(i + h)];
        rows[static_cast<size_t>(i)] = ir_.CreateShuffleVector(a, b, lo);
        rows[static_cast<size_t>(i + h)] = ir_.CreateShuffleVector(a, b, hi);
      }
  }

  // The vector v of B's row p within this panel (lanes past `cols` are zero).
  llvm::Value* b_vector(llvm::Value* batch, llvm::Value* p, llvm::Value* col0, int64_t cols, llvm::Value* packed, int64_t v) {
    if (packed) {
      llvm::Value* at = ir_.CreateAdd(ir_.CreateMul(p, k_.index(p_.nr)), k_.index(v * p_.lanes));
      return ir_.CreateAlignedLoad(vec_, ir_.CreateInBoundsGEP(f32_, packed, at), llvm::Align(static_cast<uint64_t>(p_.lanes * 4)));
    }
    int64_t valid = std::clamp<int64_t>(cols - v * p_.lanes, 0, p_.lanes);
    if (valid == 0) return llvm::Constant::getNullValue(vec_);
    llvm::Value* ptr = ir_.CreateInBoundsGEP(f32_, b_, b_at(batch, p, ir_.CreateAdd(col0, k_.index(v * p_.lanes))));
    if (valid == p_.lanes) return ir_.CreateAlignedLoad(vec_, ptr, llvm::Align(4));
    return ir_.CreateMaskedLoad(vec_, ptr, llvm::Align(4), k_.lane_mask(valid, p_.lanes), llvm::Constant::getNullValue(vec_));
  }

  // tile[r * nr + c] (+)= sum over p in [k0, k1) of A[row0 + r, p] * B[p, col0 + c], for r < rows,
  // in registers: into the local tile, or into `sums`, which it starts from unless `first`.
  void microkernel(llvm::Value* batch, llvm::Value* row0, int64_t rows, llvm::Value* col0, int64_t cols, llvm::Value* packed,
                   llvm::Value* k0, llvm::Value* k1, llvm::Value* sums, llvm::Value* first = nullptr) {
    int64_t vectors = p_.nr / p_.lanes;
    llvm::Value* out = sums ? sums : tile_;
    auto tile_vector = [&](int64_t r, int64_t v) {
      return ir_.CreateConstInBoundsGEP1_64(f32_, out, static_cast<uint64_t>(r * p_.nr + v * p_.lanes));
    };
    llvm::Align align(static_cast<uint64_t>(p_.lanes * 4));
    std::vector<llvm::Value*> acc;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t v = 0; v < vectors; ++v) {
        llvm::Value* zero = llvm::Constant::getNullValue(vec_);
        acc.push_back(k_.local(first ? ir_.CreateSelect(first, zero, ir_.CreateAlignedLoad(vec_, tile_vector(r, v), align)) : zero));
      }
    // Addresses at p = 0, computed once: in the loop each load is then one offset from them (the
    // loop body is a tile's FMAs, and less to simplify makes O3 quicker).
    std::vector<llvm::Value*> a_row;  // row r of A, or of its packed block
    int64_t a_step = p_.pack_a ? p_.mr : p_.a_transposed ? p_.m : 1;  // floats from one p to the next
    if (p_.pack_a) {
      // The packed block of these rows: row0 / mr within this batch's blocks.
      llvm::Value* block = ir_.CreateAdd(ir_.CreateMul(batch, k_.index(p_.row_blocks())), ir_.CreateUDiv(row0, k_.index(p_.mr)));
      llvm::Value* a_block = ir_.CreateInBoundsGEP(f32_, scratch_, ir_.CreateMul(block, k_.index(p_.k * p_.mr)));
      for (int64_t r = 0; r < rows; ++r) a_row.push_back(ir_.CreateConstInBoundsGEP1_64(f32_, a_block, static_cast<uint64_t>(r)));
    } else {
      for (int64_t r = 0; r < rows; ++r)
        a_row.push_back(ir_.CreateInBoundsGEP(f32_, a_, a_at(batch, ir_.CreateAdd(row0, k_.index(r)), k_.index(0))));
    }
    k_.rolled_loop(k0, k1, [&](llvm::Value* p) {  // a tile's worth of FMAs per trip already
      std::vector<llvm::Value*> bv;
      for (int64_t v = 0; v < vectors; ++v) bv.push_back(b_vector(batch, p, col0, cols, packed, v));
      llvm::Value* a_offset = ir_.CreateMul(p, k_.index(a_step), "", true, true);
      for (int64_t r = 0; r < rows; ++r) {
        llvm::Value* av = ir_.CreateVectorSplat(static_cast<unsigned>(p_.lanes), load_f32(a_row[static_cast<size_t>(r)], a_offset));
        for (int64_t v = 0; v < vectors; ++v) {
          llvm::Value* slot = acc[static_cast<size_t>(r * vectors + v)];
          k_.set(slot, ir_.CreateIntrinsic(llvm::Intrinsic::fmuladd, {vec_}, {av, bv[static_cast<size_t>(v)], k_.get(slot)}));
        }
      }
    });
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t v = 0; v < vectors; ++v) ir_.CreateAlignedStore(k_.get(acc[static_cast<size_t>(r * vectors + v)]), tile_vector(r, v), align);
  }

  KernelBuilder& k_;
  llvm::IRBuilder<>& ir_;
  const GemmPlan& p_;
  llvm::Value *a_, *b_, *scratch_;
  llvm::Type* f32_;
  llvm::FixedVectorType* vec_;
  llvm::Value* tile_;
};

}  // namespace

void emit_gemm_pack(KernelBuilder& k, const GemmPlan& p, llvm::Value* a, llvm::Value* b, llvm::Value* scratch,
                    llvm::Value* begin, llvm::Value* end) {
  if (p.swapped) std::swap(a, b);
  if (p.pack_a) GemmEmitter(k, p, a, nullptr, scratch).pack_a(begin, end);
  if (p.dot && !p.b_transposed) GemmEmitter(k, p, a, b, scratch).pack_bt();  // one unit: the whole Bᵀ
}

void emit_gemm_tasks(KernelBuilder& k, const GemmPlan& p, llvm::Value* a, llvm::Value* b, llvm::Value* scratch,
                     llvm::Value* begin, llvm::Value* end, const TileEpilogue& epilogue) {
  if (p.swapped) std::swap(a, b);
  GemmEmitter(k, p, a, b, scratch).tasks(begin, end, epilogue);
}

}  // namespace gradc::codegen
