// The `gradc` command. User errors print one message and exit with code 1.
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>

#include "driver/Bench.h"
#include "driver/Eval.h"
#include "driver/Pipeline.h"
#include "driver/Train.h"
#include "gradc/gradc.h"
#include "gradc/Dataset.h"
#include "runtime/File.h"

// --threads: 1 to ThreadPool::kMaxThreads (256; ThreadPool.h says why), every core when not given.
static const CLI::Validator kThreadCount(
    [](std::string& text) -> std::string {
      long long n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc{} && end == text.data() + text.size() && n >= 1 && n <= gradc::ThreadPool::kMaxThreads) return "";
      return fmt::format("takes 1 to {} threads (leave it out for every core), not '{}'", gradc::ThreadPool::kMaxThreads,
                         text.size() > 24 ? text.substr(0, 24) + "..." : text);
    },
    "1-256");

// ---- option checks
// CLI11's range validators print their bounds in full (PositiveNumber's upper bound, DBL_MAX, is
// 309 digits) and let "nan" through, so every numeric option is checked here, before CLI11
// converts it, with the accepted range in words. The value is quoted shortened.
static std::string refused(const std::string& value, std::string_view expected) {
  return fmt::format("expected {}, got '{}'", expected, gradc::shortened(value));
}

static CLI::Validator integer_at_least(int64_t lo) {
  std::string expected = fmt::format("an integer of at least {}", lo);
  return CLI::Validator(
      [=](std::string& value) {
        int64_t v = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        bool ok = ec == std::errc() && end == value.data() + value.size() && v >= lo;
        return ok ? std::string() : refused(value, expected + (ec == std::errc::result_out_of_range ? " below 2^63" : ""));
      },
      lo == 0 ? "NONNEGATIVE" : lo == 1 ? "POSITIVE" : ">= " + std::to_string(lo));  // in --help, as CLI11's own
}

static CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& value) {
        uint64_t v = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        bool ok = ec == std::errc() && end == value.data() + value.size();
        return ok ? std::string() : refused(value, "an integer from 0 to 2^64-1");
      },
      "NONNEGATIVE");
}

static CLI::Validator finite_number(bool positive) {
  return CLI::Validator(
      [=](std::string& value) {
        double v = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        bool ok = ec == std::errc() && end == value.data() + value.size() && std::isfinite(v) && (positive ? v > 0 : v >= 0);
        return ok ? std::string()
                  : refused(value, positive ? "a finite number above 0 (such as 1e-5)" : "a finite number of at least 0 (such as 1e-6)");
      },
      positive ? "POSITIVE" : "NONNEGATIVE");
}
static CLI::Validator non_negative_number() { return finite_number(false); }

static CLI::Validator non_empty(std::string expected) {
  return CLI::Validator([=](std::string& value) { return value.empty() ? refused(value, expected) : std::string(); },
                        "");
}

// CLI11's messages in the style of gradc's own (and of compilers): "error: ...", lower case.
static std::string failure_message(const CLI::App* app, const CLI::Error& e) {
  std::string what = e.what();
  if (what.size() > 1 && std::isupper(static_cast<unsigned char>(what[0])) &&
      std::islower(static_cast<unsigned char>(what[1])))
    what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
  for (std::string_view cap : {"At Most", "At Least"})  // ArgumentMismatch: "--epochs: At Most 1 required ..."
    if (size_t at = what.find(cap); at != std::string::npos) what.replace(at, 2, "at");
  std::string command = "gradc";
  for (const CLI::App* sub : app->get_subcommands()) command += " " + sub->get_name();
  return fmt::format("error: {}\nrun '{} --help' for the options\n", what, command);
}

// Prints the step and the worst absolute and relative errors per param; exit code 1 when a
// relative error is above `tol`.
static int run_check(const gradc::Graph& g, const gradc::GradCheckOptions& options, double tol) {
  std::vector<gradc::ParamCheck> results = gradc::check_gradients(g, options);
  fmt::print("{:<24} {:>10} {:>7} {:>6} {:>10} {:>14} {:>14}\n", "param", "elements", "probes", "kinks", "step",
             "max abs error", "max rel error");
  int failures = 0;
  for (const gradc::ParamCheck& r : results) {
    bool ok = r.max_rel_error <= tol;
    failures += ok ? 0 : 1;
    fmt::print("{:<24} {:>10} {:>7} {:>6} {:>10.2e} {:>14.3e} {:>14.3e}{}\n", r.param, r.elements, r.probes, r.kinks,
               r.step, r.max_abs_error, r.max_rel_error, ok ? "" : "  FAIL");
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
static gradc::TrainEvents train_printer(const std::string& model, const std::string& data,
                                        std::shared_ptr<bool> bar_drawn) {
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
      *bar_drawn = true;
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
    std::string val;
    if (r.val_examples) {
      const char* set = r.test_set ? "test" : "val";
      val = fmt::format(", {} loss {:.4f}", set, r.val_loss);
      if (r.val_accuracy) val += fmt::format(", {} accuracy {:.2f}%", set, 100 * *r.val_accuracy);
      val += fmt::format(" ({} {})", r.val_examples, r.test_set ? "images" : "examples");
    }
    fmt::print("{}epoch {:>3}: {} steps, mean loss {:.4f}{}, {:.2f} s\n", tty ? "\r\x1b[K" : "", r.epoch, r.steps,
               r.mean_loss, val, r.seconds);
    *bar_drawn = false;
    std::fflush(stdout);
  };
  events.note = [=](const std::string& text) {
    fmt::print("{}{}\n", tty ? "\r\x1b[K" : "", text);
    std::fflush(stdout);
  };
  return events;
}

// `--input NAME=FILE.npy` (or `--val`, as `flag` says) options as (name, file) pairs; a name
// given twice is refused.
// The files a command reads, named as the user gave them: the spec, each --input and --val.
static std::vector<gradc::NamedPath> read_paths(const std::string& spec,
                                                const std::vector<std::pair<std::string, std::string>>& inputs,
                                                const std::vector<std::pair<std::string, std::string>>& val) {
  std::vector<gradc::NamedPath> paths{{"the spec", spec}};
  for (const auto& [name, file] : inputs) paths.push_back({"--input " + name, file});
  for (const auto& [name, file] : val) paths.push_back({"--val " + name, file});
  return paths;
}

static std::vector<std::pair<std::string, std::string>> parse_inputs(const std::vector<std::string>& options,
                                                                     const char* flag = "--input") {
  std::vector<std::pair<std::string, std::string>> inputs;
  for (const std::string& kv : options) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size())
      throw gradc::Error({}, fmt::format("{} {}: expected NAME=FILE.npy", flag, gradc::shortened(kv)));
    std::string name = kv.substr(0, eq);
    for (const auto& [given, file] : inputs)
      if (given == name)
        throw gradc::Error({}, fmt::format("{} {}: given twice (first as {}={})", flag, gradc::shortened(kv), name,
                                           gradc::shortened(file)));
    inputs.emplace_back(name, kv.substr(eq + 1));
  }
  return inputs;
}

int main(int argc, char** argv) {
  // Ctrl-C or a kill during a save removes the save's temporary; the old file stays whole.
  gradc::remove_temporaries_on_signals();
  CLI::App app{"gradc: a static computation-graph compiler for training neural networks", "gradc"};
  app.set_version_flag("--version", gradc::version_string());
  app.require_subcommand(1);
  app.failure_message(failure_message);

  std::string spec, stage_text = "parsed";
  bool dot = false;
  CLI::App* dump = app.add_subcommand("dump", "Print the model at a stage of the pipeline");
  dump->add_option("SPEC", spec, "the model spec (.gir)")->required();
  std::vector<std::string> stages = gradc::stage_names();
  CLI::Option* stage_opt = dump->add_option("--stage", stage_text, fmt::format("{}", fmt::join(stages, "|")))
                               ->check(CLI::IsMember(stages))
                               ->capture_default_str();
  CLI::Option* dot_opt = dump->add_flag("--dot", dot, "print a Graphviz digraph instead of spec text");
  bool passes = false, print_after_all = false;
  CLI::Option* passes_opt =
      dump->add_flag("--passes", passes, "list every pass before LLVM in order, with its time and 'unchanged' where it "
                                         "changed nothing")
          ->excludes(stage_opt)
          ->excludes(dot_opt);
  dump->add_flag("--print-after-all", print_after_all, "with --passes: the IR after each pass too")->needs(passes_opt);

  double tol = 1e-6;
  gradc::GradCheckOptions check_options;
  CLI::App* check = app.add_subcommand("check", "Check autodiff's gradients against finite differences in f64");
  check->add_option("SPEC", spec, "the model spec (.gir)")->required();
  check->add_option("--tol", tol, "the largest relative error that passes")->capture_default_str()->check(non_negative_number());
  check->add_option("--seed", check_options.seed, "seeds the random inputs, params and probes")
      ->capture_default_str()
      ->check(seed_value());
  check->add_option("--step", check_options.step, "the finite-difference step h (default: per param, 10 cbrt(eps) max(1, max |w|))")
      ->check(finite_number(true));
  check->add_flag("--interpreter", check_options.interpreter, "evaluate with the reference interpreter instead of the JIT");
  check->add_option("--threads", check_options.threads, "threads the JIT-ed f64 model may use, 1 to 256 (default: every core)")
      ->check(kThreadCount);

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
      ->capture_default_str()
      ->check(non_empty("a directory"))
      ->needs(data_opt);  // beside --input it was taken silently and ignored
  train->add_option("--input", input_files, "NAME=FILE.npy: an input's examples (repeat for each input)")
      ->excludes(data_opt)
      ->check(non_empty("NAME=FILE.npy"));
  train->add_option("--epochs", train_options.epochs, "epochs to run")->capture_default_str()->check(integer_at_least(1));
  train->add_option("--steps", train_options.max_steps, "stop after this many steps in all (0: with --load, to re-save a checkpoint)")
      ->check(integer_at_least(0));
  train->add_option("--seed", train_options.seed, "seeds the params and the shuffling")
      ->capture_default_str()
      ->check(seed_value());
  train->add_flag("--no-shuffle", no_shuffle, "serve the training examples in order");
  train->add_option("--load", train_options.load, "start from this safetensors checkpoint (params, optimizer state)")
      ->check(non_empty("a checkpoint file"));
  train->add_option("--save", train_options.save, "write params and optimizer state here at the end (safetensors)")
      ->check(non_empty("a file to write"));
  train->add_option("--log", train_options.log,
                    "write a CSV with a row per step and per epoch: kind,epoch,step,loss,val_loss,val_accuracy,lr,seconds")
      ->check(non_empty("a file to write"));
  train->add_option("--threads", train_options.threads, "threads a step may use, 1 to 256 (default: every core)")
      ->check(kThreadCount);
  std::vector<std::string> val_files, feeds;
  train->add_option("--val", val_files, "NAME=FILE.npy: held-out examples, evaluated after each epoch (with --input)")
      ->excludes(data_opt);
  train->add_option("--feed", feeds, "NAME=VALUE: a scalar input's value, fed every step (repeat for each)");
  std::string schedule_name;
  double lr = 0, lr_min = 0, gamma = 0;
  int64_t every = 0, warmup = 0;
  CLI::Option* schedule_opt =
      train->add_option("--lr-schedule", schedule_name, "feeds the optimizer's lr input: "
                        "constant|step|exponential|cosine|warmup-cosine (formulas below)")
          ->check(CLI::IsMember({"constant", "step", "exponential", "cosine", "warmup-cosine"}));
  CLI::Option* lr_opt = train->add_option("--lr", lr, "the schedule's initial lr (alone: a constant lr)");
  CLI::Option* lr_min_opt = train->add_option("--lr-min", lr_min, "cosine, warmup-cosine: the final lr (default 0)");
  CLI::Option* gamma_opt = train->add_option("--gamma", gamma, "step, exponential: the decay factor (default 0.1)");
  CLI::Option* every_opt = train->add_option("--every", every, "step, exponential: steps per decay (default 1)");
  CLI::Option* warmup_opt = train->add_option("--warmup", warmup, "warmup-cosine: steps of linear warmup");
  train->add_option("--early-stop", train_options.early_stop,
                    "stop after this many epochs without a lower validation loss; the best params are restored")
      ->check(integer_at_least(1));
  train->add_option("--save-every", train_options.save_every, "also write the --save checkpoint every N steps")
      ->check(integer_at_least(1));
  train->footer(
      "Learning-rate schedules, at step t = 0..T-1 of a run of T steps (--lr-schedule NAME --lr LR):\n"
      "  constant       lr(t) = LR\n"
      "  step           lr(t) = LR * GAMMA^floor(t / EVERY)                    (PyTorch StepLR)\n"
      "  exponential    lr(t) = LR * GAMMA^(t / EVERY)                         (Keras ExponentialDecay)\n"
      "  cosine         lr(t) = MIN + (LR - MIN) * (1 + cos(pi * t / T)) / 2   (PyTorch CosineAnnealingLR)\n"
      "  warmup-cosine  lr(t) = LR * t / W for t < W, then cosine from LR to MIN over the last T - W steps\n"
      "                 (transformers' get_cosine_schedule_with_warmup)\n"
      "GAMMA is --gamma, EVERY --every, MIN --lr-min, W --warmup. The spec's optimizer must name a scalar\n"
      "input as its lr: `input lr : f32[]` and `minimize loss with adam(lr=lr)`.");

  gradc::BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand(
      "bench", "Compile a spec and time its train step on random inputs: us/step, GFLOP/s, % of the measured FMA peak");
  bench->add_option("SPEC", spec, "the model spec (.gir)")->required();
  bench->add_option("--steps", bench_options.steps, "steps per timed run (5 runs; the median is reported)")
      ->capture_default_str()
      ->check(integer_at_least(1));
  bench->add_option("--threads", bench_options.threads,
                    "threads a step may use, 1 to 256 (default: every core); the peak is measured on as many")
      ->check(kThreadCount);

  // eval and predict: a trained spec on held-out data, and its outputs for any number of rows.
  gradc::EvalOptions eval_options;
  std::string eval_data;
  std::vector<std::string> eval_inputs;
  CLI::App* eval = app.add_subcommand(
      "eval", "Evaluate a checkpoint: loss, accuracy, per-class precision/recall/F1 and the confusion matrix");
  eval->add_option("SPEC", spec, "the model spec (.gir)")->required();
  eval->add_option("--load", eval_options.load, "the safetensors checkpoint to evaluate")->required();
  CLI::Option* eval_data_opt = eval->add_option("--data", eval_data, "fashion-mnist: its 10000 test images")
                                   ->check(CLI::IsMember({"fashion-mnist"}));
  eval_options.data.data_dir = gradc::kFashionMnistDir;
  eval->add_option("--data-dir", eval_options.data.data_dir, "where --data fashion-mnist finds its gzipped IDX files")
      ->capture_default_str()
      ->needs(eval_data_opt);
  eval->add_option("--input", eval_inputs, "NAME=FILE.npy: an input's examples (repeat for each input)")
      ->excludes(eval_data_opt);
  eval->add_option("--threads", eval_options.threads, "threads predict may use, 1 to 256 (default: every core)")
      ->check(kThreadCount);

  gradc::PredictOptions predict_options;
  std::vector<std::string> predict_inputs;
  CLI::App* predict = app.add_subcommand("predict", "Write a spec's output for every row of .npy inputs, as .npy");
  predict->add_option("SPEC", spec, "the model spec (.gir)")->required();
  predict->add_option("--load", predict_options.load, "the safetensors checkpoint of the params")->required();
  predict->add_option("--input", predict_inputs, "NAME=FILE.npy: an input's rows (repeat for each input)")->required();
  predict->add_option("-o,--out", predict_options.out, "the .npy file to write")->required();
  predict->add_option("--output", predict_options.output, "which output of the spec (needed when it has several)");
  predict->add_option("--threads", predict_options.threads, "threads predict may use, 1 to 256 (default: every core)")
      ->check(kThreadCount);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {  // CLI11 says "A subcommand is required"
      std::vector<std::string> names;
      for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
      fmt::print(stderr, "error: unknown command '{}' (expected one of: {})\nrun 'gradc --help' for the options\n",
                 gradc::shortened(argv[1]), fmt::join(names, ", "));
      return 1;
    }
    app.exit(e);
    return 1;
  }

  try {
    if (dump->parsed()) {
      gradc::Graph g = gradc::load_spec_file(spec);
      if (passes)
        std::cout << gradc::print_passes(gradc::lower(g, {.trace = true, .print_after = print_after_all}));
      else
        std::cout << gradc::dump(g, *gradc::parse_stage(stage_text), dot);
    }
    if (check->parsed()) return run_check(gradc::load_spec_file(spec), check_options, tol);
    if (train->parsed()) {
      if (data.empty() && input_files.empty()) throw gradc::Error({}, "gradc train: give --data fashion-mnist or --input NAME=FILE.npy");
      train_options.inputs = parse_inputs(input_files);
      train_options.val = parse_inputs(val_files, "--val");
      for (const std::string& kv : feeds) {
        size_t eq = kv.find('=');
        std::string value = eq == std::string::npos ? "" : kv.substr(eq + 1);
        char* end = nullptr;
        double v = value.empty() ? 0 : std::strtod(value.c_str(), &end);
        if (eq == std::string::npos || eq == 0 || value.empty() || *end != '\0' || !std::isfinite(v))
          throw gradc::Error({}, fmt::format("--feed {}: expected NAME=VALUE with a finite number", kv));
        train_options.feeds.emplace_back(kv.substr(0, eq), v);
      }
      if (!schedule_opt->empty() || !lr_opt->empty()) {
        gradc::LrSchedule s;
        s.kind = schedule_opt->empty() ? gradc::LrSchedule::Kind::Constant : *gradc::parse_lr_schedule(schedule_name);
        using K = gradc::LrSchedule::Kind;
        auto only_with = [&](CLI::Option* opt, std::initializer_list<K> kinds, const char* which) {
          if (!opt->empty() && std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end())
            throw gradc::Error({}, fmt::format("{} goes with --lr-schedule {}", opt->get_name(), which));
        };
        only_with(lr_min_opt, {K::Cosine, K::WarmupCosine}, "cosine or warmup-cosine");
        only_with(gamma_opt, {K::Step, K::Exponential}, "step or exponential");
        only_with(every_opt, {K::Step, K::Exponential}, "step or exponential");
        only_with(warmup_opt, {K::WarmupCosine}, "warmup-cosine");
        if (lr_opt->empty()) throw gradc::Error({}, "--lr-schedule needs --lr, the initial learning rate");
        if (!(lr > 0) || !std::isfinite(lr)) throw gradc::Error({}, fmt::format("--lr {}: must be a positive number", lr));
        if (!(lr_min >= 0) || lr_min > lr)
          throw gradc::Error({}, fmt::format("--lr-min {}: must be at least 0 and at most --lr {}", lr_min, lr));
        if (!gamma_opt->empty() && (!(gamma > 0) || !std::isfinite(gamma)))
          throw gradc::Error({}, fmt::format("--gamma {}: must be a positive number", gamma));
        if (!every_opt->empty() && every < 1) throw gradc::Error({}, fmt::format("--every {}: must be at least 1", every));
        if (s.kind == K::WarmupCosine && (warmup_opt->empty() || warmup < 1))
          throw gradc::Error({}, "--lr-schedule warmup-cosine needs --warmup N, at least 1 step");
        s.lr = lr;
        s.lr_min = lr_min;
        if (!gamma_opt->empty()) s.gamma = gamma;
        if (!every_opt->empty()) s.every = every;
        s.warmup = warmup;
        train_options.schedule = s;
      }
      if (train_options.save_every > 0 && train_options.save.empty())
        throw gradc::Error({}, "--save-every needs --save, the checkpoint it writes");
      {
        std::vector<gradc::NamedPath> outputs, inputs = read_paths(spec, train_options.inputs, train_options.val);
        if (!train_options.save.empty()) outputs.push_back({"--save", train_options.save});
        if (!train_options.log.empty()) outputs.push_back({"--log", train_options.log});
        gradc::check_outputs(outputs, inputs);
        // --save may replace the checkpoint it started from (read whole before the first step;
        // the write is atomic), as a resumed run does; the log may not.
        if (!train_options.load.empty() && !train_options.log.empty())
          gradc::check_outputs({{"--log", train_options.log}}, {{"--load", train_options.load}});
      }
      train_options.shuffle = !no_shuffle;
      gradc::Graph g = gradc::load_spec_file(spec);
      auto bar_drawn = std::make_shared<bool>(false);
      // Ctrl-C (or a kill) stops after the step in flight, saves as at the end, and exits
      // 128 + the signal, as a shell reports it; a second one ends the process at once.
      train_options.stop = &gradc::stop_on_first_signal();
      try {
        gradc::train(g, train_options, train_printer(g.name, data.empty() ? ".npy inputs" : "Fashion-MNIST", bar_drawn));
      } catch (const gradc::Error&) {
        if (*bar_drawn) fmt::print("\n");  // the error goes below the progress bar, not after it
        throw;
      }
      if (int sig = train_options.stop->load(); sig != 0) return 128 + sig;
    }
    if (eval->parsed()) {
      if (eval_data.empty() && eval_inputs.empty())
        throw gradc::Error({}, "gradc eval: give --data fashion-mnist or --input NAME=FILE.npy");
      eval_options.data.inputs = parse_inputs(eval_inputs);
      gradc::Graph g = gradc::load_spec_file(spec);
      fmt::print("{}", gradc::format_eval_report(gradc::evaluate(g, eval_options)));
    }
    if (predict->parsed()) {
      predict_options.inputs = parse_inputs(predict_inputs);
      std::vector<gradc::NamedPath> inputs = read_paths(spec, predict_options.inputs, {});
      inputs.push_back({"--load", predict_options.load});
      gradc::check_outputs({{"-o", predict_options.out}}, inputs);
      gradc::Graph g = gradc::load_spec_file(spec);
      int64_t rows = gradc::predict_to_npy(g, predict_options);
      fmt::print("wrote {} rows to {}\n", rows, predict_options.out);
    }
    if (bench->parsed()) {
      gradc::Graph g = gradc::load_spec_file(spec);
      gradc::BenchReport r = gradc::bench(g, bench_options);
      fmt::print("{}: {}\n", g.name, gradc::version_string());
      fmt::print("compile: {:.0f} ms\nmemory: {}\nthreads: {}\n", r.compile_ms, gradc::describe(r.memory), r.threads);
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
