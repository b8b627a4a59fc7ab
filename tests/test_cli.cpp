// The `gradc` command: help, version, dump and its stages.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"
#include "runtime/Npy.h"

using namespace gradc;

TEST_CASE("cli: --help and --version exit 0 and say what gradc is") {
  test::CommandResult help = test::run_gradc("--help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("dump") != std::string::npos);
  test::CommandResult version = test::run_gradc("--version");
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("gradc 0.1.0 (LLVM 19.", 0) == 0);
}

TEST_CASE("cli: dump prints the canonical spec, and it parses back to the same print") {
  for (const std::string& spec : test::sample_specs()) {
    CAPTURE(spec);
    test::CommandResult r = test::run_gradc("dump " + test::source_path(spec) + " --stage parsed");
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out == print_spec(load_spec_file(test::source_path(spec))));
    std::string again = test::write_temp("again.gir", r.out);
    test::CommandResult r2 = test::run_gradc("dump " + again);
    CHECK(r2.exit_code == 0);
    CHECK(r2.out == r.out);
  }
}

TEST_CASE("cli: dump --stage grad, train and simplified print specs that parse back to the same print") {
  for (const char* stage : {"grad", "train", "simplified"}) {
    CAPTURE(stage);
    test::CommandResult r =
        test::run_gradc(fmt::format("dump {} --stage {}", test::source_path("samples/specs/seed_mlp.gir"), stage));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("w1.grad : f32[784, 10] = ") != std::string::npos);
    std::string again = test::write_temp("stage.gir", r.out);
    test::CommandResult r2 = test::run_gradc("dump " + again);
    CHECK(r2.exit_code == 0);
    CHECK(r2.out == r.out);
  }
}

TEST_CASE("cli: dump --dot prints a digraph") {
  test::CommandResult r = test::run_gradc("dump " + test::source_path("samples/specs/cnn_fmnist.gir") + " --dot");
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("digraph \"cnn_fmnist\" {", 0) == 0);
  CHECK(r.out.find("conv2d f32[64, 16, 28, 28]") != std::string::npos);
}

TEST_CASE("cli: usage errors exit 1 with a message") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  test::CommandResult no_command = test::run_gradc("");
  CHECK(no_command.exit_code == 1);
  test::CommandResult bad_stage = test::run_gradc("dump " + seed + " --stage banana");
  CHECK(bad_stage.exit_code == 1);
  CHECK(bad_stage.err.find("banana") != std::string::npos);
}

TEST_CASE("cli: train runs the seed's model on Fashion-MNIST and reports test accuracy") {
  test::CommandResult r =
      test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist --steps 150");
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  size_t at = r.out.find("test accuracy ");
  REQUIRE(at != std::string::npos);
  double accuracy = std::stod(r.out.substr(at + 14));
  CHECK(accuracy > 65.0);  // 150 Adam steps: about 70%; an untrained model scores about 10%
  CHECK(r.out.find("150 steps") != std::string::npos);
  // The same seed gives the same run (the epoch's wall time, last on its line, aside), on one
  // thread as on every core.
  test::CommandResult again =
      test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist --steps 150 --threads 1");
  // The epoch summaries, each without its wall time (last on its line).
  auto without_time = [](const std::string& out) {
    std::istringstream lines(out);
    std::string kept;
    for (std::string line; std::getline(lines, line);)
      if (line.find(" steps, mean loss ") != std::string::npos) kept += line.substr(0, line.rfind(", ")) + "\n";
    return kept;
  };
  REQUIRE(!without_time(r.out).empty());
  CHECK(without_time(again.out) == without_time(r.out));
}

TEST_CASE("cli: train refuses specs it cannot feed") {
  test::CommandResult r =
      test::run_gradc("train " + test::source_path("samples/specs/regression.gir") + " --data fashion-mnist --steps 1");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--data fashion-mnist feeds x with 32 images of 28x28 (f32); the spec has x : f32[32, 8]") !=
        std::string::npos);
  test::CommandResult bad = test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") + " --data mnist");
  CHECK(bad.exit_code == 1);
  CHECK(test::run_gradc("train " + test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist --threads -2").exit_code == 1);
}

TEST_CASE("cli: train saves and loads checkpoints of params and optimizer state") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist";
  std::string a = (test::temp_dir() / "a.safetensors").string(), b = (test::temp_dir() / "b.safetensors").string();
  std::string log = (test::temp_dir() / "loss.csv").string();
  REQUIRE(test::run_gradc("train " + seed + " --steps 20 --save " + a + " --log " + log).exit_code == 0);
  // Loading and saving again without a step writes the same bytes: nothing is lost on the way.
  REQUIRE(test::run_gradc("train " + seed + " --steps 0 --load " + a + " --save " + b).exit_code == 0);
  CHECK(test::read_file(a) == test::read_file(b));
  std::string csv = test::read_file(log);
  CHECK(csv.rfind("kind,epoch,step,loss,val_loss,val_accuracy,lr,seconds\nstep,1,1,", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 22);  // the header, 20 steps, 1 epoch

  // A checkpoint of another model is refused with the tensor that does not fit.
  std::string other = (test::temp_dir() / "other.safetensors").string();
  REQUIRE(test::run_gradc("train " + test::source_path("samples/specs/mlp_128.gir") +
                          " --data fashion-mnist --steps 1 --save " + other).exit_code == 0);
  test::CommandResult wrong = test::run_gradc("train " + seed + " --steps 1 --load " + other);
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("tensor 'w1' is f32[784, 128] in the checkpoint but f32[784, 10] in the model") != std::string::npos);

  // A save that cannot be written fails with exit code 1 and leaves nothing behind.
  test::CommandResult nowhere = test::run_gradc("train " + seed + " --steps 1 --save /nonexistent/dir/c.safetensors");
  CHECK(nowhere.exit_code == 1);
  CHECK(nowhere.err.find("/nonexistent/dir/c.safetensors") != std::string::npos);
}

TEST_CASE("cli: train on .npy inputs, split into batches of the spec's size") {
  // y = sum of x's columns, learnable by regression.gir's tanh MLP: the loss must fall.
  std::vector<float> x(96 * 8), target(96);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37 % 101) / 101.0 - 0.5);
  for (size_t r = 0; r < 96; ++r)
    for (size_t c = 0; c < 8; ++c) target[r] += x[r * 8 + c] / 4;
  std::string xs = (test::temp_dir() / "x.npy").string(), ts = (test::temp_dir() / "t.npy").string();
  save_npy(xs, Tensor::of<float>({96, 8}, x));
  save_npy(ts, Tensor::of<float>({96, 1}, target));
  std::string spec = test::source_path("samples/specs/regression.gir");
  test::CommandResult r = test::run_gradc("train " + spec + " --input x=" + xs + " --input target=" + ts +
                                          " --epochs 30 --no-shuffle");
  REQUIRE(r.exit_code == 0);
  CAPTURE(r.out);
  CHECK(r.out.find("epoch   1: 3 steps") != std::string::npos);  // 96 rows, batches of 32
  double first = std::stod(r.out.substr(r.out.find("mean loss ") + 10));
  double last = std::stod(r.out.substr(r.out.rfind("mean loss ") + 10));
  CHECK(last < 0.5 * first);

  test::CommandResult missing = test::run_gradc("train " + spec + " --input x=" + xs);
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no data for input 'target'") != std::string::npos);
  test::CommandResult wrong = test::run_gradc("train " + spec + " --input x=" + ts + " --input target=" + ts);
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("does not hold examples of f32[32, 8]") != std::string::npos);
  test::CommandResult unknown = test::run_gradc("train " + spec + " --input z=" + xs);
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err.find("the spec has no input 'z'") != std::string::npos);
}

TEST_CASE("cli: dump --stage llvm prints the module before and after O3, asm prints the host's assembly") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  test::CommandResult llvm = test::run_gradc("dump " + seed + " --stage llvm");
  REQUIRE(llvm.exit_code == 0);
  size_t after = llvm.out.find("; ---- after LLVM's O3 pipeline");
  REQUIRE(after != std::string::npos);
  std::string before = llvm.out.substr(0, after), optimized = llvm.out.substr(after);
  // One function per kernel, before and after (kernels stay out of the entry points: noinline).
  CHECK(before.find("define i32 @gradc_train_step(ptr %slots, ptr noalias %arena, ptr %pool)") != std::string::npos);
  CHECK(before.find("define internal i32 @step.k0.") != std::string::npos);
  CHECK(before.find("define internal i32 @predict.k0.") != std::string::npos);
  CHECK(optimized.find("@gradc_predict(") != std::string::npos);
  CHECK(optimized.find("define internal fastcc void @step.k0.") != std::string::npos);
  test::CommandResult assembly = test::run_gradc("dump " + seed + " --stage asm");
  REQUIRE(assembly.exit_code == 0);
  CHECK(assembly.out.find("gradc_train_step:") != std::string::npos);
  CHECK(test::run_gradc("dump " + seed + " --stage asm --dot").exit_code == 1);
}

TEST_CASE("cli: bench reports compile time and ends with us/step") {
  test::CommandResult r = test::run_gradc("bench " + test::source_path("samples/specs/regression.gir") + " --steps 20");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("compile: ") != std::string::npos);
  std::string last = r.out.substr(r.out.rfind("\n", r.out.size() - 2) + 1);
  REQUIRE(last.rfind("us/step: ", 0) == 0);
  CHECK(std::stod(last.substr(9)) > 0);
}

TEST_CASE("cli: dump --stage fused prints a block per kernel, --stage plan the buffers and totals") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  test::CommandResult fused = test::run_gradc("dump " + seed + " --stage fused");
  REQUIRE(fused.exit_code == 0);
  int kernels = 0;
  for (size_t at = fused.out.find("\nkernel "); at != std::string::npos; at = fused.out.find("\nkernel ", at + 1)) ++kernels;
  CHECK(kernels >= 1);
  CHECK(kernels <= 12);
  for (const char* line : {"  inputs: ", "  outputs: ", "  loops: ", "  flops: "}) CHECK(fused.out.find(line) != std::string::npos);
  test::CommandResult plan = test::run_gradc("dump " + seed + " --stage plan");
  REQUIRE(plan.exit_code == 0);
  auto total = [&](const std::string& what) {
    size_t at = plan.out.find("\n" + what + ": ");
    REQUIRE(at != std::string::npos);
    return std::stoll(plan.out.substr(at + what.size() + 3));
  };
  CHECK(total("arena") >= total("lower bound"));
  CHECK(2 * total("arena") <= total("naive"));
}

TEST_CASE("cli: the same spec, seed and data give bit-identical losses and checkpoints, run after run") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  std::vector<std::string> logs, checkpoints;
  auto without_seconds = [](const std::string& csv) {  // each row without its wall time (the last column)
    std::string kept;
    for (size_t at = 0, end; (end = csv.find('\n', at)) != std::string::npos; at = end + 1)
      kept += csv.substr(at, csv.rfind(',', end) - at) + "\n";
    return kept;
  };
  for (int run = 0; run < 2; ++run) {
    std::string log = (test::temp_dir() / fmt::format("repro{}.csv", run)).string();
    std::string ckpt = (test::temp_dir() / fmt::format("repro{}.safetensors", run)).string();
    REQUIRE(test::run_gradc("train " + seed + " --data fashion-mnist --steps 300 --seed 11 --log " + log + " --save " + ckpt).exit_code == 0);
    logs.push_back(without_seconds(test::read_file(log)));
    checkpoints.push_back(test::read_file(ckpt));
  }
  CHECK(logs[0].size() > 300 * 4);
  CHECK(logs[0] == logs[1]);
  CHECK(checkpoints[0].size() > 784 * 10 * 4);
  CHECK(checkpoints[0] == checkpoints[1]);
  // Another seed gives another run.
  std::string other = (test::temp_dir() / "repro-other.csv").string();
  REQUIRE(test::run_gradc("train " + seed + " --data fashion-mnist --steps 300 --seed 12 --log " + other).exit_code == 0);
  CHECK(without_seconds(test::read_file(other)) != logs[0]);
}
