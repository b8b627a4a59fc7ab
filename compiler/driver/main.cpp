// The `gradc` command. User errors print one message and exit with code 1.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>

#include "driver/Train.h"
#include "gradc/gradc.h"
#include "runtime/Dataset.h"
#include "runtime/File.h"

// Prints the worst relative error per param; exit code 1 when one is above `tol`.
static int run_check(const gradc::Graph& g, const gradc::GradCheckOptions& options, double tol) {
  std::vector<gradc::ParamCheck> results = gradc::check_gradients(g, options);
  fmt::print("{:<24} {:>10} {:>7} {:>6} {:>14}\n", "param", "elements", "probes", "kinks", "max rel error");
  int failures = 0;
  for (const gradc::ParamCheck& r : results) {
    bool ok = r.max_rel_error <= tol;
    failures += ok ? 0 : 1;
    fmt::print("{:<24} {:>10} {:>7} {:>6} {:>14.3e}{}\n", r.param, r.elements, r.probes, r.kinks, r.max_rel_error,
               ok ? "" : "  FAIL");
  }
  if (results.empty()) {
    fmt::print(stderr, "gradc check: no param reaches the loss, so there is no gradient to check\n");
    return 1;
  }
  if (failures > 0) {
    fmt::print(stderr, "gradc check: {} of {} params above the tolerance {:g}\n", failures, results.size(), tol);
    return 1;
  }
  fmt::print("gradc check: all {} params within {:g}\n", results.size(), tol);
  return 0;
}

// What `gradc train` prints: the compile time, progress through each epoch (a bar redrawn in
// place on a terminal, a plain line at each quarter of the epoch otherwise), and a summary line
// per epoch.
static gradc::TrainEvents train_printer(const std::string& model, const std::string& data) {
  const bool tty = isatty(fileno(stdout));
  auto last_draw = std::make_shared<std::chrono::steady_clock::time_point>();
  gradc::TrainEvents events;
  events.compiled = [=](double ms) {
    fmt::print("compiled {} in {:.0f} ms ({}); training on {}\n", model, ms, gradc::version_string(), data);
    std::fflush(stdout);
  };
  events.step = [=](const gradc::StepReport& r) {
    double eta = r.seconds / static_cast<double>(r.step) * static_cast<double>(r.epoch_steps - r.step);
    if (tty) {
      auto now = std::chrono::steady_clock::now();
      if (r.step != r.epoch_steps && now - *last_draw < std::chrono::milliseconds(100)) return;
      *last_draw = now;
      constexpr int kWidth = 30;
      int filled = static_cast<int>(kWidth * r.step / r.epoch_steps);
      fmt::print("\repoch {:>3} [{}{}] {}/{} loss {:.4f} ETA {:.1f} s\x1b[K", r.epoch, std::string(static_cast<size_t>(filled), '#'),
                 std::string(static_cast<size_t>(kWidth - filled), '.'), r.step, r.epoch_steps, r.loss, eta);
    } else {
      int64_t quarter = std::max<int64_t>(r.epoch_steps / 4, 1);
      if (r.step % quarter != 0 || r.step == r.epoch_steps) return;
      fmt::print("epoch {:>3}: step {}/{}, loss {:.4f}, ETA {:.1f} s\n", r.epoch, r.step, r.epoch_steps, r.loss, eta);
    }
    std::fflush(stdout);
  };
  events.epoch = [=](const gradc::EpochReport& r) {
    std::string accuracy =
        r.test_examples ? fmt::format(", test accuracy {:.2f}% ({} images)", 100 * r.test_accuracy, r.test_examples) : "";
    fmt::print("{}epoch {:>3}: {} steps, mean loss {:.4f}{}, {:.2f} s\n", tty ? "\r\x1b[K" : "", r.epoch, r.steps,
               r.mean_loss, accuracy, r.seconds);
    std::fflush(stdout);
  };
  return events;
}

int main(int argc, char** argv) {
  // Ctrl-C or a kill during a save removes the save's temporary; the old file stays whole.
  gradc::remove_temporaries_on_signals();
  CLI::App app{"gradc: a static computation-graph compiler for training neural networks", "gradc"};
  app.set_version_flag("--version", gradc::version_string());
  app.require_subcommand(1);

  std::string spec, stage_text = "parsed";
  bool dot = false;
  CLI::App* dump = app.add_subcommand("dump", "Print the model at a stage of the pipeline");
  dump->add_option("SPEC", spec, "the model spec (.gir)")->required();
  dump->add_option("--stage", stage_text, "parsed|grad|train|simplified|fused|plan|llvm|asm")
      ->check(CLI::IsMember({"parsed", "grad", "train", "simplified", "fused", "plan", "llvm", "asm"}))
      ->capture_default_str();
  dump->add_flag("--dot", dot, "print a Graphviz digraph instead of spec text");

  double tol = 1e-6;
  gradc::GradCheckOptions check_options;
  CLI::App* check = app.add_subcommand("check", "Check autodiff's gradients against finite differences in f64");
  check->add_option("SPEC", spec, "the model spec (.gir)")->required();
  check->add_option("--tol", tol, "the largest relative error that passes")->capture_default_str();
  check->add_option("--seed", check_options.seed, "seeds the random inputs, params and probes")->capture_default_str();

  std::string data;
  gradc::TrainOptions train_options;
  bool no_shuffle = false;
  CLI::App* train = app.add_subcommand(
      "train", "Compile a spec and train it on Fashion-MNIST or .npy arrays");
  train->add_option("SPEC", spec, "the model spec (.gir)")->required();
  std::vector<std::string> input_files;
  CLI::Option* data_opt =
      train->add_option("--data", data, "the dataset: fashion-mnist")->check(CLI::IsMember({"fashion-mnist"}));
  train_options.data_dir = gradc::kFashionMnistDir;
  train->add_option("--data-dir", train_options.data_dir, "where --data fashion-mnist finds its gzipped IDX files")
      ->capture_default_str();
  train->add_option("--input", input_files, "NAME=FILE.npy: an input's examples (repeat for each input)")
      ->excludes(data_opt);
  train->add_option("--epochs", train_options.epochs, "epochs to run")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--steps", train_options.max_steps, "stop after this many steps in all");
  train->add_option("--seed", train_options.seed, "seeds the params and the shuffling")->capture_default_str();
  train->add_flag("--no-shuffle", no_shuffle, "serve the training examples in order");
  train->add_option("--load", train_options.load, "start from this safetensors checkpoint (params, optimizer state)");
  train->add_option("--save", train_options.save, "write params and optimizer state here at the end (safetensors)");
  train->add_option("--log", train_options.log, "write a CSV of step,loss");
  train->add_option("--threads", train_options.threads, "threads a step may use (0: every core)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  gradc::BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand(
      "bench", "Compile a spec and time its train step on random inputs: us/step, GFLOP/s, % of the measured FMA peak");
  bench->add_option("SPEC", spec, "the model spec (.gir)")->required();
  bench->add_option("--steps", bench_options.steps, "steps per timed run (5 runs; the median is reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--threads", bench_options.threads, "threads a step may use (0: every core); the peak is measured on as many")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 1;
  }

  try {
    if (dump->parsed()) {
      gradc::Graph g = gradc::load_spec_file(spec);
      std::cout << gradc::dump(g, *gradc::parse_stage(stage_text), dot);
    }
    if (check->parsed()) return run_check(gradc::load_spec_file(spec), check_options, tol);
    if (train->parsed()) {
      if (data.empty() && input_files.empty()) throw gradc::Error({}, "gradc train: give --data fashion-mnist or --input NAME=FILE.npy");
      for (const std::string& kv : input_files) {
        size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) throw gradc::Error({}, fmt::format("--input {}: expected NAME=FILE.npy", kv));
        train_options.inputs.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
      }
      train_options.shuffle = !no_shuffle;
      gradc::Graph g = gradc::load_spec_file(spec);
      gradc::train(g, train_options, train_printer(g.name, data.empty() ? ".npy inputs" : "Fashion-MNIST"));
    }
    if (bench->parsed()) {
      gradc::Graph g = gradc::load_spec_file(spec);
      gradc::BenchReport r = gradc::bench(g, bench_options);
      fmt::print("{}: {}\n", g.name, gradc::version_string());
      fmt::print("compile: {:.0f} ms\narena: {} bytes\nthreads: {}\n", r.compile_ms, r.arena_bytes, r.threads);
      fmt::print("runs of {} steps, us/step: {:.1f}\n", bench_options.steps, fmt::join(r.us_per_step, ", "));
      fmt::print("GEMM FLOPs/step: {:.4g} M (the step's matmuls and convs, 2 per multiply-add)\n", r.gemm_flops / 1e6);
      fmt::print("GFLOP/s: {:.2f}\n", r.gflops);
      fmt::print("peak: {:.1f} GFLOP/s ({} FMA, {} thread{}, measured now): {:.1f}% of peak\n", r.peak.gflops,
                 r.peak.isa, r.peak.threads, r.peak.threads == 1 ? "" : "s", r.percent_of_peak);
      fmt::print("us/step: {:.1f}\n", r.median_us);
    }
    return 0;
  } catch (const gradc::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gradc: internal error: " << e.what() << "\n";
    return 1;
  }
}
