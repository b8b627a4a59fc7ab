// Fashion-MNIST loading, epoch batching and row gathering.
#include "gradc/Dataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>

#include "runtime/Format.h"
#include "runtime/Idx.h"

namespace gradc {
namespace {

constexpr int64_t kSide = 28;
constexpr int64_t kClasses = 10;

// A uniform draw from [0, n) by rejection. std::uniform_int_distribution and std::shuffle
// are left to each standard library, so they would give other orders under libc++ and
// libstdc++; mt19937_64 and this are fixed, and so is the order a seed gives.
uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  uint64_t reject_under = (0 - n) % n;  // 2^64 mod n: what remains is a multiple of n
  uint64_t r;
  do r = rng();
  while (r < reject_under);
  return r % n;
}

}  // namespace

LabeledData load_fashion_mnist(const std::string& dir, bool train) {
  std::string prefix = train ? "train" : "t10k";
  std::string images_path = (std::filesystem::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string();
  std::string labels_path = (std::filesystem::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string();
  // Said before any file is opened, because the fix is to install the data, not to repair a file.
  if (!std::filesystem::is_directory(dir))
    fail(SourceLoc{dir},
         "no Fashion-MNIST directory here (the Debian package dataset-fashion-mnist installs one in {})",
         kFashionMnistDir);

  IdxArray images = read_idx(images_path);
  if (images.shape.size() != 3 || images.shape[1] != kSide || images.shape[2] != kSide)
    fail(SourceLoc{images_path}, "expected images of shape [N, {}, {}], got {}", kSide, kSide,
         to_string(images.shape));
  IdxArray labels = read_idx(labels_path);
  if (labels.shape.size() != 1)
    fail(SourceLoc{labels_path}, "expected labels of shape [N], got {}", to_string(labels.shape));
  int64_t n = images.shape[0];
  if (labels.shape[0] != n)
    fail(SourceLoc{labels_path}, "{} labels for the {} images of {}", labels.shape[0], n, images_path);

  LabeledData out{Tensor(TensorType{DType::F32, {n, kSide, kSide}}), Tensor(TensorType{DType::I32, {n}})};
  float* pixels = out.images.as<float>();
  for (size_t i = 0; i < images.data.size(); ++i) pixels[i] = static_cast<float>(images.data[i]) / 255.0f;
  int32_t* ids = out.labels.as<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    uint8_t label = labels.data[static_cast<size_t>(i)];
    if (label >= kClasses)
      fail(SourceLoc{labels_path}, "label {} at index {} is out of range [0, {})", label, i, kClasses);
    ids[i] = label;
  }
  return out;
}

Batches::Batches(int64_t count, int64_t batch, bool shuffle, uint64_t seed)
    : count_(count), batch_(batch), shuffle_(shuffle), seed_(seed) {
  GRADC_ASSERT(count >= 0 && batch > 0, "{} examples in batches of {}", count, batch);
  order_.resize(static_cast<size_t>(count));
  arrange();
}

std::vector<int64_t> Batches::indices(int64_t b) const {
  GRADC_ASSERT(b >= 0 && b < size(), "batch {} of {}", b, size());
  auto first = order_.begin() + b * batch_;
  return {first, first + batch_};
}

void Batches::next_epoch() {
  ++epoch_;
  arrange();
}

void Batches::arrange() {
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (!shuffle_) return;
  // seed_seq mixes all four words, so neighbouring seeds and epochs give unrelated orders.
  auto lo = [](uint64_t v) { return static_cast<uint32_t>(v); };
  auto hi = [](uint64_t v) { return static_cast<uint32_t>(v >> 32); };
  auto e = static_cast<uint64_t>(epoch_);
  std::seed_seq seq{lo(seed_), hi(seed_), lo(e), hi(e)};
  std::mt19937_64 rng(seq);
  // Fisher-Yates, from the back.
  for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[draw_below(rng, i)]);
}

void gather_rows(const Tensor& src, const std::vector<int64_t>& rows, Tensor& dst) {
  GRADC_ASSERT(src.shape().size() >= 1 && dst.dtype() == src.dtype() && dst.shape().size() == src.shape().size() &&
                   std::equal(src.shape().begin() + 1, src.shape().end(), dst.shape().begin() + 1) &&
                   dst.shape()[0] == static_cast<int64_t>(rows.size()),
               "{} rows of {} into {}", rows.size(), to_string(src.type()), to_string(dst.type()));
  int64_t row_elems = 1;
  for (size_t d = 1; d < src.shape().size(); ++d) row_elems *= src.shape()[d];
  auto row_bytes = static_cast<size_t>(row_elems * dtype_bytes(src.dtype()));
  for (size_t i = 0; i < rows.size(); ++i) {
    GRADC_ASSERT(rows[i] >= 0 && rows[i] < src.shape()[0], "row {} of {}", rows[i], to_string(src.type()));
    std::memcpy(dst.data() + i * row_bytes, src.data() + static_cast<size_t>(rows[i]) * row_bytes, row_bytes);
  }
}

}  // namespace gradc
