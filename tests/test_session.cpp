// The Session over the JIT-ed model: inputs, checkpoints, errors, reproducibility, raw calls.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>

#include "JitUtil.h"
#include "TestUtil.h"
#include "runtime/Safetensors.h"

namespace gradc {

using test::error_of;

namespace {

const Model& seed_model() {
  static const Model model = compile_file(test::source_path("samples/specs/seed_mlp.gir"));
  return model;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.type() == b.type() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

bool same_weights(Session& a, Session& b) {
  for (const std::string& name : a.param_names())
    if (!same_bits(a.param(name), b.param(name))) return false;
  return true;
}

}  // namespace

TEST_CASE("session: same seed and inputs give bit-identical losses and params, across compiles") {
  Model other = compile_file(test::source_path("samples/specs/seed_mlp.gir"));
  Session a(seed_model(), {.seed = 5}), b(other, {.seed = 5}), c(seed_model(), {.seed = 6});
  CHECK(same_weights(a, b));
  CHECK_FALSE(same_weights(a, c));
  for (int s = 0; s < 5; ++s) {
    auto inputs = random_inputs(seed_model().spec, static_cast<uint64_t>(s));
    double la = a.step(test::views(inputs)), lb = b.step(test::views(inputs));
    CHECK(std::memcmp(&la, &lb, sizeof la) == 0);
  }
  CHECK(same_weights(a, b));
  CHECK(a.param("adam.step").as<float>()[0] == 5.0f);
}

TEST_CASE("session: a checkpoint round trip restores params and optimizer state exactly") {
  Session a(seed_model(), {.seed = 1});
  for (int s = 0; s < 3; ++s) a.step(test::views(random_inputs(seed_model().spec, static_cast<uint64_t>(s))));
  std::string path = (test::temp_dir() / "session.safetensors").string();
  a.save(path);
  Session b(seed_model(), {.seed = 2});
  b.load(path);
  CHECK(same_weights(a, b));
  auto inputs = random_inputs(seed_model().spec, 9);
  CHECK(a.step(test::views(inputs)) == b.step(test::views(inputs)));
  CHECK(same_weights(a, b));

  // A file of params alone: the params load, the optimizer starts fresh.
  std::vector<std::pair<std::string, const Tensor*>> params;
  for (const char* name : {"w1", "b1", "w2", "b2"}) params.emplace_back(name, &a.param(name));
  std::string params_only = (test::temp_dir() / "params.safetensors").string();
  save_safetensors(params_only, params);
  Session fresh(seed_model(), {.seed = 3});
  fresh.load(params_only);
  CHECK(same_bits(fresh.param("w1"), a.param("w1")));
  CHECK(fresh.param("adam.step").as<float>()[0] == 0.0f);
  CHECK(fresh.param("w1.exp_avg").as<float>()[0] == 0.0f);
}

TEST_CASE("session: a bad checkpoint is refused with the reason, and nothing changes") {
  Session s(seed_model(), {.seed = 1});
  Tensor before = s.param("w1");
  auto save = [&](const std::string& file, std::vector<std::pair<std::string, Tensor>> tensors) {
    std::vector<std::pair<std::string, const Tensor*>> named;
    for (auto& [name, t] : tensors) named.emplace_back(name, &t);
    std::string path = (test::temp_dir() / file).string();
    save_safetensors(path, named);
    return path;
  };
  std::vector<std::pair<std::string, Tensor>> good;
  for (const std::string& name : s.param_names()) good.emplace_back(name, Tensor(s.param(name).type()));

  auto wrong_shape = good;
  wrong_shape[0].second = Tensor({DType::F32, {784, 11}});
  CHECK(error_of([&] { s.load(save("shape.safetensors", wrong_shape)); })
            .find("tensor 'w1' is f32[784, 11] in the checkpoint but f32[784, 10] in the model") != std::string::npos);
  auto wrong_dtype = good;
  wrong_dtype[1].second = Tensor({DType::F64, {10}});
  CHECK(error_of([&] { s.load(save("dtype.safetensors", wrong_dtype)); }).find("f64[10] in the checkpoint") !=
        std::string::npos);
  auto extra = good;
  extra.emplace_back("w3", Tensor({DType::F32, {2}}));
  CHECK(error_of([&] { s.load(save("extra.safetensors", extra)); }).find("'w3' that the model does not have") !=
        std::string::npos);
  auto missing = good;
  missing.erase(missing.begin() + 5);  // a state tensor, while others are there
  CHECK(error_of([&] { s.load(save("missing.safetensors", missing)); }).find("has no tensor") != std::string::npos);
  std::string truncated = test::write_temp("truncated.safetensors", test::read_file(save("t.safetensors", good)).substr(0, 100));
  CHECK(error_of([&] { s.load(truncated); }).find("truncated.safetensors") != std::string::npos);
  CHECK(error_of([&] { s.load("/nonexistent/ckpt.safetensors"); }).find("/nonexistent/ckpt.safetensors") !=
        std::string::npos);
  CHECK(same_bits(s.param("w1"), before));
}

TEST_CASE("session: inputs are checked by name, dtype and shape") {
  Session s(seed_model());
  auto inputs = random_inputs(seed_model().spec, 0);
  Tensor small({DType::F32, {32, 784}}), ints({DType::I32, {64, 784}});
  CHECK(error_of([&] { s.step({{"x", small}, {"y", inputs.at("y")}}); }).find("input 'x' expects f32[64, 784], got f32[32, 784]") !=
        std::string::npos);
  CHECK(error_of([&] { s.step({{"x", ints}, {"y", inputs.at("y")}}); }).find("got i32[64, 784]") != std::string::npos);
  CHECK(error_of([&] { s.step({{"x", inputs.at("x")}}); }).find("no value given for input 'y'") != std::string::npos);
  CHECK(error_of([&] { s.step({{"x", inputs.at("x")}, {"y", inputs.at("y")}, {"z", small}}); }).find("no input 'z'") !=
        std::string::npos);
  // predict reads x alone.
  CHECK(s.predict({{"x", inputs.at("x")}}).at("probs").type() == TensorType{DType::F32, {64, 10}});
  CHECK(error_of([&] { s.param("w9"); }).find("no param or optimizer state 'w9'") != std::string::npos);
}

TEST_CASE("session: a label out of range stops the step with the op's location, params unchanged") {
  Session s(seed_model());
  auto inputs = random_inputs(seed_model().spec, 0);
  inputs.at("y").as<int32_t>()[17] = 10;
  Tensor before = s.param("w1");
  std::string err = error_of([&] { s.step(test::views(inputs)); });
  CHECK_THROWS_AS(s.step(test::views(inputs)), StepError);
  try {
    s.step(test::views(inputs));
  } catch (const StepError& e) {
    CHECK_FALSE(e.params_changed());
  }
  CHECK(err.find("seed_mlp.gir:") != std::string::npos);
  CHECK(err.find("out of range [0, 10)") != std::string::npos);
  CHECK(same_bits(s.param("w1"), before));
  CHECK(s.param("adam.step").as<float>()[0] == 0.0f);
  inputs.at("y").as<int32_t>()[17] = -1;
  CHECK(error_of([&] { s.step(test::views(inputs)); }).find("out of range") != std::string::npos);
}

TEST_CASE("session: the raw entry point computes what step does") {
  const Model& m = seed_model();
  Session s(m, {.seed = 4});
  auto inputs = random_inputs(m.spec, 1);
  // Our own slot pointers and arena, filled from a second session's initial params.
  Session init(m, {.seed = 4});
  std::vector<Tensor> storage(m.slots.size());
  std::vector<void*> slots(m.slots.size());
  for (size_t i = 0; i < m.slots.size(); ++i) {
    const Slot& slot = m.slots[i];
    if (slot.kind == SlotKind::Input) slots[i] = inputs.at(slot.name).data();
    else {
      storage[i] = slot.kind == SlotKind::Output ? Tensor(slot.type) : init.param(slot.name);
      slots[i] = storage[i].data();
    }
  }
  std::vector<std::byte> arena(static_cast<size_t>(m.arena_bytes) + 64);
  auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(arena.data()) + 63) / 64 * 64);
  REQUIRE(m.train_step(slots.data(), aligned, nullptr) == 0);  // one thread; the session uses every core
  double loss = s.step(test::views(inputs));
  CHECK(storage[static_cast<size_t>(m.loss_slot)].as<float>()[0] == static_cast<float>(loss));
  for (size_t i = 0; i < m.slots.size(); ++i)
    if (m.slots[i].kind == SlotKind::Param) CHECK(same_bits(storage[i], s.param(m.slots[i].name)));
}

TEST_CASE("session: a spec that minimizes nothing predicts but has no train step") {
  Model m = compile_string("model f\ninput x : f32[2, 3]\nparam w : f32[3, 2] = ones\noutput y = tanh(matmul(x, w))\n");
  Session s(m);
  Tensor x = Tensor::of<float>({2, 3}, {1, 2, 3, -1, 0, 0.5f});
  const Tensor& y = s.predict({{"x", x}}).at("y");
  CHECK(y.as<float>()[0] == doctest::Approx(std::tanh(6.0)));
  CHECK(y.as<float>()[3] == doctest::Approx(std::tanh(-0.5)));
  CHECK(error_of([&] { s.step({{"x", x}}); }).find("has no train step (its spec minimizes nothing)") != std::string::npos);
}

TEST_CASE("session: the JIT casts floats to i32 toward zero, saturating, NaN to 0, as OpCases gives the interpreter, and back") {
  Model m = compile_string(
      "model c\ninput x : f32[7]\ninput n : i32[7]\noutput i = cast(x, dtype=i32)\n"
      "output d = cast(x, dtype=f64)\noutput f = mul(cast(n, dtype=f32), 0.5)\noutput back = cast(cast(x, dtype=f64), dtype=f32)\n");
  Session s(m);
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x{1.7f, -2.7f, 3.0f, -0.5f, 1e10f, -1e10f, nan};
  std::vector<int32_t> n{1, -3, 0, 7, 2147483647, -2147483647 - 1, 5};
  const Outputs& out = s.predict({{"x", x}, {"n", n}});
  std::vector<int32_t> expected{1, -2, 3, 0, 2147483647, -2147483647 - 1, 0};
  for (size_t k = 0; k < x.size(); ++k) {
    CAPTURE(k);
    CHECK(out.at("i").as<int32_t>()[k] == expected[k]);
    if (k < 6) CHECK(out.at("d").as<double>()[k] == static_cast<double>(x[k]));
    CHECK(out.at("f").as<float>()[k] == static_cast<float>(n[k]) * 0.5f);
    if (k < 6) CHECK(out.at("back").as<float>()[k] == x[k]);
  }
}

TEST_CASE("session: the JIT's f32 tanh and erf (rational functions) are within 5e-7 of the exact values, relative") {
  std::vector<float> x;
  for (int i = -20000; i <= 20000; ++i) x.push_back(static_cast<float>(i) * 5e-4f);  // [-10, 10]
  for (double v = 1e-9; v < 10; v *= 1.01) x.push_back(static_cast<float>(v)), x.push_back(static_cast<float>(-v));
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  Model m = compile_string(fmt::format("model f\ninput x : f32[{}]\noutput t = tanh(x)\noutput e = erf(x)\n", x.size()));
  Session s(m);
  const Outputs& out = s.predict({{"x", x}});
  double worst_tanh = 0, worst_erf = 0;
  for (size_t i = 0; i + 1 < x.size(); ++i) {
    double v = x[i];
    worst_tanh = std::max(worst_tanh, std::fabs(out.at("t").as<float>()[i] - std::tanh(v)) / std::max(std::fabs(std::tanh(v)), 1e-38));
    worst_erf = std::max(worst_erf, std::fabs(out.at("e").as<float>()[i] - std::erf(v)) / std::max(std::fabs(std::erf(v)), 1e-38));
  }
  MESSAGE("worst relative error: tanh ", worst_tanh, ", erf ", worst_erf);
  CHECK(worst_tanh < 5e-7);
  CHECK(worst_erf < 5e-7);
  CHECK(std::isnan(out.at("t").as<float>()[x.size() - 1]));
  CHECK(std::isnan(out.at("e").as<float>()[x.size() - 1]));
}

// Dropout's masks: 10^6 draws keep a share within 3 sigma of 1 - rate, two steps and two ops
// are independent (both dropped within 3 sigma of rate²), and the JIT draws the interpreter's bits.
TEST_CASE("session: dropout masks have the rate, are independent across steps and ops, and equal the interpreter's") {
  Model m = compile_string(
      "model masks\ninput s : f32[]\ninput t : f32[]\ninput u : f32[]\n"
      "output a = dropout_mask(s, t, rate=0.3, stream=0, shape=[1000, 1000])\n"
      "output b = dropout_mask(s, u, rate=0.3, stream=0, shape=[1000, 1000])\n"
      "output c = dropout_mask(s, t, rate=0.3, stream=1, shape=[1000, 1000])\n");
  Session s(m, {.threads = 2});
  std::vector<float> seed{12345}, step0{0}, step1{1};
  const Outputs& out = s.predict({{"s", seed}, {"t", step0}, {"u", step1}});
  const float* a = out.at("a").as<float>();
  const float* b = out.at("b").as<float>();
  const float* c = out.at("c").as<float>();
  const double n = 1e6, p = 0.3;
  double dropped = 0, both_steps = 0, both_ops = 0;
  for (size_t i = 0; i < 1000000; ++i) {
    REQUIRE((a[i] == 0.0f || a[i] == static_cast<float>(1 / 0.7)));
    dropped += a[i] == 0;
    both_steps += a[i] == 0 && b[i] == 0;
    both_ops += a[i] == 0 && c[i] == 0;
  }
  double sigma = std::sqrt(p * (1 - p) / n), sigma2 = std::sqrt(p * p * (1 - p * p) / n);
  MESSAGE("dropped ", dropped / n, ", both steps ", both_steps / n, ", both ops ", both_ops / n);
  CHECK(std::fabs(dropped / n - p) < 3 * sigma);
  CHECK(std::fabs(both_steps / n - p * p) < 3 * sigma2);
  CHECK(std::fabs(both_ops / n - p * p) < 3 * sigma2);

  Model small = compile_string("model m\ninput s : f32[]\ninput t : f32[]\noutput a = dropout_mask(s, t, rate=0.6, stream=7, shape=[3, 50])\n");
  Session js(small);
  std::vector<float> t9{9};
  const Tensor& jit = js.predict({{"s", seed}, {"t", t9}}).at("a");
  Graph g = load_spec("input s : f32[]\ninput t : f32[]\noutput a = dropout_mask(s, t, rate=0.6, stream=7, shape=[3, 50])\n", "m.gir");
  interp::Feeds feeds{{"s", interp::Tensor::of({DType::F32, {}}, {12345})}, {"t", interp::Tensor::of({DType::F32, {}}, {9})}};
  std::vector<interp::Tensor> ref = interp::evaluate(g, feeds);
  const interp::Tensor& expected = ref[static_cast<size_t>(g.outputs[0].value)];
  for (size_t i = 0; i < 150; ++i) CHECK(jit.as<float>()[i] == static_cast<float>(expected.data[i]));
}

// A model with dropout: the same seed gives the same losses bit for bit on 1 and 2 threads, a run
// resumed from a checkpoint continues as the uninterrupted one, the masks change from step to
// step, and predict is the model without dropout.
TEST_CASE("session: dropout trains reproducibly on any thread count, resumes from a checkpoint, and is x in predict") {
  const std::string spec =
      "model drop\ninput x : f32[8, 6]\ninput y : i32[8]\nparam w : f32[6, 16] = ones\nparam v : f32[16, 3] = glorot_uniform\n"
      "hidden = dropout(relu(matmul(x, w)), rate=0.5)\nloss = softmax_cross_entropy(matmul(hidden, v), y)\n"
      "output hidden\nminimize loss with sgd(lr=0.1)\n";
  Model m = compile_string(spec, "drop.gir");
  std::vector<float> x(48);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  std::vector<int32_t> y{0, 1, 2, 0, 1, 2, 0, 1};
  auto run = [&](int threads, int steps) {
    Session s(m, {.seed = 7, .threads = threads});
    std::vector<double> losses;
    for (int k = 0; k < steps; ++k) losses.push_back(s.step({{"x", x}, {"y", y}}));
    return losses;
  };
  std::vector<double> one = run(1, 5), two = run(2, 5);
  CHECK(one == two);
  CHECK(one == run(1, 5));
  CHECK(one[0] != one[1]);  // a new mask each step (the same batch, and lr small against the change)

  Session first(m, {.seed = 7});
  for (int k = 0; k < 3; ++k) first.step({{"x", x}, {"y", y}});
  std::string ckpt = (test::temp_dir() / "drop.safetensors").string();
  first.save(ckpt);
  Session resumed(m, {.seed = 99});
  resumed.load(ckpt);
  CHECK(resumed.step({{"x", x}, {"y", y}}) == one[3]);
  CHECK(resumed.step({{"x", x}, {"y", y}}) == one[4]);

  Session fresh(m, {.seed = 7});
  const Tensor& hidden = fresh.predict({{"x", x}}).at("hidden");
  for (size_t r = 0; r < 8; ++r) {
    float row = 0;
    for (size_t k = 0; k < 6; ++k) row += x[r * 6 + k];  // w is ones: every unit is the row's sum
    for (size_t u = 0; u < 16; ++u) CHECK(hidden.as<float>()[r * 16 + u] == doctest::Approx(std::max(row, 0.0f)));
  }
}

TEST_CASE("session: samples/train_seed.cpp trains through the public API") {
  std::string out = (test::temp_dir() / "train_seed.txt").string();
  int status = std::system(fmt::format("{}/train_seed --epochs 1 --steps 200 >{}", GRADC_BUILD_DIR, out).c_str());
  REQUIRE(status == 0);
  std::string text = test::read_file(out);
  CAPTURE(text);
  size_t at = text.find("test accuracy ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(text.substr(at + 14)) > 65.0);  // 200 Adam steps: about 75%; untrained: about 10%
}

TEST_CASE("session: an embedding id out of range stops the step naming gather and its line") {
  Model m = compile_string(
      "input ids : i32[2, 3]\ninput y : i32[2]\nparam table : f32[5, 4] = normal(0, 1)\n"
      "param w : f32[12, 2] = glorot_uniform\ne = reshape(gather(table, ids), shape=[2, 12])\n"
      "loss = softmax_cross_entropy(matmul(e, w), y)\nminimize loss with sgd(lr=0.1)\n",
      "embed.gir");
  Session s(m);
  std::vector<int32_t> ids{0, 4, 2, 1, 3, 0}, y{0, 1};
  Tensor before = s.param("table");
  CHECK(std::isfinite(s.step({{"ids", ids}, {"y", y}})));
  CHECK_FALSE(same_bits(s.param("table"), before));
  ids[4] = 5;
  std::string err = error_of([&] { s.step({{"ids", ids}, {"y", y}}); });
  CHECK(err.find("embed.gir:5:") != std::string::npos);
  CHECK(err.find("gather index out of range [0, 5)") != std::string::npos);
  ids[4] = -1;
  CHECK(error_of([&] { s.step({{"ids", ids}, {"y", y}}); }).find("out of range [0, 5)") != std::string::npos);
}

}  // namespace gradc
