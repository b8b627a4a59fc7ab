// The data path of training: IDX files (plain and gzipped) and their errors, Fashion-MNIST
// from a directory (a tiny fake one, and the installed one when it is there), epoch batches
// and row gathering.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>

#include "TestUtil.h"
#include "gradc/Dataset.h"
#include "runtime/Idx.h"

using namespace gradc;

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An IDX file: the magic with `type` and the rank, the dims, then `data` as given (which
// may be shorter or longer than the dims say, to make bad files).
std::string idx(uint8_t type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s + data;
}

std::string counting(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 % 251);
  return s;
}

std::vector<uint8_t> as_bytes(const std::string& s) { return {s.begin(), s.end()}; }

// `content` gzipped by zlib's own writer, as the Fashion-MNIST files were made.
std::string gzip(const std::string& content) {
  std::string path = (test::temp_dir() / "gzip-scratch.gz").string();
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(f) == Z_OK);
  return test::read_file(path);
}

// What Error::what() says for `message` about `path`: the file first, then the message.
std::string error_at(const std::string& path, const std::string& message) {
  return fmt::format("{}: error: {}", path, message);
}

}  // namespace

TEST_CASE("runtime: idx reads plain files of rank 1 to 4") {
  for (const std::vector<uint32_t>& dims : {std::vector<uint32_t>{5}, {2, 3}, {2, 3, 4}, {2, 1, 3, 2}}) {
    size_t n = 1;
    for (uint32_t d : dims) n *= d;
    std::string path = test::write_temp("plain.idx", idx(0x08, dims, counting(n)));
    IdxArray a = read_idx(path);
    CHECK(a.shape == std::vector<int64_t>(dims.begin(), dims.end()));
    CHECK(a.data == as_bytes(counting(n)));
  }
}

TEST_CASE("runtime: idx reads gzipped files, past one read chunk") {
  // 3 MiB of data, so that the reader's 1 MiB chunks meet a boundary inside the data.
  std::string data = counting(size_t{3} * 1024 * 1025);
  std::string path = test::write_temp("big.idx.gz", gzip(idx(0x08, {3, 1024, 1025}, data)));
  IdxArray a = read_idx(path);
  CHECK(a.shape == std::vector<int64_t>{3, 1024, 1025});
  CHECK(a.data == as_bytes(data));
}

TEST_CASE("runtime: idx rejects malformed files, naming the file and what was expected") {
  struct Bad {
    std::string what;
    std::string bytes;
    std::string message;
  };
  std::string good_gz = gzip(idx(0x08, {2, 3}, counting(6)));
  std::string truncated_gz = good_gz.substr(0, good_gz.size() - 6);
  std::string bad_crc = good_gz;
  bad_crc[bad_crc.size() - 8] ^= 0x5a;  // the trailer is CRC-32 then length, 4 bytes each
  std::string bad_block = good_gz;
  bad_block[10] = 0x07;  // after gzwrite's 10-byte header: a final block of reserved type 3

  std::vector<Bad> cases = {
      {"empty file", "", "truncated header: expected 4 bytes of magic number, found 0"},
      {"bad magic", std::string("\x01\x00\x08\x01", 4) + be32(1) + "x",
       "bad magic 01 00: an IDX file starts with two zero bytes"},
      {"float type", idx(0x0D, {2}, std::string(8, '\0')),
       "unsupported IDX type 0x0d (float): only 0x08 (unsigned byte) is supported"},
      {"unknown type", idx(0x42, {2}, "ab"), "unsupported IDX type 0x42 (not an IDX type)"},
      {"rank 0", idx(0x08, {}, "a"), "unsupported rank 0: expected 1 to 4"},
      {"rank 5", idx(0x08, {1, 1, 1, 1, 1}, "a"), "unsupported rank 5: expected 1 to 4"},
      {"truncated dims", idx(0x08, {2, 3, 4}, "").substr(0, 12),
       "truncated header: expected 12 bytes of dimensions, found 8"},
      {"zero dim", idx(0x08, {2, 0, 3}, ""), "dimension 1 of shape [2, 0, 3] is 0: the array is empty"},
      {"over 2^31 bytes", idx(0x08, {65536, 32769}, ""), "shape [65536, 32769] is over 2^31 bytes"},
      {"dims whose product overflows", idx(0x08, {~0u, ~0u, ~0u, ~0u}, ""),
       "shape [4294967295, 4294967295, 4294967295, 4294967295] is over 2^31 bytes"},
      {"truncated data", idx(0x08, {2, 3}, "abcde"), "truncated data: expected 6 bytes for shape [2, 3], found 5"},
      {"truncated data, gzipped", gzip(idx(0x08, {2, 3}, "abcde")),
       "truncated data: expected 6 bytes for shape [2, 3], found 5"},
      {"trailing bytes", idx(0x08, {2, 3}, "abcdefgh"), "2 trailing bytes after the 6 bytes of data for shape [2, 3]"},
      {"truncated gzip stream", truncated_gz, "corrupt or truncated gzip stream: unexpected end of file"},
      {"gzip checksum mismatch", bad_crc, "corrupt or truncated gzip stream: incorrect data check"},
      {"corrupt deflate data", bad_block, "corrupt or truncated gzip stream: invalid block type"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].what);
    std::string path = test::write_temp(fmt::format("bad-{}.idx", i), cases[i].bytes);
    CHECK_THROWS_WITH_AS(read_idx(path), doctest::Contains(error_at(path, cases[i].message).c_str()), gradc::Error);
  }
  // The gzipped file the corrupt ones came from is itself fine.
  CHECK(read_idx(test::write_temp("good.idx.gz", good_gz)).data == as_bytes(counting(6)));
}

TEST_CASE("runtime: idx rejects a missing file and a directory") {
  std::string missing = (test::temp_dir() / "no-such-file.idx").string();
  CHECK_THROWS_WITH_AS(read_idx(missing),
                       doctest::Contains(error_at(missing, "cannot open file: No such file or directory").c_str()),
                       gradc::Error);
  std::string dir = test::temp_dir().string();
  CHECK_THROWS_WITH_AS(read_idx(dir), doctest::Contains(error_at(dir, "cannot read file: it is a directory, not a regular file").c_str()),
                       gradc::Error);
}

namespace {

// A Fashion-MNIST directory of its own under the test's temp dir, holding the `prefix`
// pair of gzipped files (either may be left out with an empty string).
std::string fake_fashion(const std::string& name, const std::string& prefix, const std::string& images,
                         const std::string& labels) {
  std::filesystem::path dir = test::temp_dir() / name;
  std::filesystem::create_directories(dir);
  if (!images.empty()) test::write_temp(name + "/" + prefix + "-images-idx3-ubyte.gz", gzip(images));
  if (!labels.empty()) test::write_temp(name + "/" + prefix + "-labels-idx1-ubyte.gz", gzip(labels));
  return dir.string();
}

std::string images_of(uint32_t n) { return idx(0x08, {n, 28, 28}, counting(size_t{n} * 784)); }

}  // namespace

TEST_CASE("runtime: fashion reads a tiny directory, scaling pixels to [0, 1]") {
  std::string pixels = counting(3 * 784);
  pixels[0] = '\0';
  pixels[1] = static_cast<char>(255);
  pixels[2] = static_cast<char>(51);
  std::string dir = fake_fashion("fashion-tiny", "train", idx(0x08, {3, 28, 28}, pixels),
                                 idx(0x08, {3}, std::string("\x09\x00\x04", 3)));
  fake_fashion("fashion-tiny", "t10k", images_of(2), idx(0x08, {2}, "\x07\x01"));

  LabeledData train = load_fashion_mnist(dir, true);
  REQUIRE(train.images.type() == TensorType{DType::F32, {3, 28, 28}});
  REQUIRE(train.labels.type() == TensorType{DType::I32, {3}});
  const float* p = train.images.as<float>();
  CHECK(p[0] == 0.0f);
  CHECK(p[1] == 1.0f);
  CHECK(p[2] == doctest::Approx(0.2f));
  size_t wrong = 0;
  for (size_t i = 0; i < pixels.size(); ++i)
    wrong += p[i] != static_cast<float>(static_cast<uint8_t>(pixels[i])) / 255.0f;
  CHECK(wrong == 0);
  CHECK(std::vector<int32_t>(train.labels.as<int32_t>(), train.labels.as<int32_t>() + 3) ==
        std::vector<int32_t>{9, 0, 4});

  LabeledData test = load_fashion_mnist(dir, false);
  CHECK(test.images.shape() == Shape{2, 28, 28});
  CHECK(std::vector<int32_t>(test.labels.as<int32_t>(), test.labels.as<int32_t>() + 2) == std::vector<int32_t>{7, 1});
}

TEST_CASE("runtime: fashion rejects a bad directory, naming the file") {
  std::string missing = (test::temp_dir() / "no-fashion-here").string();
  CHECK_THROWS_WITH_AS(load_fashion_mnist(missing, true),
                       doctest::Contains(error_at(missing, "no Fashion-MNIST directory here").c_str()), gradc::Error);

  std::string no_labels = fake_fashion("fashion-no-labels", "train", images_of(2), "");
  CHECK_THROWS_WITH_AS(load_fashion_mnist(no_labels, true),
                       doctest::Contains(error_at(no_labels + "/train-labels-idx1-ubyte.gz",
                                                  "cannot open file: No such file or directory")
                                             .c_str()),
                       gradc::Error);
  // The train pair is there; the test pair is not.
  CHECK_THROWS_WITH_AS(load_fashion_mnist(no_labels, false),
                       doctest::Contains((no_labels + "/t10k-images-idx3-ubyte.gz: error: cannot open file").c_str()),
                       gradc::Error);

  std::string out_of_range = fake_fashion("fashion-label-10", "train", images_of(3), idx(0x08, {3}, "\x01\x09\x0a"));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(out_of_range, true),
                       doctest::Contains(error_at(out_of_range + "/train-labels-idx1-ubyte.gz",
                                                  "label 10 at index 2 is out of range [0, 10)")
                                             .c_str()),
                       gradc::Error);

  std::string mismatch = fake_fashion("fashion-mismatch", "train", images_of(3), idx(0x08, {2}, "\x01\x02"));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(mismatch, true),
                       doctest::Contains(error_at(mismatch + "/train-labels-idx1-ubyte.gz",
                                                  fmt::format("2 labels for the 3 images of {}/{}", mismatch,
                                                              "train-images-idx3-ubyte.gz"))
                                             .c_str()),
                       gradc::Error);

  std::string wrong_side = fake_fashion("fashion-27", "train", idx(0x08, {2, 28, 27}, counting(2 * 28 * 27)),
                                        idx(0x08, {2}, "\x01\x02"));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(wrong_side, true),
                       doctest::Contains(error_at(wrong_side + "/train-images-idx3-ubyte.gz",
                                                  "expected images of shape [N, 28, 28], got [2, 28, 27]")
                                             .c_str()),
                       gradc::Error);

  std::string flat_images = fake_fashion("fashion-flat", "train", idx(0x08, {2, 784}, counting(2 * 784)),
                                         idx(0x08, {2}, "\x01\x02"));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(flat_images, true),
                       doctest::Contains("expected images of shape [N, 28, 28], got [2, 784]"), gradc::Error);

  std::string labels_2d = fake_fashion("fashion-labels-2d", "train", images_of(2), idx(0x08, {2, 1}, "\x01\x02"));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(labels_2d, true),
                       doctest::Contains(error_at(labels_2d + "/train-labels-idx1-ubyte.gz",
                                                  "expected labels of shape [N], got [2, 1]")
                                             .c_str()),
                       gradc::Error);
}

TEST_CASE("runtime: fashion reads the installed dataset") {
  if (!std::filesystem::is_directory(kFashionMnistDir)) {
    MESSAGE("Fashion-MNIST is not installed in ", kFashionMnistDir,
            " (apt install dataset-fashion-mnist): checking only that loading it fails clearly");
    CHECK_THROWS_WITH_AS(load_fashion_mnist(kFashionMnistDir, true),
                         doctest::Contains(error_at(kFashionMnistDir, "no Fashion-MNIST directory here").c_str()),
                         gradc::Error);
    return;
  }
  for (bool train : {true, false}) {
    CAPTURE(train);
    LabeledData d = load_fashion_mnist(kFashionMnistDir, train);
    int64_t n = train ? 60000 : 10000;
    REQUIRE(d.images.type() == TensorType{DType::F32, {n, 28, 28}});
    REQUIRE(d.labels.type() == TensorType{DType::I32, {n}});
    const float* p = d.images.as<float>();
    auto [lo, hi] = std::minmax_element(p, p + d.images.numel());
    CHECK(*lo == 0.0f);
    CHECK(*hi == 1.0f);
    // Fashion-MNIST is balanced: every class has a tenth of each split.
    std::vector<int64_t> per_class(10);
    int64_t out_of_range = 0;
    const int32_t* y = d.labels.as<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      if (y[i] < 0 || y[i] >= 10) ++out_of_range;
      else ++per_class[static_cast<size_t>(y[i])];
    }
    CHECK(out_of_range == 0);
    CHECK(per_class == std::vector<int64_t>(10, n / 10));
  }
}

namespace {

// Every index served in one epoch, batch after batch.
std::vector<int64_t> epoch_order(const Batches& b) {
  std::vector<int64_t> all;
  for (int64_t i = 0; i < b.size(); ++i) {
    std::vector<int64_t> batch = b.indices(i);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

}  // namespace

TEST_CASE("runtime: batches come in order without shuffle, every epoch") {
  Batches b(12, 4, false, 7);
  CHECK(b.size() == 3);
  CHECK(b.indices(1) == std::vector<int64_t>{4, 5, 6, 7});
  CHECK(epoch_order(b) == iota(12));
  b.next_epoch();
  CHECK(epoch_order(b) == iota(12));
}

TEST_CASE("runtime: batches drop the remainder") {
  CHECK(Batches(10, 3, false, 0).size() == 3);
  CHECK(epoch_order(Batches(10, 3, false, 0)) == iota(9));
  CHECK(Batches(2, 3, false, 0).size() == 0);
  CHECK(Batches(0, 3, true, 0).size() == 0);
  CHECK(Batches(60000, 64, true, 0).size() == 937);
  CHECK_THROWS_WITH_AS(Batches(10, 3, false, 0).indices(3), doctest::Contains("internal error"), gradc::Error);
  CHECK_THROWS_WITH_AS(Batches(10, 0, false, 0), doctest::Contains("internal error"), gradc::Error);

  // Shuffled, the dropped examples differ from epoch to epoch, and none is served twice.
  Batches s(10, 3, true, 1);
  std::vector<int64_t> order = epoch_order(s);
  CHECK(std::set<int64_t>(order.begin(), order.end()).size() == 9);
  CHECK(std::all_of(order.begin(), order.end(), [](int64_t i) { return i >= 0 && i < 10; }));
}

TEST_CASE("runtime: batches shuffle to a permutation that the seed and epoch fix") {
  Batches a(1000, 10, true, 42);
  std::vector<int64_t> first = epoch_order(a);
  CHECK(first != iota(1000));
  std::vector<int64_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == iota(1000));

  CHECK(epoch_order(Batches(1000, 10, true, 42)) == first);  // same seed, same order
  CHECK(epoch_order(Batches(1000, 10, true, 43)) != first);  // another seed, another order

  a.next_epoch();
  CHECK(a.epoch() == 1);
  std::vector<int64_t> second = epoch_order(a);
  CHECK(second != first);
  Batches c(1000, 10, true, 42);
  c.next_epoch();
  CHECK(epoch_order(c) == second);  // epoch 1 is as reproducible as epoch 0

  // Pinned, because the order is the implementation's own (not the standard library's
  // shuffle): a change here changes every seeded training run.
  CHECK(epoch_order(Batches(10, 10, true, 42)) == std::vector<int64_t>{0, 6, 5, 1, 3, 9, 7, 8, 4, 2});
}

TEST_CASE("runtime: batches gather_rows copies the chosen rows") {
  Tensor src = Tensor::of<int32_t>({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  Tensor dst(TensorType{DType::I32, {3, 2}});
  gather_rows(src, {3, 0, 3}, dst);
  CHECK(dst == Tensor::of<int32_t>({3, 2}, {6, 7, 0, 1, 6, 7}));

  Tensor images = Tensor::of<float>({3, 1, 2}, {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f});
  Tensor batch(TensorType{DType::F32, {2, 1, 2}});
  gather_rows(images, {2, 1}, batch);
  CHECK(batch == Tensor::of<float>({2, 1, 2}, {4.5f, 5.5f, 2.5f, 3.5f}));

  Tensor labels = Tensor::of<int32_t>({5}, {10, 11, 12, 13, 14});
  Tensor picked(TensorType{DType::I32, {2}});
  gather_rows(labels, {4, 1}, picked);
  CHECK(picked == Tensor::of<int32_t>({2}, {14, 11}));

  Tensor wrong_count(TensorType{DType::I32, {2, 2}});
  CHECK_THROWS_WITH_AS(gather_rows(src, {0}, wrong_count), doctest::Contains("internal error"), gradc::Error);
  Tensor wrong_dtype(TensorType{DType::F32, {1, 2}});
  CHECK_THROWS_WITH_AS(gather_rows(src, {0}, wrong_dtype), doctest::Contains("internal error"), gradc::Error);
  Tensor wrong_trailing(TensorType{DType::I32, {1, 3}});
  CHECK_THROWS_WITH_AS(gather_rows(src, {0}, wrong_trailing), doctest::Contains("internal error"), gradc::Error);
  Tensor one(TensorType{DType::I32, {1, 2}});
  CHECK_THROWS_WITH_AS(gather_rows(src, {4}, one), doctest::Contains("row 4 of i32[4, 2]"), gradc::Error);
  CHECK_THROWS_WITH_AS(gather_rows(src, {-1}, one), doctest::Contains("row -1 of i32[4, 2]"), gradc::Error);
}
