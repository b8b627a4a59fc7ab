// Datasets for training: Fashion-MNIST from its IDX files, and the batches an epoch is cut into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradc/Tensor.h"

namespace gradc {

// Where the Debian package dataset-fashion-mnist installs the four gzipped IDX files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct LabeledData {
  Tensor images;  // f32[N, 28, 28], pixels scaled to [0, 1]
  Tensor labels;  // i32[N], class ids in [0, 10)
};

// Reads train-{images-idx3,labels-idx1}-ubyte.gz from `dir`, or the t10k-* pair when !train.
// Throws gradc::Error naming the file for a missing directory or file, a bad IDX file, images
// that are not [N, 28, 28], labels that are not [N] with the same N, or a label out of range.
LabeledData load_fashion_mnist(const std::string& dir, bool train);

// The batches of one epoch over `count` examples: full batches only (the remainder is
// dropped, as Keras and PyTorch's drop_last do, so every step sees the compiled batch
// shape). With shuffle, each epoch is a fresh permutation drawn from (seed, epoch), so a
// run is reproducible; without, the examples come in order.
class Batches {
 public:
  Batches(int64_t count, int64_t batch, bool shuffle, uint64_t seed);

  int64_t size() const { return count_ / batch_; }
  // The example indices of batch `b` of the current epoch, 0 <= b < size().
  std::vector<int64_t> indices(int64_t b) const;
  void next_epoch();
  int64_t epoch() const { return epoch_; }

 private:
  void arrange();

  int64_t count_;
  int64_t batch_;
  bool shuffle_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;  // [count_]: the examples of this epoch, in the order served
};

// Copies rows `rows` (along the leading dim) of `src` into `dst`, which has the same dtype
// and trailing shape and a leading dim of rows.size(); asserts so otherwise.
void gather_rows(const Tensor& src, const std::vector<int64_t>& rows, Tensor& dst);

}  // namespace gradc
