// The loop nests of conv2d, its two adjoints and the pooling ops with their gradients, on
// explicit LLVM vectors over the static shapes (OpEmitters.cpp's loops_* entries call these).
//
// Each spatial output row is cut into chunks of one vector register's lanes. A convolution
// keeps a tile of outputs (several channels × several rows × one chunk) in registers over all
// the input channels and kernel taps: per tap it loads one vector of an input row per output
// row, broadcasts one weight per output channel and does a fused multiply-add for each pair.
// The tile's shape is chosen from the kernel and the host's registers. Zero padding costs no
// test per element: lanes that read outside a row are masked off in the load (constant masks,
// a chunk's position being known here), and rows outside the input read a row of zeros. No
// im2col buffer: nothing but the output is written, and no scratch memory is used. Sums run in
// another order than the interpreter's (the tests allow 1e-5 in f32, 1e-12 in f64).
//
// conv2d may take an epilogue (a Conv kernel's bias, activation, ...) that runs on each finished
// tile of sums instead of the store: on each register of sums (a vector of consecutive output
// columns) when it can take vectors, otherwise on each sum, from a small buffer on the stack, in
// loops over the tile's channels, rows and lanes (its code written once per kind of tile).
#pragma once

#include <functional>
#include <vector>

#include "codegen/KernelBuilder.h"

namespace gradc::codegen {

// Emits the code of results of conv2d: `each` of one, `sum` at index {n, o, oh, ow} of the
// output; or `lanes` of a vector of them, lane l at {n, o, oh, ow + l}, the first `valid` lanes
// results (the others past the row's end).
struct ConvEpilogue {
  std::function<void(const std::vector<llvm::Value*>& index, llvm::Value* sum)> each;
  std::function<void(const std::vector<llvm::Value*>& index, llvm::Value* sums, int64_t valid)> lanes;
  explicit operator bool() const { return each || lanes; }
};
// The lanes of the vectors an epilogue's `lanes` gets for dtype dt (the host's widest registers).
int64_t conv_vector_lanes(DType dt);

// y = conv2d(x, w): args {x [N, C, H, W], w [O, C, KH, KW]}, out [N, O, OH, OW]. With an
// epilogue, out is not written (its pointer may be null): the epilogue takes every sum.
void vector_conv2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out,
                   const ConvEpilogue& epilogue = {});
// dx = conv2d_input_grad(dy, w), a correlation of dy with w that reads dy where conv2d wrote it.
void vector_conv2d_input_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out);
// dw = conv2d_weight_grad(x, dy): one vector accumulator per weight and output row chunk,
// reduced across its lanes at the end (in a fixed order: the same result on every run). Its
// units, conv2d_weight_grad_units(dw's shape) of them, are (block of output channels, input
// channel) pairs: each computes its weights whole, so they may run on any threads.
void vector_conv2d_weight_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out,
                               const UnitRange& units = {});
int64_t conv2d_weight_grad_units(const Shape& ws);

// Pooling windows a chunk of outputs at a time, the taps in the interpreter's order.
void vector_maxpool2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out);
void vector_avgpool2d(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out);
void vector_maxpool2d_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out);
void vector_avgpool2d_grad(KernelBuilder& k, const Node& n, const std::vector<Buffer>& args, const Buffer& out);

}  // namespace gradc::codegen
