// The runtime's file formats: .safetensors checkpoints and .npy arrays. Round trips, files built
// byte by byte from the specs, every malformed file the readers refuse (with the message), and
// saves that fail without leaving a file or a temporary behind.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "TestUtil.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

using namespace gradc;
namespace fs = std::filesystem;

namespace {

// `v` as `n` little-endian bytes.
std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>(v >> (8 * i));
  return s;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A safetensors file: the header's length, the header as given, then `data` as given.
std::string safetensors_file(const std::string& header, const std::string& data) {
  return le(header.size(), 8) + header + data;
}

// A .npy file of `major`.0 with `dict` padded as numpy pads it (spaces and a newline, so that
// the data starts at a multiple of 64), then `data` as given.
std::string npy_file(int major, const std::string& dict, const std::string& data) {
  int length_bytes = major == 1 ? 2 : 4;
  size_t used = 8 + length_bytes + dict.size() + 1;
  std::string header = dict + std::string((64 - used % 64) % 64, ' ') + "\n";
  return std::string("\x93NUMPY") + static_cast<char>(major) + '\0' + le(header.size(), length_bytes) + header + data;
}

// A fresh, empty directory for one test.
fs::path fresh_dir(const std::string& name) {
  fs::path d = test::temp_dir() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> list_dir(const fs::path& d) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Lowers the file size limit of this process for one scope (doctest runs one test at a time).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit lower = saved_;
    lower.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lower);
    saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, saved_handler_);
  }

 private:
  rlimit saved_{};
  void (*saved_handler_)(int) = nullptr;
};

struct BadFile {
  std::string what;
  std::string bytes;
  const char* message;
};

const std::string kF32Entry = R"("a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
const std::string kEightBytes = raw(std::vector<float>{1, 2});
const std::string kF32Dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
const std::string kSixFloats = raw(std::vector<float>{1, 2, 3, 4, 5, 6});

}  // namespace

// ---- safetensors

TEST_CASE("runtime: safetensors round trip of every dtype, a scalar, rank 4 and an empty tensor") {
  std::map<std::string, Tensor> tensors{
      {"scalar", Tensor::of<float>({}, {3.5f})},
      {"conv.w", Tensor::of<float>({2, 1, 3, 2}, {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12})},
      {"f64", Tensor::of<double>({2, 2}, {0.1, -1e300, 4.9e-324, 2})},
      {"labels", Tensor::of<int32_t>({5}, {0, -1, 2147483647, -2147483647 - 1, 9})},
      {"empty", Tensor(TensorType{DType::F32, {0, 3}})},
  };
  std::vector<std::pair<std::string, const Tensor*>> refs;
  for (const auto& [name, t] : tensors) refs.emplace_back(name, &t);
  std::string path = (fresh_dir("st-roundtrip") / "ckpt.safetensors").string();
  save_safetensors(path, refs);
  CHECK(load_safetensors(path) == tensors);
  CHECK(list_dir(fs::path(path).parent_path()) == std::vector<std::string>{"ckpt.safetensors"});

  // Saving again replaces the file whole, with the mode of any new file (not mkstemp's 0600).
  Tensor one = Tensor::of<int32_t>({1}, {42});
  save_safetensors(path, {{"one", &one}});
  auto loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 1);
  CHECK(loaded.at("one") == one);
  mode_t mask = umask(0);
  umask(mask);
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));

  save_safetensors(path, {});
  CHECK(load_safetensors(path).empty());
}

TEST_CASE("runtime: safetensors writes the spec's layout byte for byte") {
  Tensor w = Tensor::of<float>({2}, {1.5f, -2.0f});
  Tensor n = Tensor::of<int32_t>({}, {7});
  std::string path = test::write_temp("exact.safetensors", "");
  save_safetensors(path, {{"w", &w}, {"n", &n}});
  // The JSON is compact, in the order given: 107 bytes, padded with 5 spaces to 112, a multiple of 8.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("n":{"dtype":"I32","shape":[],"data_offsets":[8,12]}})";
  REQUIRE(header.size() == 107);
  std::string expected = std::string("\x70\0\0\0\0\0\0\0", 8) + header + "     " +
                         std::string("\x00\x00\xc0\x3f\x00\x00\x00\xc0\x07\x00\x00\x00", 12);
  CHECK(test::read_file(path) == expected);
}

TEST_CASE("runtime: safetensors built by hand from the spec loads to the right values") {
  // Data first for "b" in the header but last in the buffer: offsets, not order, place a tensor.
  // 1.5f is 0x3fc00000, -2.0f is 0xc0000000, and the i32s are 7 and -1, all little-endian.
  std::string header = R"({"b": {"dtype": "I32", "shape": [2, 1], "data_offsets": [8, 16]},)"
                       R"( "__metadata__": {"format": "pt"},)"
                       R"( "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  std::string data("\x00\x00\xc0\x3f\x00\x00\x00\xc0\x07\x00\x00\x00\xff\xff\xff\xff", 16);
  auto tensors = load_safetensors(test::write_temp("hand.safetensors", safetensors_file(header, data)));
  REQUIRE(tensors.size() == 2);
  CHECK(tensors.at("a") == Tensor::of<float>({2}, {1.5f, -2.0f}));
  CHECK(tensors.at("b") == Tensor::of<int32_t>({2, 1}, {7, -1}));
}

TEST_CASE("runtime: safetensors refuses every malformed file and says why") {
  auto entry = [](const std::string& body) { return "{\"a\": {" + body + "}}"; };
  auto file = [](const std::string& header, const std::string& data) { return safetensors_file(header, data); };
  std::vector<BadFile> cases = {
      {"empty file", "", "file is 0 bytes, too short for the 8-byte header length"},
      {"short file", std::string("\x10\0\0", 3), "file is 3 bytes, too short"},
      {"header past the file", le(100, 8) + "{}", "header length 100 reaches past the end of the file (2 bytes follow"},
      {"header over 100 MB", le(200'000'000, 8) + "{}", "header length 200000000 is over the 100 MB limit"},
      {"not JSON", file("{\"a\": ", ""), "header is not valid JSON: parse error"},
      {"number past a double", file(R"({"a": 5e555514424924})", ""), "header is not valid JSON: number overflow"},
      {"not an object", file("[1, 2]", ""), "header is a JSON array, expected an object of tensors"},
      {"entry not an object", file(R"({"a": 3})", ""), "entry \"a\" is a JSON number, expected an object"},
      {"no dtype", file(entry(R"("shape": [2], "data_offsets": [0, 8])"), kEightBytes),
       "tensor \"a\" has no \"dtype\""},
      {"no shape", file(entry(R"("dtype": "F32", "data_offsets": [0, 8])"), kEightBytes),
       "tensor \"a\" has no \"shape\""},
      {"no offsets", file(entry(R"("dtype": "F32", "shape": [2])"), kEightBytes),
       "tensor \"a\" has no \"data_offsets\""},
      {"unknown dtype",
       file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]}})",
            kEightBytes + "abcd"),
       "tensor \"b\" has unsupported dtype BF16 (the file holds BF16, F32; gradc reads F32, F64, I32)"},
      {"dtype not a string", file(entry(R"("dtype": 1, "shape": [2], "data_offsets": [0, 8])"), kEightBytes),
       "dtype is 1, expected a string"},
      {"shape not an array", file(entry(R"("dtype": "F32", "shape": 2, "data_offsets": [0, 8])"), kEightBytes),
       "shape is 2, expected an array of sizes"},
      {"negative dim", file(entry(R"("dtype": "F32", "shape": [-2], "data_offsets": [0, 8])"), kEightBytes),
       "shape [-2] has dim -2, expected a non-negative integer"},
      {"fractional dim", file(entry(R"("dtype": "F32", "shape": [2.5], "data_offsets": [0, 8])"), kEightBytes),
       "has dim 2.5, expected a non-negative integer"},
      {"over 2^48 elements",
       file(entry(R"("dtype": "F32", "shape": [16777216, 16777216, 2], "data_offsets": [0, 8])"), kEightBytes),
       "shape [16777216,16777216,2] has over 2^48 elements"},
      {"dim past int64",
       file(entry(R"("dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 8])"), kEightBytes),
       "shape [18446744073709551615] has over 2^48 elements"},
      {"one offset", file(entry(R"("dtype": "F32", "shape": [2], "data_offsets": [0])"), kEightBytes),
       "data_offsets is [0], expected [begin, end]"},
      {"negative offset", file(entry(R"("dtype": "F32", "shape": [2], "data_offsets": [-8, 0])"), kEightBytes),
       "data_offsets is [-8,0], expected [begin, end], two non-negative integers"},
      {"end before begin", file(entry(R"("dtype": "F32", "shape": [0], "data_offsets": [8, 0])"), kEightBytes),
       "data_offsets [8, 0] end before they begin"},
      {"past the buffer", file(entry(R"("dtype": "F32", "shape": [4], "data_offsets": [0, 16])"), kEightBytes),
       "data_offsets [0, 16] reach past the end of the 8-byte data buffer"},
      {"size not the shape's", file(entry(R"("dtype": "F64", "shape": [2], "data_offsets": [0, 8])"), kEightBytes),
       "F64 [2] takes 16 bytes, but data_offsets [0, 8] hold 8"},
      {"overlap",
       file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]}})",
            kEightBytes),
       "tensors \"a\" (bytes 0 to 8) and \"b\" (bytes 4 to 8) overlap"},
      {"gap",
       file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
            R"( "b": {"dtype": "I32", "shape": [1], "data_offsets": [8, 12]}})",
            kEightBytes + "abcd"),
       "bytes 4 to 8 of the data buffer belong to no tensor"},
      {"trailing bytes", file("{" + kF32Entry + "}", kEightBytes + "xyz"),
       "3 trailing bytes after the last tensor: the data buffer is 11 bytes, the tensors cover 8"},
      {"duplicate name", file("{" + kF32Entry + ", " + kF32Entry + "}", kEightBytes), "header names \"a\" twice"},
  };
  REQUIRE(cases.size() >= 12);
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].what);
    std::string path = test::write_temp(fmt::format("bad{}.safetensors", i), cases[i].bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains(cases[i].message), Error);
    // Every message names the file.
    CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains(path.c_str()), Error);
  }
  CHECK_THROWS_WITH_AS(load_safetensors("/no/such/ckpt.safetensors"),
                       doctest::Contains("/no/such/ckpt.safetensors: error: cannot open file: No such file"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(test::temp_dir().string()), doctest::Contains("not a regular file"), Error);
}

TEST_CASE("runtime: safetensors refuses tensors it cannot name") {
  Tensor t = Tensor::of<float>({1}, {1});
  std::string path = (fresh_dir("st-names") / "x.safetensors").string();
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"w", &t}, {"w", &t}}), doctest::Contains("two tensors named \"w\""),
                       Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", &t}}), doctest::Contains("the format reserves it"),
                       Error);
  CHECK(list_dir(fs::path(path).parent_path()).empty());
}

// ---- npy

TEST_CASE("runtime: npy round trip of every dtype, a scalar and rank 4") {
  fs::path dir = fresh_dir("npy-roundtrip");
  std::vector<Tensor> tensors{
      Tensor::of<float>({}, {-0.5f}),
      Tensor::of<float>({2, 1, 3, 2}, {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12}),
      Tensor::of<double>({3}, {0.1, -1e300, 4.9e-324}),
      Tensor::of<int32_t>({2, 2}, {0, -1, 2147483647, -2147483647 - 1}),
      Tensor(TensorType{DType::I32, {0}}),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    CAPTURE(to_string(tensors[i].type()));
    std::string path = (dir / fmt::format("a{}.npy", i)).string();
    save_npy(path, tensors[i]);
    CHECK(load_npy(path) == tensors[i]);
    std::string bytes = test::read_file(path);
    // numpy aligns the data to 64 bytes.
    CHECK(bytes.size() - tensors[i].bytes() == 128);
  }
  CHECK(list_dir(dir).size() == tensors.size());
}

TEST_CASE("runtime: npy built by hand as numpy writes it loads right, and save_npy writes the same bytes") {
  // numpy 1.24's np.save of np.array([[1.5, -2, 0.25], [3, 4, 5]], dtype='<f4'): the 59-byte dict,
  // 20 spaces of room for the first dim to grow to 21 digits, 38 spaces to align the data to 64,
  // and a newline: 118 (0x76) header bytes after the 10 of magic, version and length.
  std::string header = kF32Dict + std::string(58, ' ') + "\n";
  REQUIRE(header.size() == 0x76);
  std::string data("\x00\x00\xc0\x3f\x00\x00\x00\xc0\x00\x00\x80\x3e\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\xa0\x40",
                   24);
  std::string file = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header + data;
  Tensor expected = Tensor::of<float>({2, 3}, {1.5f, -2, 0.25f, 3, 4, 5});
  CHECK(load_npy(test::write_temp("hand.npy", file)) == expected);

  std::string path = test::write_temp("saved.npy", "");
  save_npy(path, expected);
  CHECK(test::read_file(path) == file);
}

TEST_CASE("runtime: npy headers parse however they are written, and other dtypes convert to i32") {
  struct GoodFile {
    std::string what;
    std::string bytes;
    Tensor expected;
  };
  std::vector<GoodFile> cases = {
      {"keys in another order, double quotes, no trailing comma",
       npy_file(1, R"({ "shape" : (2,3) ,"fortran_order":False, 'descr':'<f4' })", kSixFloats),
       Tensor::of<float>({2, 3}, {1, 2, 3, 4, 5, 6})},
      {"a scalar",
       npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", raw(std::vector<double>{2.5})),
       Tensor::of<double>({}, {2.5})},
      {"a 1-tuple",
       npy_file(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", raw(std::vector<int32_t>{1, 2, 3})),
       Tensor::of<int32_t>({3}, {1, 2, 3})},
      {"a list as shape, Python 2 longs",
       npy_file(1, "{'descr': '<i4', 'fortran_order': False, 'shape': [1L, 2L]}", raw(std::vector<int32_t>{4, 5})),
       Tensor::of<int32_t>({1, 2}, {4, 5})},
      {"version 2.0", npy_file(2, kF32Dict, kSixFloats), Tensor::of<float>({2, 3}, {1, 2, 3, 4, 5, 6})},
      {"version 3.0", npy_file(3, kF32Dict, kSixFloats), Tensor::of<float>({2, 3}, {1, 2, 3, 4, 5, 6})},
      {"i8 to i32",
       npy_file(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                raw(std::vector<int64_t>{-2147483648LL, 0, 2147483647LL})),
       Tensor::of<int32_t>({3}, {-2147483647 - 1, 0, 2147483647})},
      {"|u1 to i32",
       npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", std::string("\x00\x07\xff", 3)),
       Tensor::of<int32_t>({3}, {0, 7, 255})},
      {"<u1 to i32", npy_file(1, "{'descr': '<u1', 'fortran_order': False, 'shape': (1, 1), }", "\x09"),
       Tensor::of<int32_t>({1, 1}, {9})},
      {"unknown keys are ignored", npy_file(1, "{'descr': '<u1', 'fortran_order': False, 'shape': (0,), 'x': 'y'}", ""),
       Tensor(TensorType{DType::I32, {0}})},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].what);
    CHECK(load_npy(test::write_temp(fmt::format("good{}.npy", i), cases[i].bytes)) == cases[i].expected);
  }
}

TEST_CASE("runtime: npy refuses every malformed file and says why") {
  auto dict = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return fmt::format("{{'descr': {}, 'fortran_order': {}, 'shape': {}, }}", descr, fortran, shape);
  };
  std::string v1 = std::string("\x93NUMPY\x01\x00", 8);
  std::vector<BadFile> cases = {
      {"empty file", "", "file is 0 bytes, too short for the 8-byte .npy magic and version"},
      {"bad magic", "\x93NUMPZ\x01\x00" + le(0, 2), "not a .npy file: expected the magic"},
      {"version 4.0", npy_file(4, kF32Dict, kSixFloats), "unsupported .npy version 4.0: expected 1.0, 2.0 or 3.0"},
      {"version 1.1", std::string("\x93NUMPY\x01\x01", 8) + le(0, 2), "unsupported .npy version 1.1"},
      {"truncated length", std::string("\x93NUMPY\x02\x00", 8) + std::string("\x10\x00", 2),
       "truncated header: expected a 4-byte header length, found 2 bytes"},
      {"truncated header", v1 + le(118, 2) + kF32Dict, "truncated header: expected 118 bytes, found 59"},
      {"header over 1 MB", std::string("\x93NUMPY\x02\x00", 8) + le(5'000'000, 4),
       "header length 5000000 is over the 1 MB limit"},
      {"not a dict", npy_file(1, "['descr']", ""),
       "malformed .npy header: expected '{' opening the header dict at column 1"},
      {"unterminated string", npy_file(1, "{'descr: '<f4'}", ""), "malformed .npy header: expected ':' after the key"},
      {"unknown value", npy_file(1, dict("'<f4'", "None", "(2,)"), ""),
       "expected a string, True, False, an integer or a tuple"},
      {"missing comma", npy_file(1, "{'descr': '<f4' 'shape': (2,)}", ""), "expected ',' or '}' after a value"},
      {"text after the dict", npy_file(1, kF32Dict + " x", kSixFloats), "expected only spaces after the dict"},
      {"duplicate key", npy_file(1, "{'descr': '<f4', 'descr': '<f4'}", ""), "expected no second 'descr' key"},
      {"no shape", npy_file(1, "{'descr': '<f4', 'fortran_order': False}", ""),
       "no 'shape' key in .npy header \"{'descr': '<f4', 'fortran_order': False}\""},
      {"Fortran order", npy_file(1, dict("'<f4'", "True", "(2, 3)"), kSixFloats),
       "Fortran order is not supported; save with np.ascontiguousarray"},
      {"fortran_order not a bool", npy_file(1, dict("'<f4'", "0", "(2, 3)"), kSixFloats),
       "fortran_order is not True or False"},
      {"big-endian", npy_file(1, dict("'>f4'", "False", "(2, 3)"), kSixFloats),
       "big-endian dtype '>f4' is not supported; save it little-endian, e.g. a.astype('<f4')"},
      {"float16", npy_file(1, dict("'<f2'", "False", "(2,)"), "abcd"),
       "unsupported dtype '<f2': expected '<f4', '<f8', '<i4', '<i8', '|u1' or '<u1'"},
      {"structured", npy_file(1, dict("[('x', '<f4')]", "False", "(1,)"), "abcd"),
       "structured arrays (a list as descr) are not supported"},
      {"shape not a tuple", npy_file(1, dict("'<f4'", "False", "6"), kSixFloats),
       "shape is not a tuple such as (2, 3) in .npy header"},
      {"negative dim", npy_file(1, dict("'<f4'", "False", "(-1, 6)"), kSixFloats),
       "shape has a dim that is not a non-negative integer"},
      {"truncated data", npy_file(1, kF32Dict, kSixFloats.substr(0, 20)),
       "truncated data: expected 24 bytes for shape (2, 3) of '<f4', found 20"},
      {"trailing data", npy_file(1, kF32Dict, kSixFloats + "abcd"),
       "4 trailing bytes after the 24 bytes of data for shape (2, 3) of '<f4'"},
      {"i8 out of range",
       npy_file(1, dict("'<i8'", "False", "(3,)"), raw(std::vector<int64_t>{1, 3'000'000'000LL, -5'000'000'000LL})),
       "'<i8' value 3000000000 at flat index 1 does not fit in i32"},
  };
  REQUIRE(cases.size() >= 12);
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].what);
    std::string path = test::write_temp(fmt::format("bad{}.npy", i), cases[i].bytes);
    CHECK_THROWS_WITH_AS(load_npy(path), doctest::Contains(cases[i].message), Error);
    CHECK_THROWS_WITH_AS(load_npy(path), doctest::Contains(path.c_str()), Error);
  }
  CHECK_THROWS_WITH_AS(load_npy("/no/such/x.npy"),
                       doctest::Contains("/no/such/x.npy: error: cannot open file: No such file"), Error);
  CHECK_THROWS_WITH_AS(load_npy(test::temp_dir().string()), doctest::Contains("not a regular file"), Error);
}

// ---- failed saves

TEST_CASE("runtime: a save that fails throws and leaves no file and no temporary behind") {
  Tensor t = Tensor::of<float>({2}, {1, 2});
  fs::path dir = fresh_dir("unwritable");

  SUBCASE("the directory does not exist") {
    std::string st = (dir / "missing" / "ckpt.safetensors").string();
    std::string npy = (dir / "missing" / "x.npy").string();
    std::string reason = fmt::format("creating the temporary file {}/.ckpt.safetensors.gradc-tmp-XXXXXX: {}",
                                     (dir / "missing").string(), std::strerror(ENOENT));
    CHECK_THROWS_WITH_AS(save_safetensors(st, {{"t", &t}}), doctest::Contains(reason.c_str()), Error);
    CHECK_THROWS_WITH_AS(save_npy(npy, t), doctest::Contains(std::strerror(ENOENT)), Error);
    CHECK(list_dir(dir).empty());
  }
  SUBCASE("the path is a directory") {
    fs::create_directory(dir / "ckpt.safetensors");
    fs::create_directory(dir / "x.npy");
    // Refused before a temporary is made: renaming over a directory would fail, and over a
    // FIFO or a device would replace it (tests/test_robust.cpp).
    std::string reason = "cannot save: it is a directory, not a regular file";
    CHECK_THROWS_WITH_AS(save_safetensors((dir / "ckpt.safetensors").string(), {{"t", &t}}),
                         doctest::Contains(reason.c_str()), Error);
    CHECK_THROWS_WITH_AS(save_npy((dir / "x.npy").string(), t), doctest::Contains(reason.c_str()), Error);
    CHECK(list_dir(dir) == std::vector<std::string>{"ckpt.safetensors", "x.npy"});
    CHECK(fs::is_empty(dir / "ckpt.safetensors"));
  }
  SUBCASE("a write that fails halfway keeps the old file whole") {
    std::string path = (dir / "ckpt.safetensors").string();
    save_safetensors(path, {{"t", &t}});
    std::string before = test::read_file(path);
    Tensor big(TensorType{DType::F32, {1000}});
    {
      // Files over 1000 bytes fail to write with EFBIG; the signal that would kill us is ignored.
      FileSizeLimit limit(1000);
      CHECK_THROWS_WITH_AS(save_safetensors(path, {{"big", &big}}), doctest::Contains(std::strerror(EFBIG)), Error);
      CHECK_THROWS_WITH_AS(save_npy((dir / "big.npy").string(), big), doctest::Contains("cannot save: writing"), Error);
    }
    CHECK(test::read_file(path) == before);
    CHECK(list_dir(dir) == std::vector<std::string>{"ckpt.safetensors"});
  }
}
