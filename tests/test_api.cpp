// The public C++ API as a user writes it from the README and DESIGN.md: feeds from std::vector
// and std::span, every output by name, predict on any number of rows, the optimizers' options,
// and the README's and DESIGN.md's C++ snippets compiled (as samples/) and run.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <span>
#include <type_traits>

#include "JitUtil.h"
#include "TestUtil.h"

namespace gradc {

using test::error_of;

namespace {

const Model& seed_model() {
  static const Model model = compile_file(test::source_path("samples/specs/seed_mlp.gir"));
  return model;
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = std::uniform_real_distribution<float>(0, 1)(rng);
  return v;
}

std::vector<int32_t> random_labels(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> v(n);
  for (int32_t& y : v) y = static_cast<int32_t>(rng() % 10);
  return v;
}

bool same_bits(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

// The ```cpp blocks of a markdown file.
std::vector<std::string> cpp_blocks(const std::string& text) {
  std::vector<std::string> blocks;
  size_t at = 0;
  while ((at = text.find("```cpp\n", at)) != std::string::npos) {
    size_t begin = at + 7, end = text.find("```", begin);
    if (end == std::string::npos) break;
    blocks.push_back(text.substr(begin, end - begin));
    at = end + 3;
  }
  return blocks;
}

// The lines of `path` between "// ---- snippet begin" and "// ---- snippet end", their common
// indentation removed.
std::string marked_snippet(const std::string& path) {
  std::string text = test::read_file(path);
  const std::string begin_mark = "// ---- snippet begin\n", end_mark = "// ---- snippet end";
  size_t begin = text.find(begin_mark), end = text.find(end_mark);
  REQUIRE_MESSAGE(begin != std::string::npos, path, " has no snippet markers");
  REQUIRE(end != std::string::npos);
  begin += begin_mark.size();
  std::string body = text.substr(begin, text.rfind('\n', end) + 1 - begin);
  std::vector<std::string> lines;
  size_t indent = std::string::npos;
  for (size_t pos = 0; pos < body.size();) {
    size_t nl = body.find('\n', pos);
    std::string line = body.substr(pos, nl - pos);
    if (line.find_first_not_of(' ') != std::string::npos) indent = std::min(indent, line.find_first_not_of(' '));
    lines.push_back(line);
    pos = nl + 1;
  }
  std::string out;
  for (const std::string& line : lines) out += (line.size() >= indent ? line.substr(indent) : "") + "\n";
  return out;
}

}  // namespace

TEST_CASE("api: step and predict take std::vector and std::span of the element type, the shape from the spec") {
  static_assert(std::is_convertible_v<const std::vector<float>&, TensorView>);
  static_assert(std::is_convertible_v<std::span<const int32_t>, TensorView>);
  static_assert(std::is_convertible_v<std::span<double>, TensorView>);
  // Element types gradc has no dtype for do not convert: a compile error, not a wrong reading.
  static_assert(!std::is_constructible_v<TensorView, std::vector<int64_t>>);
  static_assert(!std::is_constructible_v<TensorView, std::vector<uint8_t>>);

  std::vector<float> xs = random_floats(64 * 784, 1);
  std::vector<int32_t> ys = random_labels(64, 2);
  Session a(seed_model(), {.seed = 7}), b(seed_model(), {.seed = 7}), c(seed_model(), {.seed = 7});
  double from_vectors = a.step({{"x", xs}, {"y", ys}});
  double from_spans = b.step({{"x", std::span<const float>(xs)}, {"y", std::span<int32_t>(ys)}});
  double from_views = c.step({{"x", TensorView(xs.data(), Shape{64, 784})}, {"y", TensorView(ys.data(), Shape{64})}});
  CHECK(from_vectors == from_views);
  CHECK(from_spans == from_views);
  CHECK(same_bits(a.param("w1").data(), c.param("w1").data(), c.param("w1").bytes()));
  const Tensor& probs = a.predict({{"x", xs}}).at("probs");
  CHECK(probs.type() == TensorType{DType::F32, {64, 10}});
}

TEST_CASE("api: a feed of the wrong element count or type names the input, what it expects and what it got") {
  Session s(seed_model());
  std::vector<float> xs(64 * 784), few(100);
  std::vector<int32_t> ys(64);
  std::vector<double> doubles(64 * 784);
  CHECK(error_of([&] { s.step({{"x", few}, {"y", ys}}); }) ==
        "error: input 'x' expects 50176 elements (f32[64, 784]), got 100");
  CHECK(error_of([&] { s.step({{"x", doubles}, {"y", ys}}); }) ==
        "error: input 'x' expects f32 elements (f32[64, 784]), got 50176 f64 elements");
  CHECK(error_of([&] { s.step({{"x", xs}, {"y", xs}}); }).find("input 'y' expects i32 elements (i32[64])") != std::string::npos);
  // predict takes whole rows of any count, never a part of one.
  CHECK(error_of([&] { s.predict({{"x", std::vector<float>(785)}}); }) ==
        "error: input 'x' expects whole rows of 784 elements (f32[64, 784] for one batch), got 785 elements");
  CHECK(error_of([&] { s.predict({{"x", TensorView(xs.data(), Shape{64, 28, 28})}}); })
            .find("input 'x' expects rows of [784] (f32[64, 784] for one batch), got f32[64, 28, 28]") != std::string::npos);
  CHECK(error_of([&] { s.predict({{"x", xs}, {"z", xs}}); }).find("has no input 'z'") != std::string::npos);
}

TEST_CASE("api: predict returns every output of the spec by name, in the spec's order") {
  Model m = compile_string(
      "model two\ninput x : f32[4, 3]\nparam w : f32[3, 2] = ones\nlogits = matmul(x, w)\n"
      "output probs = softmax(logits, axis=1)\noutput total = sum(logits)\n");
  Session s(m);
  std::vector<float> xs = {1, 2, 3, 0, 0, 0, -1, 1, 0, 2, 2, 2};
  const Outputs& outs = s.predict({{"x", xs}});
  CHECK(outs.size() == 2);
  CHECK(outs.names() == std::vector<std::string>{"probs", "total"});
  CHECK(outs.at("probs").type() == TensorType{DType::F32, {4, 2}});
  CHECK(outs["total"].as<float>()[0] == doctest::Approx(2 * (6 + 0 + 0 + 6)));
  CHECK(&outs.first() == &outs.at("probs"));
  CHECK(outs.contains("total"));
  CHECK_FALSE(outs.contains("logits"));
  CHECK(error_of([&] { (void)outs.at("logits"); }) == "error: no output 'logits' (the outputs are: probs, total)");
  int seen = 0;
  for (const auto& [name, t] : outs) seen += t.numel() > 0 ? 1 : 0;
  CHECK(seen == 2);
  // 'total' sums over the batch: it has no row of its own, so predict takes exactly the batch.
  CHECK(error_of([&] { s.predict({{"x", std::vector<float>(3 * 5)}}); }) ==
        "error: output 'total' (f32[]) has no leading dim of the batch 4, so predict takes exactly 4 rows, not 5");
}

TEST_CASE("api: predict on any number of rows: batches of the spec's size, the last padded, the outputs cut back") {
  Session s(seed_model(), {.seed = 3});
  for (int64_t rows : {0, 1, 63, 64, 65, 128, 200}) {
    CAPTURE(rows);
    std::vector<float> xs = random_floats(static_cast<size_t>(rows * 784), 10 + static_cast<uint64_t>(rows));
    Tensor got = s.predict({{"x", xs}}).at("probs");
    REQUIRE(got.type() == TensorType{DType::F32, {rows, 10}});
    // Each batch by hand: B rows (the last padded with copies of its first), one exact call.
    for (int64_t first = 0; first < rows; first += 64) {
      int64_t real = std::min<int64_t>(64, rows - first);
      std::vector<float> batch(64 * 784);
      for (int64_t r = 0; r < 64; ++r) {
        int64_t from = first + (r < real ? r : 0);
        std::copy_n(xs.begin() + from * 784, 784, batch.begin() + r * 784);
      }
      const Tensor& want = s.predict({{"x", batch}}).at("probs");
      CHECK(same_bits(got.as<float>() + first * 10, want.as<float>(), static_cast<size_t>(real * 10) * sizeof(float)));
    }
  }
  // A view with the rows in its shape does the same.
  std::vector<float> xs = random_floats(70 * 784, 5);
  Tensor from_vector = s.predict({{"x", xs}}).at("probs");
  CHECK(s.predict({{"x", TensorView(xs.data(), Shape{70, 784})}}).at("probs") == from_vector);
}

TEST_CASE("api: inputs fed different row counts are refused, naming both") {
  Model m = compile_string("model two\ninput a : f32[2, 3]\ninput b : f32[2, 3]\noutput s = add(a, b)\n");
  Session s(m);
  CHECK(error_of([&] { s.predict({{"a", std::vector<float>(9)}, {"b", std::vector<float>(12)}}); }) ==
        "error: input 'b' has 4 rows, but 'a' has 3");
  const Tensor& sum = s.predict({{"a", std::vector<float>(9, 1.0f)}, {"b", std::vector<float>(9, 2.0f)}}).at("s");
  CHECK(sum.type() == TensorType{DType::F32, {3, 3}});
  CHECK(sum.as<float>()[8] == 3.0f);
}

TEST_CASE("api: the optimizer helpers take clip_norm and a named lr input, as the spec does") {
  auto build = [](Optimizer opt, bool lr_input) {
    GraphBuilder b("m");
    auto x = b.input("x", {DType::F32, {4, 3}});
    if (lr_input) b.input("lr", {DType::F32, {}});
    auto w = b.param("w", {DType::F32, {3, 1}}, ones());
    b.minimize(b.name("loss", b.mean(b.square(b.matmul(x, w)))), std::move(opt));
    return b.build();
  };
  std::string clipped = dump(build(adam({.lr = 0.01, .clip_norm = 1.0}), false), Stage::Parsed);
  CHECK(clipped.find("minimize loss with adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-08, clip_norm=1.0)") != std::string::npos);
  Graph spec = load_spec("model m\ninput x : f32[4, 3]\nparam w : f32[3, 1] = ones\nloss = mean(square(matmul(x, w)))\n"
                         "minimize loss with adam(lr=0.01, clip_norm=1.0)\n");
  CHECK(clipped == dump(spec, Stage::Parsed));
  CHECK(dump(build(adamw({.weight_decay = 0.1, .clip_norm = 2.0}), false), Stage::Parsed)
            .find("adamw(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.1, clip_norm=2.0)") != std::string::npos);
  CHECK(dump(build(momentum({.lr = 0.1, .nesterov = true}), false), Stage::Parsed)
            .find("momentum(lr=0.1, momentum=0.9, nesterov=true)") != std::string::npos);

  // lr from an input: fed with each step (0 leaves w as it was; 0.1 moves it).
  Graph fed = build(sgd({.lr_input = "lr", .clip_norm = 10.0}), true);
  CHECK(dump(fed, Stage::Parsed).find("minimize loss with sgd(lr=lr, clip_norm=10.0)") != std::string::npos);
  Model m = compile(fed);
  Session s(m);
  std::vector<float> xs(12, 1.0f);
  s.step({{"x", xs}, {"lr", std::vector<float>{0.0f}}});
  CHECK(s.param("w").as<float>()[0] == 1.0f);
  s.step({{"x", xs}, {"lr", std::vector<float>{0.1f}}});
  CHECK(s.param("w").as<float>()[0] < 1.0f);
  CHECK(error_of([&] { build(sgd({.lr_input = "rate"}), true); }).find("lr=rate must name a float scalar input") !=
        std::string::npos);
}

TEST_CASE("api: sgd, momentum and adam take weight_decay as the spec does (0 leaves it out), and refuse bad values") {
  auto build = [](Optimizer opt) {
    GraphBuilder b("m");
    auto x = b.input("x", {DType::F32, {4, 3}});
    auto w = b.param("w", {DType::F32, {3, 1}}, ones());
    b.minimize(b.name("loss", b.mean(b.square(b.matmul(x, w)))), std::move(opt));
    return b.build();
  };
  auto spec = [](const std::string& optimizer) {
    return load_spec("model m\ninput x : f32[4, 3]\nparam w : f32[3, 1] = ones\nloss = mean(square(matmul(x, w)))\n"
                     "minimize loss with " + optimizer + "\n");
  };
  struct Case {
    Optimizer built;
    std::string written;  // the same optimizer in a spec, as the parsed stage prints it
  };
  for (const Case& c : std::vector<Case>{
           {sgd({.lr = 0.1, .weight_decay = 0.01}), "sgd(lr=0.1, weight_decay=0.01)"},
           {momentum({.lr = 0.1, .nesterov = true, .weight_decay = 0.01, .clip_norm = 1.0}),
            "momentum(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.01, clip_norm=1.0)"},
           {adam({.lr = 0.01, .weight_decay = 1e-4}), "adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0001)"},
           {adam({.lr = 0.01, .weight_decay = 0.0}), "adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-08)"},
       }) {
    CAPTURE(c.written);
    Graph g = build(c.built);
    std::string parsed = dump(g, Stage::Parsed);
    CHECK(parsed.find("minimize loss with " + c.written + "\n") != std::string::npos);
    CHECK(parsed == dump(spec(c.written), Stage::Parsed));
    CHECK(dump(g, Stage::Train) == dump(spec(c.written), Stage::Train));
  }
  CHECK(error_of([&] { build(sgd({.weight_decay = -1})); }).find("sgd: weight_decay must be at least 0, is -1") !=
        std::string::npos);
  CHECK(error_of([&] { build(momentum({.weight_decay = std::nan("")})); }).find("momentum: weight_decay must be at least 0, is nan") !=
        std::string::npos);
  CHECK(error_of([&] { build(adam({.weight_decay = HUGE_VAL})); }).find("adam: weight_decay must be at least 0, is inf") !=
        std::string::npos);
  CHECK(error_of([&] { build(adam({.weight_decay = 1e39})); }).find("adam: weight_decay is 1e+39, which does not fit") !=
        std::string::npos);
}

// The README's ```cpp blocks are samples/readme_*.cpp's marked snippets (built with the rest, so
// they compile as written); DESIGN.md's C++ API example is samples/design_api.cpp's.
TEST_CASE("api: the README's and DESIGN.md's C++ snippets are sample programs that compile and run") {
  std::vector<std::string> readme = cpp_blocks(test::read_file(test::source_path("README.md")));
  std::vector<std::string> samples = {marked_snippet(test::source_path("samples/readme_train.cpp")),
                                      marked_snippet(test::source_path("samples/readme_api.cpp"))};
  REQUIRE(readme.size() == samples.size());
  for (size_t i = 0; i < readme.size(); ++i) {
    CAPTURE(i);
    CHECK(readme[i] == samples[i]);
  }
  std::filesystem::path design = std::filesystem::path(GRADC_SOURCE_DIR) / "../shared/DESIGN.md";
  if (std::filesystem::exists(design)) {
    std::vector<std::string> blocks = cpp_blocks(test::read_file(design.string()));
    REQUIRE(blocks.size() == 1);
    CHECK(blocks[0] == marked_snippet(test::source_path("samples/design_api.cpp")));
  }
  // They run, in a directory of their own (they write a checkpoint) where samples/ is the source tree's.
  std::filesystem::path dir = test::temp_dir() / "readme";
  std::filesystem::create_directories(dir);
  if (!std::filesystem::exists(dir / "samples"))
    std::filesystem::create_directory_symlink(std::filesystem::path(GRADC_SOURCE_DIR) / "samples", dir / "samples");
  for (const char* program : {"readme_train", "readme_api", "design_api"}) {
    CAPTURE(program);
    std::string out = (dir / (std::string(program) + ".txt")).string();
    int status = std::system(fmt::format("cd {} && {}/{} >{} 2>&1", dir.string(), GRADC_BUILD_DIR, program, out).c_str());
    INFO(test::read_file(out));
    CHECK(status == 0);
  }
  CHECK(std::filesystem::exists(dir / "ckpt.safetensors"));
}

}  // namespace gradc
