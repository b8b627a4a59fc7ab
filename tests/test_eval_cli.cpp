// `gradc eval` and `gradc predict` on tiny specs whose numbers can be checked by hand, and the
// report's format against scikit-learn's documented example.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "TestUtil.h"
#include "driver/Eval.h"
#include "gradc/gradc.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

// Three classes; logits = x . w, with w the identity in the checkpoint: the prediction is the
// argmax of x. A batch of 2, so 5 rows are two full batches and one partial.
constexpr const char* kClassifier =
    "model tiny\n"
    "input x : f32[2, 3]\n"
    "input y : i32[2]\n"
    "param w : f32[3, 3] = zeros\n"
    "logits = matmul(x, w)\n"
    "loss = softmax_cross_entropy(logits, y)\n"
    "output probs = softmax(logits, axis=1)\n"
    "minimize loss with sgd(lr=0.1)\n";

struct Files {
  std::string spec, ckpt, x, y;
};

Files classifier_files(const std::string& prefix, const char* spec_text = kClassifier) {
  Files f;
  f.spec = test::write_temp(prefix + ".gir", spec_text);
  Tensor w = Tensor::of<float>({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  f.ckpt = (test::temp_dir() / (prefix + ".safetensors")).string();
  save_safetensors(f.ckpt, {{"w", &w}});
  f.x = (test::temp_dir() / (prefix + "_x.npy")).string();
  f.y = (test::temp_dir() / (prefix + "_y.npy")).string();
  // Rows: classes 0, 1, 2 right; a class 1 taken for 0; a class 2 right (the partial batch).
  save_npy(f.x, Tensor::of<float>({5, 3}, {2, 0, 0, 0, 2, 0, 0, 0, 2, 2, 0, 0, 0, 0, 2}));
  save_npy(f.y, Tensor::of<int32_t>({5}, {0, 1, 2, 1, 2}));
  return f;
}

}  // namespace

TEST_CASE("eval: the report is scikit-learn's classification_report and confusion_matrix") {
  // sklearn's documented example: y_true = [0, 1, 2, 2, 2], y_pred = [0, 0, 2, 2, 1].
  std::vector<int64_t> confusion = {1, 0, 0, 1, 0, 0, 0, 1, 2};
  CHECK(classification_report(confusion, {"class 0", "class 1", "class 2"}) ==
        "              precision    recall  f1-score   support\n"
        "\n"
        "     class 0       0.50      1.00      0.67         1\n"
        "     class 1       0.00      0.00      0.00         1\n"
        "     class 2       1.00      0.67      0.80         3\n"
        "\n"
        "    accuracy                           0.60         5\n"
        "   macro avg       0.50      0.56      0.49         5\n"
        "weighted avg       0.70      0.60      0.61         5\n");
  CHECK(format_confusion_matrix(confusion, 3) == "[[1 0 0]\n [1 0 0]\n [0 1 2]]\n");
  CHECK(format_confusion_matrix({850, 2, 13, 1000}, 2) == "[[ 850    2]\n [  13 1000]]\n");
}

TEST_CASE("eval: loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a tiny classifier") {
  Files f = classifier_files("eval_tiny");
  test::CommandResult r = test::run_gradc(fmt::format("eval {} --load {} --input x={} --input y={} --threads 1", f.spec,
                                                      f.ckpt, f.x, f.y));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // Cross-entropy of logits (2, 0, 0) and the like: log(e^2 + 2) - 2 when right, log(e^2 + 2) when
  // wrong; 4 right of 5, the fifth (the partial batch) counted once.
  double loss = std::log(std::exp(2.0) + 2.0) - 2.0 * 4 / 5;
  CHECK(r.out == fmt::format("tiny: 5 examples\n"
                             "loss: {:.4f}\n"
                             "accuracy: 0.8000 (4 of 5)\n"
                             "\n"
                             "              precision    recall  f1-score   support\n"
                             "\n"
                             "           0       0.50      1.00      0.67         1\n"
                             "           1       1.00      0.50      0.67         2\n"
                             "           2       1.00      1.00      1.00         2\n"
                             "\n"
                             "    accuracy                           0.80         5\n"
                             "   macro avg       0.83      0.83      0.78         5\n"
                             "weighted avg       0.90      0.80      0.80         5\n"
                             "\n"
                             "confusion matrix (rows: true class, columns: predicted class, in the order above):\n"
                             "[[1 0 0]\n [1 1 0]\n [0 0 2]]\n",
                             loss));

  // The same through the API, the loss exact to f32.
  EvalReport report = evaluate(load_spec_file(f.spec), {.load = f.ckpt, .data = {.inputs = {{"x", f.x}, {"y", f.y}}}});
  CHECK(report.loss == doctest::Approx(loss).epsilon(1e-6));
  CHECK(report.accuracy() == doctest::Approx(0.8));
}

TEST_CASE("eval: a spec without class labels gets the loss alone") {
  std::string spec = test::write_temp("eval_reg.gir",
                                      "model reg\ninput x : f32[2, 3]\ninput t : f32[2, 1]\nparam w : f32[3, 1]\n"
                                      "loss = mse(matmul(x, w), t)\nminimize loss with adam()\n");
  Tensor w = Tensor::of<float>({3, 1}, {1, 1, 1});
  std::string ckpt = (test::temp_dir() / "eval_reg.safetensors").string();
  save_safetensors(ckpt, {{"w", &w}});
  std::string x = (test::temp_dir() / "eval_reg_x.npy").string(), t = (test::temp_dir() / "eval_reg_t.npy").string();
  save_npy(x, Tensor::of<float>({3, 3}, {1, 1, 1, 0, 0, 1, 2, 0, 0}));
  save_npy(t, Tensor::of<float>({3, 1}, {3, 2, 0}));  // errors 0, -1, 2: squares 0, 1, 4
  test::CommandResult r = test::run_gradc(fmt::format("eval {} --load {} --input x={} --input t={}", spec, ckpt, x, t));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "reg: 3 examples\nloss: 1.6667\n");
}

TEST_CASE("eval: bad checkpoints, data and arguments are refused with exit code 1 and the reason") {
  Files f = classifier_files("eval_bad");
  auto eval = [&](const std::string& args) { return test::run_gradc(fmt::format("eval {} {}", f.spec, args)); };
  test::CommandResult r = eval(fmt::format("--input x={} --input y={}", f.x, f.y));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--load is required") != std::string::npos);
  r = eval(fmt::format("--load {}", f.ckpt));
  CHECK(r.exit_code == 1);
  CHECK(r.err == "error: gradc eval: give --data fashion-mnist or --input NAME=FILE.npy\n");
  r = eval(fmt::format("--load {} --input x={}", f.ckpt, f.x));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no data for input 'y' (i32[2]); give --input y=FILE.npy") != std::string::npos);
  r = eval(fmt::format("--load {} --input x={} --input x={} --input y={}", f.ckpt, f.x, f.x, f.y));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(fmt::format("--input x={}: given twice (first as x={})", f.x, f.x)) != std::string::npos);
  // A checkpoint of another model, and a label out of range.
  Tensor v = Tensor::of<float>({3}, {1, 2, 3});
  std::string other = (test::temp_dir() / "eval_other.safetensors").string();
  save_safetensors(other, {{"v", &v}});
  r = eval(fmt::format("--load {} --input x={} --input y={}", other, f.x, f.y));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("eval_other.safetensors: error: the checkpoint has a tensor 'v' that the model 'tiny' does not have") !=
        std::string::npos);
  // No examples: refused, not a report of zeros.
  std::string no_x = (test::temp_dir() / "eval_no_x.npy").string(), no_y = (test::temp_dir() / "eval_no_y.npy").string();
  save_npy(no_x, Tensor(TensorType{DType::F32, {0, 3}}));
  save_npy(no_y, Tensor(TensorType{DType::I32, {0}}));
  r = eval(fmt::format("--load {} --input x={} --input y={}", f.ckpt, no_x, no_y));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("the inputs hold no examples (0 rows)") != std::string::npos);
  std::string labels = (test::temp_dir() / "eval_bad_labels.npy").string();
  save_npy(labels, Tensor::of<int32_t>({5}, {0, 1, 2, 7, 0}));
  r = eval(fmt::format("--load {} --input x={} --input y={}", f.ckpt, f.x, labels));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("eval_bad_labels.npy: error: gradc eval: the label of example 4 (row 3) is 7, not a class id in [0, 3)") !=
        std::string::npos);
  CHECK(r.out.empty());
}

// Optimizer state in the checkpoint is not the model's to check: a checkpoint written by a run
// with momentum or adam serves a spec that says sgd (refused before: "has a tensor
// 'w.momentum_buffer' that the model does not have"); a tensor named for no param still is.
TEST_CASE("eval and predict: another optimizer's state in the checkpoint is ignored") {
  Files f = classifier_files("eval_other_opt");
  Tensor w = Tensor::of<float>({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}), buf(TensorType{DType::F32, {3, 3}});
  Tensor step = Tensor::of<float>({}, {7});
  std::string ckpt = (test::temp_dir() / "eval_other_opt_state.safetensors").string();
  save_safetensors(ckpt, {{"w", &w}, {"w.momentum_buffer", &buf}, {"w.exp_avg", &buf}, {"adam.step", &step}});
  test::CommandResult r = test::run_gradc(fmt::format("eval {} --load {} --input x={} --input y={}", f.spec, ckpt, f.x, f.y));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("accuracy") != std::string::npos);
  std::string out = (test::temp_dir() / "eval_other_opt_out.npy").string();
  CHECK(test::run_gradc(fmt::format("predict {} --load {} --input x={} -o {}", f.spec, ckpt, f.x, out)).exit_code == 0);
  save_safetensors(ckpt, {{"w", &w}, {"x.exp_avg", &buf}});  // x is an input, not a param
  r = test::run_gradc(fmt::format("eval {} --load {} --input x={} --input y={}", f.spec, ckpt, f.x, f.y));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("has a tensor 'x.exp_avg' that the model 'tiny' does not have") != std::string::npos);
}

TEST_CASE("predict: writes the spec's output for any number of rows as .npy") {
  Files f = classifier_files("predict_tiny");
  std::string out = (test::temp_dir() / "predict_tiny_out.npy").string();
  test::CommandResult r = test::run_gradc(fmt::format("predict {} --load {} --input x={} -o {}", f.spec, f.ckpt, f.x, out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == fmt::format("wrote 5 rows to {}\n", out));
  Tensor probs = load_npy(out);
  REQUIRE(probs.type() == TensorType{DType::F32, {5, 3}});
  double big = std::exp(2.0) / (std::exp(2.0) + 2), small = 1 / (std::exp(2.0) + 2);
  for (int64_t row = 0; row < 5; ++row) {
    int64_t hot = row == 3 ? 0 : row == 4 ? 2 : row;
    for (int64_t c = 0; c < 3; ++c) CHECK(probs.as<float>()[row * 3 + c] == doctest::Approx(c == hot ? big : small));
  }
}

TEST_CASE("predict: -o onto anything but a regular file is refused, and it stays what it was") {
  Files f = classifier_files("predict_dir");
  std::filesystem::path dir = test::temp_dir() / "predict_out_dir";
  std::filesystem::create_directories(dir);
  test::CommandResult r =
      test::run_gradc(fmt::format("predict {} --load {} --input x={} -o {}", f.spec, f.ckpt, f.x, dir.string()));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("not a regular file") != std::string::npos);
  CHECK(std::filesystem::is_directory(dir));
}

TEST_CASE("predict: a spec of several outputs needs --output to choose one") {
  std::string text = std::string(kClassifier) + "output logits\n";
  Files f = classifier_files("predict_two", text.c_str());
  std::string out = (test::temp_dir() / "predict_two_out.npy").string();
  std::string args = fmt::format("predict {} --load {} --input x={} -o {}", f.spec, f.ckpt, f.x, out);
  test::CommandResult r = test::run_gradc(args);
  CHECK(r.exit_code == 1);
  CHECK(r.err == "error: gradc predict: the spec has 2 outputs (probs, logits); choose one with --output NAME\n");
  r = test::run_gradc(args + " --output scores");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--output scores: the spec has no output 'scores' (its outputs: probs, logits)") != std::string::npos);
  r = test::run_gradc(args + " --output logits");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  Tensor logits = load_npy(out);
  CHECK(logits == Tensor::of<float>({5, 3}, {2, 0, 0, 0, 2, 0, 0, 0, 2, 2, 0, 0, 0, 0, 2}));

  // Only the chosen output's inputs need data, and another output without the batch dim does
  // not hold it to one batch of rows (both refused the chosen output before).
  std::string more = std::string(kClassifier) + "output loss\noutput w\n";
  Files g = classifier_files("predict_more", more.c_str());
  r = test::run_gradc(fmt::format("predict {} --load {} --input x={} -o {} --output probs", g.spec, g.ckpt, g.x, out));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(load_npy(out).shape() == Shape{5, 3});
  r = test::run_gradc(fmt::format("predict {} --load {} --input x={} -o {} --output loss", g.spec, g.ckpt, g.x, out));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no data for input 'y'") != std::string::npos);  // the loss does read the labels
}

}  // namespace gradc

namespace gradc {

TEST_CASE("eval: on Fashion-MNIST, the accuracy of gradc train's checkpoint is the test accuracy train reported") {
  std::string ckpt = (test::temp_dir() / "eval_seed.safetensors").string();
  test::CommandResult train = test::run_gradc(fmt::format(
      "train {} --data fashion-mnist --steps 200 --threads 1 --save {}", test::source_path("samples/specs/seed_mlp.gir"), ckpt));
  INFO(train.err);
  REQUIRE(train.exit_code == 0);
  size_t at = train.out.find("test accuracy ");
  REQUIRE(at != std::string::npos);
  double trained = std::stod(train.out.substr(at + 14));  // "84.10% (10000 images)"
  test::CommandResult r = test::run_gradc(
      fmt::format("eval {} --load {} --data fashion-mnist --threads 1", test::source_path("samples/specs/seed_mlp.gir"), ckpt));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  CHECK(r.out.find("seed_mlp: 10000 examples\n") == 0);
  at = r.out.find(" of 10000)");
  REQUIRE(at != std::string::npos);
  int64_t correct = std::stoll(r.out.substr(r.out.rfind('(', at) + 1));
  CHECK(fmt::format("{:.2f}", correct / 100.0) == fmt::format("{:.2f}", trained));
  CHECK(r.out.find("\n T-shirt/top ") != std::string::npos);
  CHECK(r.out.find("\n  Ankle boot ") != std::string::npos);
  CHECK(r.out.find("weighted avg") != std::string::npos);
}

}  // namespace gradc
