// Non-finite values in a native step: a param whose new value is NaN or infinite stops the step
// with an error naming it (the update kernels flag it as they store it), and a checkpoint is
// never written with a non-finite value in it.
#include <doctest/doctest.h>

#include <filesystem>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

// The error of one step of `spec` on inputs of ones, or "" when the step succeeds; `changed`
// (if given) is set to whether the step said it had changed params.
std::string step_error(Session& s, const Model& m, bool* changed = nullptr) {
  std::map<std::string, Tensor> inputs;
  for (const Slot& slot : m.slots)
    if (slot.kind == SlotKind::Input) {
      Tensor t(slot.type);
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (t.dtype() == DType::F32) t.as<float>()[i] = 1.0f;
        else if (t.dtype() == DType::F64) t.as<double>()[i] = 1.0;
      }
      inputs.emplace(slot.name, std::move(t));
    }
  Feeds feeds;
  for (const auto& [name, t] : inputs) feeds.emplace(name, TensorView(t));
  try {
    s.step(feeds);
  } catch (const StepError& e) {
    if (changed) *changed = e.params_changed();
    return e.message();
  }
  return "";
}

// sqrt(relu(z)) at z = 0: the loss is 0, its gradient 0 * inf = NaN.
const char* kNanGradient = R"(model nan_grad
input x : DT[8, 3]
param w : DT[3, 2] = zeros
param b : DT[2] = zeros
loss = sum(sqrt(relu(add(matmul(x, w), b))))
minimize loss with OPT
)";

std::string spec(const std::string& dtype, const std::string& optimizer, const char* text = kNanGradient) {
  std::string s = text;
  for (size_t at; (at = s.find("DT")) != std::string::npos;) s.replace(at, 2, dtype);
  s.replace(s.find("OPT"), 3, optimizer);
  return s;
}

}  // namespace

TEST_CASE("nonfinite: a NaN gradient stops the step naming the param, for every optimizer, in f32 and f64") {
  for (const char* dtype : {"f32", "f64"})
    for (const char* optimizer : {"sgd(lr=0.1)", "momentum(lr=0.1, momentum=0.9)", "adam(lr=0.01)", "adamw(lr=0.01)",
                                  "adam(lr=0.01, clip_norm=1.0)"}) {
      CAPTURE(dtype);
      CAPTURE(optimizer);
      Model m = compile_string(spec(dtype, optimizer), "nan_grad.gir");
      Session s(m);
      bool changed = false;
      std::string error = step_error(s, m, &changed);
      CHECK(error.find("params changed") != std::string::npos);
      CHECK(changed);
      CHECK(error.find("is not finite after this step's update") != std::string::npos);
      CHECK((error.find("param 'w'") != std::string::npos || error.find("param 'b'") != std::string::npos));
    }
}

TEST_CASE("nonfinite: a finite gradient whose update overflows, and adam(beta1=1.0), are caught") {
  // lr * gradient overflows f32: w - 3e38 * 16 is -inf.
  const char* overflow = R"(model overflow
input x : DT[4, 4]
param w : DT[4, 4] = ones
loss = sum(matmul(x, w))
minimize loss with OPT
)";
  {
    Model m = compile_string(spec("f32", "sgd(lr=3e38)", overflow), "overflow.gir");
    Session s(m);
    CHECK(step_error(s, m).find("param 'w' is not finite") != std::string::npos);
  }
  // 1 - beta1^t = 0 would make Adam's bias correction divide by zero: the verifier refuses
  // beta1 = 1 (outside torch's [0, 1)) before anything runs.
  CHECK_THROWS_WITH(compile_string(spec("f32", "adam(lr=0.01, beta1=1.0)", overflow), "beta1.gir"),
                    doctest::Contains("beta1 must be in [0, 1), is 1"));
  {
    // The same model with a sane lr trains without a complaint.
    Model m = compile_string(spec("f32", "sgd(lr=0.01)", overflow), "fine.gir");
    Session s(m);
    CHECK(step_error(s, m).empty());
  }
}

TEST_CASE("nonfinite: a GEMM epilogue's update is checked on every thread count and tile shape") {
  // 300 x 200 weights: the update runs in the GEMM's tile epilogue, over several tasks.
  const char* wide = R"(model wide
input x : f32[64, 300]
param w : f32[300, 200] = zeros
loss = sum(sqrt(relu(matmul(x, w))))
minimize loss with adam(lr=0.01)
)";
  Model m = compile_string(wide, "wide.gir");
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    Session s(m, {.threads = threads});
    CHECK(step_error(s, m).find("param 'w' is not finite") != std::string::npos);
  }
}

TEST_CASE("nonfinite: a checkpoint holding a NaN is never written, a finite one is") {
  std::filesystem::path dir = test::temp_dir();
  Model m = compile_string(spec("f32", "sgd(lr=0.1)"), "nan_grad.gir");
  Session s(m);
  s.save((dir / "before.safetensors").string());
  CHECK(std::filesystem::exists(dir / "before.safetensors"));
  REQUIRE(!step_error(s, m).empty());
  std::string path = (dir / "after.safetensors").string();
  std::string error;
  try {
    s.save(path);
  } catch (const Error& e) {
    error = e.message();
  }
  CHECK(error.find("non-finite") != std::string::npos);
  CHECK(!std::filesystem::exists(path));
  // A value set by hand is refused the same way.
  Session fresh(m);
  fresh.param("w").as<float>()[3] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(fresh.save(path), Error);
  CHECK(!std::filesystem::exists(path));

  // Nor read: a NaN checkpoint from elsewhere (written by hand here) is refused by load, eval
  // and predict, naming the tensor (predict wrote NaN outputs and exited 0).
  Session good(m);
  std::string written = (dir / "elsewhere.safetensors").string();
  Tensor w = good.param("w");
  w.as<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (const std::string& name : good.param_names()) named.emplace_back(name, name == "w" ? &w : &good.param(name));
  save_safetensors(written, named);
  Session loading(m);
  std::string refused;
  try {
    loading.load(written);
  } catch (const Error& e) {
    refused = e.what();
  }
  CHECK(refused.find("elsewhere.safetensors: error: tensor 'w' holds a non-finite value (element 1 is nan): not loaded") !=
        std::string::npos);
  std::string spec_path = test::write_temp("nan_ckpt.gir", spec("f32", "sgd(lr=0.1)"));
  std::map<std::string, Tensor> rows = random_inputs(m.spec, 1);
  std::string x = (dir / "nan_ckpt_x.npy").string();
  save_npy(x, rows.at("x"));
  for (const char* command : {"eval", "train"}) {
    CAPTURE(command);
    test::CommandResult r = test::run_gradc(fmt::format("{} {} --load {} --input x={}", command, spec_path, written, x));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("tensor 'w' holds a non-finite value") != std::string::npos);
  }
}

}  // namespace gradc
