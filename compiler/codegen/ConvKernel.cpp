// Conv kernels (conv2d and its epilogue) and Alone kernels (an op's own loop nest: pooling, conv
// gradients, ...): image ops on the pool by images, conv2d's weight gradient by blocks of weights.
#include "codegen/KernelBody.h"

namespace gradc::codegen {

// The operands of an op that reads whole buffers (a constant as a Buffer that holds it).
std::vector<Buffer> KernelBody::op_args(const Node& n) const {
  std::vector<Buffer> args;
  for (ValueId a : n.args)
    args.push_back(constant_root(g_, a) >= 0 ? Buffer{g_[a].type, nullptr, constant_of(k_.fn->getContext(), g_[constant_root(g_, a)])}
                                             : buffer(a));
  return args;
}

void KernelBody::alone() {
  ValueId m = kernel_.members[0];
  const Node& n = g_[m];
  GRADC_ASSERT(cg(m).loops, "{} has no loop nest of its own", op_info(n.op).name);
  bool parallel = worth_tasks();
  if (parallel && cg(m).units) {
    // Units of the op's own (conv2d_weight_grad's whole weights, ConvEmitters.h), one task each.
    int64_t units = cg(m).units(n.type.shape);
    if (units > 1)
      return split_tasks(".tasks", units, true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
        cg(m).unit_loops(task.k_, n, task.op_args(n), task.buffer(m), {begin, end});
      });
  }
  if (parallel && cg(m).images && n.type.shape[0] > 1)
    return split_tasks(".tasks", n.type.shape[0], true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
      task.each_image(begin, end, [&](const std::vector<Buffer>& args, const Buffer& out, llvm::Value*) { cg(m).loops(task.k_, n, args, out); });
    });
  cg(m).loops(k_, n, op_args(n), buffer(m));
}

// For each image i in [first, last) of an image op (the kernel's head): `body` with its
// operands and result as buffers of that image alone (but its OpCodegen's whole_operand,
// conv2d's weights, whole), and i.
void KernelBody::each_image(llvm::Value* first, llvm::Value* last,
                            const std::function<void(const std::vector<Buffer>& args, const Buffer& out, llvm::Value* image)>& body) {
  ValueId m = kernel_.members[0];
  const Node& n = g_[m];
  auto& ir = k_.b;
  auto one_image = [&](Buffer b, llvm::Value* i) {
    int64_t per_image = b.numel() / b.type.shape[0];
    b.type.shape[0] = 1;
    if (b.ptr) b.ptr = ir.CreateInBoundsGEP(k_.elem(b.type.dtype), b.ptr, ir.CreateMul(i, k_.index(per_image)));
    return b;
  };
  int whole = cg(m).whole_operand;
  Buffer out = contains(kernel_.outputs, m) ? buffer(m) : Buffer{n.type, nullptr, nullptr};
  std::vector<Buffer> all = op_args(n);
  k_.rolled_loop(first, last, [&](llvm::Value* i) {
    std::vector<Buffer> args;
    for (size_t a = 0; a < all.size(); ++a) args.push_back(static_cast<int>(a) == whole ? all[a] : one_image(all[a], i));
    body(args, one_image(out, i), i);
  });
}

// The vector convolution (codegen/ConvEmitters.cpp) with the other members as the epilogue of
// each result; the raw conv is stored only if it is an output of the kernel. Without an
// epilogue it is the conv2d op's own loop nest.
void KernelBody::conv() {
  if (kernel_.members.size() == 1) return alone();
  ValueId m = kernel_.members[0];
  const Node& n = g_[m];
  if (n.type.dtype == DType::I32 || g_[n.args[0]].type.dtype == DType::I32 || g_[n.args[1]].type.dtype == DType::I32)
    fail(n.loc, "codegen: conv2d on i32 tensors is not supported by the JIT yet (the interpreter runs it)");
  // Images on tasks, each image's results through the epilogue at their place in the batch,
  // unless the epilogue sums over images.
  if (worth_tasks() && no_reductions() && n.type.shape[0] > 1)
    return split_tasks(".tasks", n.type.shape[0], true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
      task.each_image(begin, end, [&](const std::vector<Buffer>& args, const Buffer& out, llvm::Value* image) {
        vector_conv2d(task.k_, n, args, out, task.conv_epilogue(image));
      });
    });
  Buffer out = contains(kernel_.outputs, m) ? buffer(m) : Buffer{n.type, nullptr, nullptr};
  start_reductions();
  vector_conv2d(k_, n, op_args(n), out, conv_epilogue(nullptr));
  finish_reductions();
}

// A Conv kernel's other members on its sums: on the registers of sums as they are when they
// can take vectors, else on each sum. `image`: the sums are of that image alone (their index
// 0 is its index in the batch).
ConvEpilogue KernelBody::conv_epilogue(llvm::Value* image) {
  DType dt = g_[kernel_.members[0]].type.dtype;
  auto in_batch = [image](Values idx) {
    if (image) idx[0] = image;
    return idx;
  };
  ConvEpilogue epilogue;
  if (dt == DType::F32 && vector_epilogue()) {
    std::vector<std::pair<int64_t, int64_t>> along_row;  // lane l: column l of the register's row
    for (int64_t l = 0; l < conv_vector_lanes(dt); ++l) along_row.emplace_back(0, l);
    epilogue.lanes = [this, in_batch, along_row](const Values& idx, llvm::Value* sums, int64_t valid) {
      epilogue_at(in_batch(idx), sums, along_row, valid);
    };
  } else {
    epilogue.each = [this, in_batch](const Values& idx, llvm::Value* sum) { epilogue_at(in_batch(idx), sum); };
  }
  return epilogue;
}

}  // namespace gradc::codegen
