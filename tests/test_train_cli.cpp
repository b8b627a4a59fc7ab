// `gradc train` on any spec: specs without labels, scalar inputs (--feed), learning-rate
// schedules, validation (--val), per-epoch log rows, early stopping, --save-every and what a
// failed step leaves behind.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <sstream>
#include <thread>

#include "TestUtil.h"
#include "driver/Train.h"
#include "gradc/gradc.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

using namespace gradc;

namespace {

// The rows of a --log CSV of kind `kind`, split into columns (the header checked).
std::vector<std::vector<std::string>> log_rows(const std::string& csv, const std::string& kind) {
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  CHECK(line + "\n" == kLogHeader);
  std::vector<std::vector<std::string>> rows;
  while (std::getline(lines, line)) {
    std::vector<std::string> cols;
    std::string col;
    std::istringstream in(line);
    while (std::getline(in, col, ',')) cols.push_back(col);
    if (line.back() == ',') cols.push_back("");
    REQUIRE(cols.size() == 8);
    if (cols[0] == kind) rows.push_back(cols);
  }
  return rows;
}

std::string path(const std::string& name) { return (test::temp_dir() / name).string(); }

// regression.gir's data: target = the sum of x's columns / 4 (96 rows), or its negation.
void write_regression_data(const std::string& prefix, int rows, float sign) {
  std::vector<float> x(static_cast<size_t>(rows) * 8), target(static_cast<size_t>(rows));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(((i + 7 * prefix.size()) * 37 % 101) / 101.0 - 0.5);
  for (size_t r = 0; r < target.size(); ++r)
    for (size_t c = 0; c < 8; ++c) target[r] += sign * x[r * 8 + c] / 4;
  save_npy(path(prefix + "x.npy"), Tensor::of<float>({rows, 8}, x));
  save_npy(path(prefix + "t.npy"), Tensor::of<float>({rows, 1}, target));
}

// regression.gir with its lr an input scalar.
const char* kScheduled = R"(model scheduled
input x : f32[32, 8]
input target : f32[32, 1]
input lr : f32[]
param w1 : f32[8, 16] = he_normal
param b1 : f32[16]    = zeros
param w2 : f32[16, 1] = glorot_uniform
param b2 : f32[1]     = zeros
h    = tanh(add(matmul(x, w1), b1))
pred = add(matmul(h, w2), b2)
loss = mse(pred, target)
output pred
minimize loss with sgd(lr=lr)
)";

double number_after(const std::string& text, const std::string& what, bool last = false) {
  size_t at = last ? text.rfind(what) : text.find(what);
  REQUIRE(at != std::string::npos);
  return std::stod(text.substr(at + what.size()));
}

}  // namespace

// "A dumped training graph compiles to the same step": its assign lines, no minimize, the loss as
// its first output. With --data fashion-mnist it was refused ("validation reports the loss of
// `minimize`"); it trains to the same checkpoint bytes and the same test figures as the spec.
TEST_CASE("train_cli: a dumped training graph trains on Fashion-MNIST as its spec does, bit for bit") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  for (const char* stage : {"grad", "train", "simplified"}) {
    CAPTURE(stage);
    test::CommandResult dumped = test::run_gradc(fmt::format("dump {} --stage {}", seed, stage));
    REQUIRE(dumped.exit_code == 0);
    if (std::string_view(stage) == "grad") {  // the step again, from a graph with assign lines
      std::string train = test::write_temp("seed_train.gir", test::run_gradc("dump " + seed + " --stage train").out);
      test::CommandResult again = test::run_gradc(fmt::format("dump {} --stage grad", train));
      CHECK(again.exit_code == 0);  // was "autodiff: ... nothing to differentiate"
      CHECK(again.out == test::read_file(train));
      continue;
    }
    std::string spec = test::write_temp(fmt::format("seed_{}.gir", stage), dumped.out);
    test::CommandResult a = test::run_gradc(fmt::format("train {} --data fashion-mnist --steps 30 --save {}", seed, path("a.st")));
    test::CommandResult b = test::run_gradc(fmt::format("train {} --data fashion-mnist --steps 30 --save {}", spec, path("b.st")));
    CAPTURE(b.err);
    REQUIRE(a.exit_code == 0);
    REQUIRE(b.exit_code == 0);
    CHECK(number_after(a.out, "test accuracy ") == number_after(b.out, "test accuracy "));
    CHECK(number_after(a.out, "test loss ") == number_after(b.out, "test loss "));
    CHECK(test::read_file(path("a.st")) == test::read_file(path("b.st")));
    // eval takes its loss from the first output too: the same report (was "minimizes nothing").
    test::CommandResult ea = test::run_gradc(fmt::format("eval {} --load {} --data fashion-mnist", seed, path("a.st")));
    test::CommandResult eb = test::run_gradc(fmt::format("eval {} --load {} --data fashion-mnist", spec, path("b.st")));
    CAPTURE(eb.err);
    CHECK(eb.exit_code == 0);
    CHECK(ea.out == eb.out);
  }
}

TEST_CASE("train_cli: --data fashion-mnist trains a spec without labels and reports the test loss") {
  std::string log = path("ae.csv");
  test::CommandResult r = test::run_gradc("train " + test::source_path("samples/specs/autoencoder.gir") +
                                          " --data fashion-mnist --steps 40 --log " + log);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  CHECK(r.out.find("test accuracy") == std::string::npos);
  double test_loss = number_after(r.out, "test loss ");
  CHECK(test_loss > 0);
  CHECK(test_loss < 0.2);  // pixels in [0, 1]: an untrained model's mse is about 0.5
  std::vector<std::vector<std::string>> epochs = log_rows(test::read_file(log), "epoch");
  REQUIRE(epochs.size() == 1);
  CHECK(std::abs(std::stod(epochs[0][4]) - test_loss) < 1e-4);
  CHECK(epochs[0][5].empty());  // no classes, no accuracy

  // The seed keeps its accuracy, now beside the test loss, in the log too.
  std::string seed_log = path("seed.csv");
  test::CommandResult seed = test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") +
                                             " --data fashion-mnist --steps 100 --log " + seed_log);
  REQUIRE(seed.exit_code == 0);
  double accuracy = number_after(seed.out, "test accuracy ");
  CHECK(accuracy > 50);
  CHECK(number_after(seed.out, "test loss ") < 2.0);
  std::vector<std::vector<std::string>> seed_epochs = log_rows(test::read_file(seed_log), "epoch");
  REQUIRE(seed_epochs.size() == 1);
  CHECK(std::abs(100 * std::stod(seed_epochs[0][5]) - accuracy) < 0.01);
}

TEST_CASE("train_cli: --feed sets a scalar input every step") {
  write_regression_data("feed_", 96, 1);
  std::string spec = test::write_temp("scheduled.gir", kScheduled);
  std::string data = " --input x=" + path("feed_x.npy") + " --input target=" + path("feed_t.npy") + " --no-shuffle";
  // lr = 0: nothing moves, every epoch's loss is the same; lr = 0.05: it falls.
  test::CommandResult still = test::run_gradc("train " + spec + data + " --epochs 3 --feed lr=0");
  CAPTURE(still.err);
  REQUIRE(still.exit_code == 0);
  CHECK(number_after(still.out, "mean loss ") == number_after(still.out, "mean loss ", true));
  test::CommandResult moving = test::run_gradc("train " + spec + data + " --epochs 30 --feed lr=0.05");
  REQUIRE(moving.exit_code == 0);
  CHECK(number_after(moving.out, "mean loss ", true) < 0.5 * number_after(moving.out, "mean loss "));

  test::CommandResult none = test::run_gradc("train " + spec + data);
  CHECK(none.exit_code == 1);
  CHECK(none.err.find("no value for the scalar input 'lr' (give --feed lr=VALUE, or --lr-schedule)") != std::string::npos);
  test::CommandResult as_input = test::run_gradc("train " + spec + data + " --input lr=" + path("feed_t.npy"));
  CHECK(as_input.exit_code == 1);
  CHECK(as_input.err.find("'lr' is a scalar input (f32[]), set it with --feed lr=VALUE") != std::string::npos);
  // The lr fed is checked as the spec's lr=-1 is (it trained uphill), and so is one beyond f32.
  test::CommandResult negative = test::run_gradc("train " + spec + data + " --feed lr=-1");
  CHECK(negative.exit_code == 1);
  CHECK(negative.err.find("--feed lr=-1: 'lr' is the optimizer's lr, which must be at least 0") != std::string::npos);
  test::CommandResult huge = test::run_gradc("train " + spec + data + " --feed lr=1e39");
  CHECK(huge.exit_code == 1);
  CHECK(huge.err.find("does not fit in the input's f32 (it would be inf)") != std::string::npos);
  test::CommandResult not_scalar = test::run_gradc("train " + spec + data + " --feed lr=0.1 --feed x=1");
  CHECK(not_scalar.exit_code == 1);
  CHECK(not_scalar.err.find("--feed sets scalar inputs") != std::string::npos);
  for (const char* bad : {"lr", "lr=", "lr=abc", "lr=nan", "=1"}) {
    CAPTURE(bad);
    test::CommandResult r = test::run_gradc("train " + spec + data + " --feed " + bad);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("expected NAME=VALUE") != std::string::npos);
  }
  CHECK(test::run_gradc("train " + spec + data + " --feed lr=0.1 --feed lr=0.2").err.find("given twice") !=
        std::string::npos);
}

TEST_CASE("train_cli: each learning-rate schedule follows its formula") {
  using K = LrSchedule::Kind;
  const double pi = std::acos(-1.0);
  LrSchedule constant{K::Constant, 0.1};
  CHECK(constant.at(0, 10) == 0.1);
  CHECK(constant.at(9, 10) == 0.1);
  LrSchedule step{K::Step, 0.1, 0, 0.5, 3};
  CHECK(step.at(2, 10) == doctest::Approx(0.1));
  CHECK(step.at(3, 10) == doctest::Approx(0.05));
  CHECK(step.at(7, 10) == doctest::Approx(0.025));
  LrSchedule exponential{K::Exponential, 0.1, 0, 0.5, 2};
  CHECK(exponential.at(1, 10) == doctest::Approx(0.1 * std::sqrt(0.5)));
  CHECK(exponential.at(4, 10) == doctest::Approx(0.025));
  LrSchedule cosine{K::Cosine, 0.1, 0.01};
  CHECK(cosine.at(0, 100) == doctest::Approx(0.1));
  CHECK(cosine.at(50, 100) == doctest::Approx(0.055));
  CHECK(cosine.at(25, 100) == doctest::Approx(0.01 + 0.09 * (1 + std::cos(pi / 4)) / 2));
  CHECK(cosine.at(99, 100) > 0.01);
  LrSchedule warm{K::WarmupCosine, 0.1, 0, 0.1, 1, 10};
  CHECK(warm.at(0, 110) == 0);  // as transformers' schedule: lr 0 at step 0
  CHECK(warm.at(5, 110) == doctest::Approx(0.05));
  CHECK(warm.at(10, 110) == doctest::Approx(0.1));
  CHECK(warm.at(60, 110) == doctest::Approx(0.05));
  CHECK(warm.at(110, 110) == doctest::Approx(0.0));
}

TEST_CASE("train_cli: --lr-schedule feeds the spec's lr input each step, and is refused for a number lr") {
  write_regression_data("sched_", 32, 1);  // one batch an epoch: the same batch every step
  std::string spec = test::write_temp("scheduled.gir", kScheduled);
  std::string data = " --input x=" + path("sched_x.npy") + " --input target=" + path("sched_t.npy") + " --no-shuffle";
  std::string log = path("sched.csv");
  test::CommandResult r =
      test::run_gradc("train " + spec + data + " --epochs 6 --lr-schedule step --lr 0.1 --gamma 0.5 --every 2 --log " + log);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  std::vector<std::vector<std::string>> steps = log_rows(test::read_file(log), "step");
  REQUIRE(steps.size() == 6);
  const double expected[] = {0.1, 0.1, 0.05, 0.05, 0.025, 0.025};
  for (size_t i = 0; i < 6; ++i) CHECK(std::stod(steps[i][6]) == doctest::Approx(expected[i]).epsilon(1e-6));

  // The fed lr is the step's: a constant schedule trains as --feed does, bit for bit, and a
  // schedule that drops to ~0 after one step leaves the loss where that step put it.
  std::string fed = path("fed.csv");
  REQUIRE(test::run_gradc("train " + spec + data + " --epochs 4 --lr 0.05 --log " + log).exit_code == 0);
  REQUIRE(test::run_gradc("train " + spec + data + " --epochs 4 --feed lr=0.05 --log " + fed).exit_code == 0);
  std::vector<std::vector<std::string>> a = log_rows(test::read_file(log), "step"), b = log_rows(test::read_file(fed), "step");
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(a[i][3] == b[i][3]);
  CHECK(a[0][3] != a[3][3]);
  REQUIRE(test::run_gradc("train " + spec + data + " --epochs 4 --lr-schedule step --lr 0.05 --gamma 1e-30 --log " + log)
              .exit_code == 0);
  std::vector<std::vector<std::string>> frozen = log_rows(test::read_file(log), "step");
  CHECK(frozen[0][3] == a[0][3]);
  CHECK(frozen[1][3] == a[1][3]);  // the loss after one step at 0.05
  CHECK(frozen[2][3] == frozen[1][3]);
  CHECK(frozen[3][3] == frozen[1][3]);

  // A spec whose lr is a number: the error points at its minimize line.
  test::CommandResult number = test::run_gradc("train " + test::source_path("samples/specs/regression.gir") + data +
                                               " --lr-schedule cosine --lr 0.1");
  CHECK(number.exit_code == 1);
  CHECK(number.err.find("regression.gir:17:1: error: --lr-schedule needs the optimizer's lr to name a scalar input") !=
        std::string::npos);
  CHECK(number.err.find("this spec's lr is the number 0.01") != std::string::npos);
  CHECK(number.err.find("minimize loss with sgd(lr=0.01)") != std::string::npos);
  // Options that do not go with the schedule, or out of range.
  for (const char* bad : {"--lr-schedule cosine", "--lr-schedule cosine --lr 0.1 --gamma 0.5",
                          "--lr-schedule step --lr 0.1 --warmup 3", "--lr-schedule warmup-cosine --lr 0.1",
                          "--lr-schedule warmup-cosine --lr 0.1 --warmup 10", "--lr -1", "--lr 0.1 --lr-min 1",
                          "--lr-schedule step --lr 0.1 --every 0", "--lr-schedule banana --lr 0.1",
                          "--lr-schedule step --lr 0.1 --feed lr=0.1"}) {
    CAPTURE(bad);
    test::CommandResult e = test::run_gradc("train " + spec + data + " --epochs 2 " + bad);
    CHECK(e.exit_code == 1);
    CHECK(!e.err.empty());
  }
}

TEST_CASE("train_cli: --val evaluates held-out data each epoch, in the output and in the log's epoch rows") {
  write_regression_data("tr_", 96, 1);
  write_regression_data("va_", 40, 1);  // one full batch of 32 (the loss), 8 rows left over
  std::string spec = test::source_path("samples/specs/regression.gir");
  std::string log = path("val.csv");
  test::CommandResult r = test::run_gradc(
      "train " + spec + " --input x=" + path("tr_x.npy") + " --input target=" + path("tr_t.npy") + " --val x=" +
      path("va_x.npy") + " --val target=" + path("va_t.npy") + " --epochs 20 --log " + log);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  CHECK(r.out.find("val loss ") != std::string::npos);
  CHECK(r.out.find("(40 examples)") != std::string::npos);
  CHECK(number_after(r.out, "val loss ", true) < 0.5 * number_after(r.out, "val loss "));
  std::string csv = test::read_file(log);
  std::vector<std::vector<std::string>> epochs = log_rows(csv, "epoch"), steps = log_rows(csv, "step");
  REQUIRE(epochs.size() == 20);
  CHECK(steps.size() == 60);
  CHECK(epochs[19][1] == "20");
  CHECK(epochs[19][2] == "60");
  CHECK(std::abs(std::stod(epochs[19][4]) - number_after(r.out, "val loss ", true)) < 1e-4);
  CHECK(epochs[19][5].empty());
  CHECK(steps[0][4].empty());
  CHECK(std::stod(epochs[19][7]) >= std::stod(epochs[0][7]));

  // The val loss is the loss of the first 32 rows: a val set of those rows alone gives the same.
  Tensor x = load_npy(path("va_x.npy")), t = load_npy(path("va_t.npy"));
  save_npy(path("va32_x.npy"), Tensor::of<float>({32, 8}, std::vector<float>(x.as<float>(), x.as<float>() + 256)));
  save_npy(path("va32_t.npy"), Tensor::of<float>({32, 1}, std::vector<float>(t.as<float>(), t.as<float>() + 32)));
  test::CommandResult r32 = test::run_gradc(
      "train " + spec + " --input x=" + path("tr_x.npy") + " --input target=" + path("tr_t.npy") + " --val x=" +
      path("va32_x.npy") + " --val target=" + path("va32_t.npy") + " --epochs 20");
  REQUIRE(r32.exit_code == 0);
  CHECK(number_after(r32.out, "val loss ", true) == number_after(r.out, "val loss ", true));

  // --val needs every input, enough rows for a batch, and --input.
  test::CommandResult partial = test::run_gradc("train " + spec + " --input x=" + path("tr_x.npy") + " --input target=" +
                                                path("tr_t.npy") + " --val x=" + path("va_x.npy"));
  CHECK(partial.exit_code == 1);
  CHECK(partial.err.find("no data for input 'target' (give --val target=FILE.npy)") != std::string::npos);
  save_npy(path("few_x.npy"), Tensor::of<float>({4, 8}, std::vector<float>(32, 0.0f)));
  save_npy(path("few_t.npy"), Tensor::of<float>({4, 1}, std::vector<float>(4, 0.0f)));
  test::CommandResult few = test::run_gradc("train " + spec + " --input x=" + path("tr_x.npy") + " --input target=" +
                                            path("tr_t.npy") + " --val x=" + path("few_x.npy") + " --val target=" +
                                            path("few_t.npy"));
  CHECK(few.exit_code == 1);
  CHECK(few.err.find("4 validation examples make no full batch of 32") != std::string::npos);
  CHECK(test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist --val x=" +
                        path("va_x.npy")).exit_code == 1);
}

namespace {

// Four classes, told apart by which of x's first four columns is largest.
const char* kClassifier = R"(model classifier
input x : f32[16, 6]
input y : i32[16]
param w : f32[6, 4] = glorot_uniform
param b : f32[4] = zeros
logits = add(matmul(x, w), b)
loss = softmax_cross_entropy(logits, y)
output logits
minimize loss with adam(lr=0.05)
)";

void write_classes(const std::string& prefix, int rows, int bad_label_row = -1) {
  std::vector<float> x(static_cast<size_t>(rows) * 6);
  std::vector<int32_t> y(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < 6; ++c) x[static_cast<size_t>(r * 6 + c)] = static_cast<float>(((r * 6 + c) * 29 % 53) / 53.0);
    int best = 0;
    for (int c = 1; c < 4; ++c)
      if (x[static_cast<size_t>(r * 6 + c)] > x[static_cast<size_t>(r * 6 + best)]) best = c;
    x[static_cast<size_t>(r * 6 + best)] += 1.0f;
    y[static_cast<size_t>(r)] = r == bad_label_row ? 7 : best;
  }
  save_npy(path(prefix + "x.npy"), Tensor::of<float>({rows, 6}, x));
  save_npy(path(prefix + "y.npy"), Tensor::of<int32_t>({rows}, y));
}

}  // namespace

TEST_CASE("train_cli: --val on a classifier reports the accuracy over every example, the last batch padded") {
  write_classes("c_", 160);
  write_classes("cv_", 40);  // two full batches and 8 rows
  std::string spec = test::write_temp("classifier.gir", kClassifier);
  std::string log = path("cls.csv");
  test::CommandResult r = test::run_gradc("train " + spec + " --input x=" + path("c_x.npy") + " --input y=" +
                                          path("c_y.npy") + " --val x=" + path("cv_x.npy") + " --val y=" +
                                          path("cv_y.npy") + " --epochs 30 --log " + log);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  double accuracy = number_after(r.out, "val accuracy ", true);
  CHECK(accuracy >= 90.0);
  // Every example counts: 40 of them, so the accuracy is a multiple of 2.5%.
  CHECK(std::abs(accuracy / 2.5 - std::round(accuracy / 2.5)) < 1e-6);
  std::vector<std::vector<std::string>> epochs = log_rows(test::read_file(log), "epoch");
  REQUIRE(epochs.size() == 30);
  CHECK(std::abs(100 * std::stod(epochs[29][5]) - accuracy) < 1e-6);
}

TEST_CASE("train_cli: --early-stop stops when the val loss stops falling and restores the best params") {
  write_regression_data("es_", 96, 1);
  write_regression_data("esv_", 32, -10);  // an opposite target: fitting the training data makes the val loss worse
  std::string spec = test::write_temp("scheduled.gir", kScheduled);
  std::string train =
      " --input x=" + path("es_x.npy") + " --input target=" + path("es_t.npy") + " --no-shuffle --feed lr=0.1";
  std::string val = " --val x=" + path("esv_x.npy") + " --val target=" + path("esv_t.npy");
  std::string stopped = path("stopped.safetensors"), one = path("one.safetensors");
  test::CommandResult r = test::run_gradc("train " + spec + train + val + " --epochs 50 --early-stop 2 --save " + stopped);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  // The val loss falls once (0.6848, 0.6832), then rises (0.6892, 0.6941): two epochs without a gain.
  CHECK(r.out.find("epoch   4:") != std::string::npos);
  CHECK(r.out.find("epoch   5:") == std::string::npos);
  CHECK(r.out.find("early stop: the validation loss has not improved for 2 epochs after epoch 2") != std::string::npos);
  CHECK(r.out.find("restored the params and optimizer state of epoch 2") != std::string::npos);
  // What was saved is the run after two epochs.
  REQUIRE(test::run_gradc("train " + spec + train + " --epochs 2 --save " + one).exit_code == 0);
  CHECK(test::read_file(stopped) == test::read_file(one));

  CHECK(test::run_gradc("train " + spec + train + " --early-stop 2").err.find("--early-stop watches the validation loss") !=
        std::string::npos);
  CHECK(test::run_gradc("train " + spec + train + val + " --early-stop 0").exit_code == 1);
}

namespace {

// sqrt(relu(z)): the gradient is NaN wherever z <= 0 (sqrt' = inf at 0, relu' = 0), finite
// where z > 0. x's rows are +1 for the first 8 (four steps of 2) and -1 after.
const char* kNanLater = R"(model nan_later
input x : f32[2, 3]
param w : f32[3, 1] = ones
loss = sum(sqrt(relu(matmul(x, w))))
minimize loss with sgd(lr=0.001)
)";

void write_signs(const std::string& file) {
  std::vector<float> x(12 * 3, 1.0f);
  for (size_t i = 8 * 3; i < x.size(); ++i) x[i] = -1.0f;
  save_npy(file, Tensor::of<float>({12, 3}, x));
}

}  // namespace

TEST_CASE("train_cli: --save-every keeps the last good checkpoint when a step corrupts the params") {
  std::string spec = test::write_temp("nan_later.gir", kNanLater), xs = path("signs.npy");
  write_signs(xs);
  std::string run = "train " + spec + " --input x=" + xs + " --no-shuffle --epochs 3";
  std::string ckpt = path("every.safetensors"), four = path("four.safetensors");
  test::CommandResult r = test::run_gradc(run + " --save-every 2 --save " + ckpt);
  CHECK(r.exit_code == 1);
  CAPTURE(r.err);
  CHECK(r.err.find("step 5 (epoch 1, batch 5)") != std::string::npos);
  CHECK(r.err.find("params changed") != std::string::npos);
  CHECK(r.err.find("param 'w' is not finite") != std::string::npos);
  CHECK(r.err.find("the params are corrupted, so they are not saved: the last good checkpoint is " + ckpt +
                   ", written after step 4") != std::string::npos);
  REQUIRE(test::run_gradc("train " + spec + " --input x=" + xs + " --no-shuffle --steps 4 --save " + four).exit_code == 0);
  CHECK(test::read_file(ckpt) == test::read_file(four));

  // Without --save-every there is no good checkpoint to point at, and none is written.
  std::string none = path("none.safetensors");
  test::CommandResult n = test::run_gradc(run + " --save " + none);
  CHECK(n.exit_code == 1);
  CHECK(n.err.find("the params are corrupted, so they are not saved, and no checkpoint was written before") !=
        std::string::npos);
  CHECK(!std::filesystem::exists(none));
  CHECK(test::run_gradc(run + " --save-every 2").err.find("--save-every needs --save") != std::string::npos);
}

TEST_CASE("train_cli: a step refused before it changed anything saves the params it started from") {
  write_classes("bad_", 48, 20);  // row 20 is in the second batch of 16
  std::string spec = test::write_temp("classifier.gir", kClassifier);
  std::string run = "train " + spec + " --input x=" + path("bad_x.npy") + " --input y=" + path("bad_y.npy") + " --no-shuffle";
  std::string ckpt = path("kept.safetensors"), one = path("one_step.safetensors");
  test::CommandResult r = test::run_gradc(run + " --save " + ckpt);
  CHECK(r.exit_code == 1);
  CAPTURE(r.err);
  CHECK(r.err.find("step 2 (epoch 1, batch 2)") != std::string::npos);
  CHECK(r.err.find("params unchanged") != std::string::npos);
  CHECK(r.err.find("the last good params and state are saved in " + ckpt + " (after step 1)") != std::string::npos);
  REQUIRE(test::run_gradc(run + " --steps 1 --save " + one).exit_code == 0);
  CHECK(test::read_file(ckpt) == test::read_file(one));
}

namespace gradc {

// Ctrl-C during a long run: the step in flight finishes, the params are saved as at the end,
// the exit code is 128 + the signal (as a shell reports it), and the checkpoint loads.
TEST_CASE("train_cli: the first SIGINT or SIGTERM stops after the step in flight and saves") {
  for (int sig : {SIGINT, SIGTERM}) {
    CAPTURE(sig);
    std::string ckpt = path(fmt::format("stopped_{}.safetensors", sig)), out = path(fmt::format("stopped_{}.txt", sig));
    std::filesystem::remove(ckpt);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      std::string spec = test::source_path("samples/specs/seed_mlp.gir");
      int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::execl(GRADC_BINARY, GRADC_BINARY, "train", spec.c_str(), "--data", "fashion-mnist", "--epochs", "1000", "--save",
              ckpt.c_str(), "--threads", "1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Signal once training has begun (the first quarter-epoch line).
    bool training = false;
    for (int i = 0; i < 3000 && !training; ++i) {
      training = test::read_file(out).find("epoch   1: step") != std::string::npos;
      if (!training) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(training);
    ::kill(child, sig);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + sig);
    std::string printed = test::read_file(out);
    INFO(printed);
    CHECK(printed.find(fmt::format("stopped by signal {} after step ", sig)) != std::string::npos);
    CHECK(printed.find("the params and state are saved in " + ckpt) != std::string::npos);
    std::map<std::string, Tensor> saved = load_safetensors(ckpt);
    REQUIRE(saved.count("w1") == 1);
    const float* w = saved.at("w1").as<float>();
    CHECK(std::all_of(w, w + saved.at("w1").numel(), [](float v) { return std::isfinite(v); }));
  }
}

}  // namespace gradc
