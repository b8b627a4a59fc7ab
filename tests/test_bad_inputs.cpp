// Every bad input answered: exit code 1, one message naming what was wrong (file, and line and
// column where there are any), no crash, no partial file. One table, one row per case.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>

#include "TestUtil.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

namespace fs = std::filesystem;

std::string seed_spec() { return test::source_path("samples/specs/seed_mlp.gir"); }
std::string regression_spec() { return test::source_path("samples/specs/regression.gir"); }

std::string npy(const std::string& name, const Tensor& t) {
  std::string path = (test::temp_dir() / name).string();
  save_npy(path, t);
  return path;
}

Tensor filled(TensorType type, float v) {
  Tensor t(std::move(type));
  for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = v;
  return t;
}

// The regression spec's inputs: x : f32[32, 8], target : f32[32, 1], `rows` examples.
std::string regression_args(int64_t rows, float x_value = 0.5f, DType x_dtype = DType::F32, int64_t x_cols = 8,
                            float target = 0.1f) {
  std::string xs = x_dtype == DType::F32 ? npy("x.npy", filled({DType::F32, {rows, x_cols}}, x_value))
                                         : npy("x.npy", Tensor({DType::I32, {rows, x_cols}}));
  std::string ts = npy("t.npy", filled({DType::F32, {rows, 1}}, target));
  return fmt::format("train {} --input x={} --input target={} --no-shuffle", regression_spec(), xs, ts);
}

// The four gzipped IDX files of a small Fashion-MNIST, with one part spoiled by `spoil`.
std::string idx_header(uint8_t rank, const std::vector<uint32_t>& dims) {
  std::string s{'\0', '\0', '\x08', static_cast<char>(rank)};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((d >> shift) & 0xff));
  return s;
}
std::string fashion_dir(const std::string& name, const std::function<void(std::map<std::string, std::string>&)>& spoil) {
  std::map<std::string, std::string> files;
  for (auto [prefix, n] : {std::pair<std::string, uint32_t>{"train", 64}, {"t10k", 16}}) {
    files[prefix + "-images-idx3-ubyte.gz"] = idx_header(3, {n, 28, 28}) + std::string(n * 784, '\x40');
    std::string labels = idx_header(1, {n});
    for (uint32_t i = 0; i < n; ++i) labels.push_back(static_cast<char>(i % 10));
    files[prefix + "-labels-idx1-ubyte.gz"] = labels;
  }
  spoil(files);
  fs::path dir = test::temp_dir() / name;
  fs::create_directories(dir);
  for (const auto& [file, content] : files) test::write_temp(name + "/" + file, content);
  return dir.string();
}

std::string checkpoint(const std::string& name, std::vector<std::pair<std::string, Tensor>> tensors) {
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (auto& [n, t] : tensors) named.emplace_back(n, &t);
  std::string path = (test::temp_dir() / name).string();
  save_safetensors(path, named);
  return path;
}

// The seed's params, one of them replaced.
std::vector<std::pair<std::string, Tensor>> seed_params() {
  return {{"w1", Tensor({DType::F32, {784, 10}})}, {"b1", Tensor({DType::F32, {10}})},
          {"w2", Tensor({DType::F32, {10, 10}})}, {"b2", Tensor({DType::F32, {10}})}};
}

struct Case {
  std::string name;
  std::function<std::string()> args;  // the command line (files made here)
  std::string expected;               // in the message
  std::string no_file = "";           // a path that must not exist afterwards
};

std::vector<Case> cases() {
  auto spec = [](const std::string& file, const std::string& text) { return "dump " + test::write_temp(file, text); };
  auto t = [](std::string s) { return s; };
  return {
      // Specs: empty, binary, missing, and every kind of mistake in them.
      {"empty spec", [=] { return spec("empty.gir", ""); }, "empty.gir:1:1: error: the spec is empty"},
      {"blank spec", [=] { return spec("blank.gir", "\n\n  # nothing\n"); }, "the spec is empty"},
      {"binary spec", [=] { return spec("binary.gir", std::string("\x7f" "ELF\x02\x01\x01\0\0\0", 10)); }, "binary.gir:1:1: error"},
      {"missing spec", [=] { return t("dump /nonexistent/model.gir"); }, "/nonexistent/model.gir: error: no such file"},
      {"spec is a directory", [=] { return t("dump " + test::temp_dir().string()); }, "not a regular file"},
      {"unknown op", [=] { return spec("op.gir", "input x : f32[2]\noutput y = frobnicate(x)\n"); }, "op.gir:2:12: error"},
      {"matmul shapes", [=] { return spec("mm.gir", "input x : f32[2, 3]\ninput w : f32[4, 5]\noutput y = matmul(x, w)\n"); },
       "mm.gir:3:12: error: matmul of f32[2, 3] by f32[4, 5]: inner dimensions differ"},
      {"dtypes differ", [=] { return spec("dt.gir", "input x : f32[2]\ninput y : i32[2]\noutput z = add(x, y)\n"); }, "dt.gir:3:12: error: add expects a float tensor, got i32[2]"},
      {"broadcast", [=] { return spec("bc.gir", "input x : f32[2, 3]\ninput y : f32[4]\noutput z = add(x, y)\n"); }, "bc.gir:3:12: error"},
      {"undefined name", [=] { return spec("undef.gir", "input x : f32[2]\noutput y = relu(q)\n"); }, "undef.gir:2:17: error"},
      {"redefined name", [=] { return spec("dup.gir", "input x : f32[2]\ninput x : f32[3]\n"); }, "dup.gir:2:7: error"},
      {"bad type", [=] { return spec("type.gir", "input x : f33[2]\n"); }, "type.gir:1:11: error"},
      {"bad attribute", [=] { return spec("attr.gir", "input x : f32[2, 3]\noutput y = softmax(x, axis=5)\n"); }, "attr.gir:2:"},
      {"loss not scalar", [=] { return spec("loss.gir", "param w : f32[2]\nminimize w with sgd(lr=0.1)\n"); }, "loss.gir:2:"},
      {"unknown optimizer", [=] { return spec("opt.gir", "param w : f32[]\nminimize w with lbfgs(lr=1)\n"); }, "opt.gir:2:17: error"},
      {"unclosed call", [=] { return spec("open.gir", "input x : f32[2]\noutput y = relu(x\n"); }, "open.gir:"},
      {"declared type wrong", [=] { return spec("decl.gir", "input x : f32[2]\ny : f32[3] = relu(x)\noutput y\n"); }, "decl.gir:2:"},
      {"unknown stage", [=] { return "dump " + seed_spec() + " --stage banana"; }, "banana"},
      // Too big for this machine: refused before compiling, with the bytes.
      {"model too big", [=] { return "bench " + test::write_temp("huge.gir", "model huge\ninput x : f32[1, 4000000]\nparam w : f32[4000000, 1000000] = zeros\noutput y = matmul(x, w)\n"); },
       "model 'huge' needs 32000"},  // w, and w packed for the GEMM (Memory.cpp's breakdown)
      // .npy inputs.
      {"no data given", [=] { return "train " + seed_spec(); }, "give --data fashion-mnist or --input NAME=FILE.npy"},
      {"--input without =", [=] { return "train " + regression_spec() + " --input x.npy"; }, "expected NAME=FILE.npy"},
      {"input the spec lacks", [=] { return regression_args(64) + " --input z=" + npy("z.npy", filled({DType::F32, {64, 8}}, 0)); },
       "the spec has no input 'z'"},
      {"input file missing", [=] { return "train " + regression_spec() + " --input x=/nonexistent/x.npy --input target=/nonexistent/t.npy"; },
       "/nonexistent/x.npy"},
      {"input missing", [=] { return "train " + regression_spec() + " --input x=" + npy("x1.npy", filled({DType::F32, {64, 8}}, 0)); },
       "no data for input 'target'"},
      {"npy wrong dtype", [=] { return regression_args(64, 0.5f, DType::I32); }, "does not hold examples of f32[32, 8]"},
      {"npy wrong row size", [=] { return regression_args(64, 0.5f, DType::F32, 7); }, "does not hold examples of f32[32, 8]"},
      {"npy rows differ", [=] { return "train " + regression_spec() + " --input x=" + npy("x2.npy", filled({DType::F32, {64, 8}}, 0)) +
                                       " --input target=" + npy("t2.npy", filled({DType::F32, {63, 1}}, 0)); }, "63 rows, but x has 64"},
      {"npy fewer rows than a batch", [=] { return regression_args(10); }, "10 examples make no full batch of 32"},
      {"npy truncated", [=] {
         std::string good = test::read_file(npy("x3.npy", filled({DType::F32, {64, 8}}, 0)));
         return "train " + regression_spec() + " --input x=" + test::write_temp("trunc.npy", good.substr(0, good.size() - 9)) +
                " --input target=" + npy("t3.npy", filled({DType::F32, {64, 1}}, 0)); }, "trunc.npy"},
      {"npy not npy", [=] { return "train " + regression_spec() + " --input x=" + test::write_temp("junk.npy", "PK\x03\x04 zip file") +
                                    " --input target=" + npy("t4.npy", filled({DType::F32, {64, 1}}, 0)); }, "junk.npy"},
      // The loss becomes infinite: stop at the step, keep the last good checkpoint.
      {"loss not finite", [=] { return regression_args(64, 0.5f, DType::F32, 8, 3e37f) + " --save " + (test::temp_dir() / "good.safetensors").string(); },
       "step 1 (epoch 1, batch 1): train step stopped, params unchanged: the loss 'loss' is not finite"},
      {"--data-dir without --data", [=] { return regression_args(64) + " --data-dir /tmp"; }, "--data-dir requires --data"},
      // Fashion-MNIST's IDX files.
      {"idx directory missing", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir /nonexistent/fmnist"; }, "/nonexistent/fmnist"},
      {"idx file missing", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir " +
                                         fashion_dir("no-labels", [](auto& f) { f.erase("train-labels-idx1-ubyte.gz"); }); },
       "train-labels-idx1-ubyte.gz"},
      {"idx truncated", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir " +
                                      fashion_dir("short", [](auto& f) { f["train-images-idx3-ubyte.gz"].resize(5000); }); },
       "train-images-idx3-ubyte.gz"},
      {"idx bad magic", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir " +
                                      fashion_dir("magic", [](auto& f) { f["t10k-labels-idx1-ubyte.gz"][2] = '\x42'; }); },
       "t10k-labels-idx1-ubyte.gz"},
      {"idx label out of range", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir " +
                                               fashion_dir("label", [](auto& f) { f["train-labels-idx1-ubyte.gz"][20] = 12; }); },
       "train-labels-idx1-ubyte.gz"},
      {"idx images not 28x28", [=] { return "train " + seed_spec() + " --data fashion-mnist --data-dir " +
                                             fashion_dir("small", [](auto& f) { f["train-images-idx3-ubyte.gz"] = idx_header(3, {64, 14, 14}) + std::string(64 * 196, '\0'); }); },
       "train-images-idx3-ubyte.gz"},
      {"label out of range in a step", [=] {
         Tensor y({DType::I32, {64}});
         y.as<int32_t>()[7] = 10;
         return "train " + seed_spec() + " --input x=" + npy("fx.npy", filled({DType::F32, {64, 784}}, 0.5f)) + " --input y=" + npy("fy.npy", y); },
       "step 1 (epoch 1, batch 1): train step stopped, params unchanged: "},
      // Checkpoints.
      {"checkpoint missing", [=] { return "train " + seed_spec() + " --steps 1 --input x=" + npy("cx.npy", filled({DType::F32, {64, 784}}, 0)) +
                                           " --input y=" + npy("cy.npy", Tensor({DType::I32, {64}})) + " --load /nonexistent/c.safetensors"; },
       "/nonexistent/c.safetensors"},
      {"checkpoint truncated", [=] {
         std::string good = test::read_file(checkpoint("full.safetensors", seed_params()));
         return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " + test::write_temp("cut.safetensors", good.substr(0, good.size() / 2)); },
       "cut.safetensors"},
      {"checkpoint header garbage", [=] { return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " +
                                                  test::write_temp("garbage.safetensors", std::string("\x10\0\0\0\0\0\0\0{not json at all", 24)); },
       "garbage.safetensors"},
      {"checkpoint wrong shape", [=] {
         auto p = seed_params();
         p[2].second = Tensor({DType::F32, {10, 11}});
         return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " + checkpoint("shape.safetensors", p); },
       "tensor 'w2' is f32[10, 11] in the checkpoint but f32[10, 10] in the model"},
      {"checkpoint wrong dtype", [=] {
         auto p = seed_params();
         p[1].second = Tensor({DType::F64, {10}});
         return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " + checkpoint("dtype.safetensors", p); },
       "tensor 'b1' is f64[10] in the checkpoint"},
      {"checkpoint of another model", [=] {
         auto p = seed_params();
         p.emplace_back("w3", Tensor({DType::F32, {3}}));
         return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " + checkpoint("extra.safetensors", p); },
       "the checkpoint has a tensor 'w3' that the model does not have"},
      {"checkpoint is an npy file", [=] { return "train " + seed_spec() + " --steps 1 --data fashion-mnist --load " +
                                                  npy("notckpt.npy", filled({DType::F32, {2}}, 0)); }, "notckpt.npy"},
      {"save into a missing directory", [=] { return "train " + seed_spec() + " --steps 1 --data fashion-mnist --save /nonexistent/dir/c.safetensors"; },
       "/nonexistent/dir/c.safetensors", "/nonexistent/dir/c.safetensors"},
      {"save onto a directory", [=] {
         fs::create_directories(test::temp_dir() / "a-dir.safetensors");
         return "train " + seed_spec() + " --steps 1 --data fashion-mnist --save " + (test::temp_dir() / "a-dir.safetensors").string(); },
       "a-dir.safetensors"},
      {"log into a missing directory", [=] { return "train " + seed_spec() + " --steps 1 --data fashion-mnist --log /nonexistent/dir/log.csv"; },
       "/nonexistent/dir/log.csv", "/nonexistent/dir/log.csv"},
      {"check without params", [=] { return "check " + test::write_temp("noparam.gir", "input x : f32[2]\nloss = sum(x)\nminimize loss with sgd(lr=1)\n"); },
       "no param reaches the loss"},
  };
}

}  // namespace

TEST_CASE("bad inputs: every case exits 1 with one message saying what is wrong, and leaves no partial file") {
  std::vector<Case> all = cases();
  CHECK(all.size() >= 40);
  for (const Case& c : all) {
    CAPTURE(c.name);
    std::string args = c.args();
    CAPTURE(args);
    test::CommandResult r = test::run_gradc(args);
    CAPTURE(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(c.expected) != std::string::npos);
    CHECK(!r.err.empty());
    CHECK(r.err.find("internal error") == std::string::npos);
    if (!c.no_file.empty()) {
      CHECK_FALSE(fs::exists(c.no_file));
      CHECK_FALSE(fs::exists(c.no_file + ".tmp"));
    }
  }
}

TEST_CASE("bad inputs: a loss that is not finite keeps the last good checkpoint") {
  std::string good = (test::temp_dir() / "kept.safetensors").string();
  // The targets are so large that the squared error overflows f32 in the first step.
  test::CommandResult r = test::run_gradc(regression_args(64, 0.5f, DType::F32, 8, 3e37f) + " --save " + good);
  REQUIRE(r.exit_code == 1);
  CHECK(r.err.find("the last good params and state are saved in " + good) != std::string::npos);
  std::map<std::string, Tensor> saved = load_safetensors(good);
  REQUIRE(saved.count("w1"));
  for (int64_t i = 0; i < saved.at("w1").numel(); ++i) CHECK(std::isfinite(saved.at("w1").as<float>()[i]));
}

}  // namespace gradc
