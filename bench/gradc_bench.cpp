// gradc_bench: a table of gradc's train step per model, beside OpenBLAS SGEMM on the step's GEMM
// shapes and libtorch on the same model, all measured in one run with the same threads:
//
//   build/bench/gradc_bench [SPEC...] [--threads 1] [--runs 5] [--steps N] [--gemms]
//
// 1. Set OpenBLAS's environment (OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines, unless set;
//    OPENBLAS_NUM_THREADS=T). OpenBLAS reads it as it loads, and libtorch loads it (as libblas.so.3)
//    before main, so with libtorch the program starts itself again with that environment.
// 2. Measure the FMA peak (gradc::measure_fma_peak) at the start and at the end; keep the larger.
// 3. Per model: compile it, copy its initial params into libtorch, check that both give the same
//    losses for three steps, then time gradc's step, OpenBLAS on the step's GEMMs and libtorch's
//    step in interleaved runs (so that the machine's noise falls on all three alike); report medians.
// FLOPs are the GEMM FLOPs of gradc::step_gemms (convs as im2col GEMMs), for all three columns.
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>

#include <CLI/CLI.hpp>

#include "OpenBlas.h"
#include "driver/Bench.h"
#include "Median.h"
#include "gradc/gradc.h"
#ifdef GRADC_BENCH_HAVE_TORCH
#include "TorchStep.h"
#endif

namespace {

using namespace gradc;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

using bench_util::median;

// Something timed in runs of `steps` calls; the median run gives µs per call.
struct Timed {
  std::string name;
  std::function<void()> call;
  int64_t steps = 0;
  std::vector<double> us{};  // per call, one per run
  double median_us() const { return median(us); }
};

// Warms each up (3 calls and at least 50 ms), sizes its runs to about `run_seconds` (3 calls at least) unless
// `steps` fixes them, then runs them in turn, `runs` times over.
void time_interleaved(std::vector<Timed>& all, int runs, int64_t steps, double run_seconds) {
  for (Timed& t : all) {
    Clock::time_point start = Clock::now();
    int64_t calls = 0;
    while (calls < 3 || seconds_since(start) < 0.05) {
      t.call();
      ++calls;
    }
    double per_call = seconds_since(start) / static_cast<double>(calls);
    t.steps = steps > 0 ? steps : std::max<int64_t>(3, static_cast<int64_t>(run_seconds / per_call));
  }
  for (int r = 0; r < runs; ++r)
    for (Timed& t : all) {
      Clock::time_point start = Clock::now();
      for (int64_t i = 0; i < t.steps; ++i) t.call();
      t.us.push_back(seconds_since(start) * 1e6 / static_cast<double>(t.steps));
    }
}

bool avx512_like_skylake_x() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}

bool set_env(const char* name, const std::string& value) {
  const char* now = std::getenv(name);
  if (now && value == now) return false;
  setenv(name, value.c_str(), 1);
  return true;
}

// Step 1 of the file's comment. Returns a note for the output.
std::string prepare_openblas_environment(int threads, char** argv) {
  bool changed = false;
  if (!std::getenv("OPENBLAS_CORETYPE") && avx512_like_skylake_x()) changed |= set_env("OPENBLAS_CORETYPE", "SkylakeX");
  changed |= set_env("OPENBLAS_NUM_THREADS", std::to_string(threads));
#ifdef GRADC_BENCH_HAVE_TORCH
  if (changed && !std::getenv("GRADC_BENCH_RESTARTED")) {
    setenv("GRADC_BENCH_RESTARTED", "1", 1);
    execv("/proc/self/exe", argv);
    return fmt::format("could not restart with OpenBLAS's environment ({}): libtorch's BLAS runs without it",
                       std::strerror(errno));
  }
#else
  (void)changed;
  (void)argv;
#endif
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  return fmt::format("OPENBLAS_CORETYPE={} OPENBLAS_NUM_THREADS={}", core ? core : "(auto)", threads);
}

// The file behind the BLAS this process loaded as libblas.so.3 (libtorch's sgemm; Debian's
// alternatives pick reference BLAS or OpenBLAS), or "" when none is loaded.
[[maybe_unused]] std::string loaded_libblas() {  // used with libtorch
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        std::string_view name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("/libblas.so") == std::string_view::npos) return 0;
        char real[PATH_MAX];
        *static_cast<std::string*>(out) = realpath(info->dlpi_name, real) ? real : std::string(name);
        return 1;
      },
      &found);
  return found;
}

struct Options {
  std::vector<std::string> specs;
  int threads = 1;
  int runs = 5;
  int64_t steps = 0;
  double run_seconds = 0.2;
  bool gemms = false;
  bool torch = true;
  bool finite_check = false;
};

struct Row {
  std::string model;
  int64_t batch = 0;
  double flops = 0;  // GEMM FLOPs per step
  double gradc_us = 0, blas_us = 0, torch_us = 0;
  double check_cost = 0;  // --finite-check: median over runs of (checked step / unchecked step) - 1
  std::string loss_match = "n/a";
  std::vector<std::string> notes;
};

// µs with one decimal (two below 10 µs), or n/a for what was not measured.
std::string us_cell(double us) {
  if (us <= 0) return "n/a";
  return us < 10 ? fmt::format("{:.2f}", us) : fmt::format("{:.1f}", us);
}

int64_t batch_of(const Graph& g) {
  std::vector<ValueId> inputs = g.leaves(NodeKind::Input);
  return inputs.empty() || g[inputs[0]].type.rank() == 0 ? 1 : g[inputs[0]].type.shape[0];
}

[[maybe_unused]] double rel_diff(double a, double b) { return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), 1e-30}); }

Row bench_model(const std::string& path, const Options& o, const std::optional<benchmark::OpenBlas>& blas) {
  Row row;
  Graph spec = load_spec_file(path);
  row.model = spec.name;
  row.batch = batch_of(spec);
  std::vector<StepGemm> gemms = step_gemms(spec);
  row.flops = step_gemm_flops(gemms);

  Model model = compile(spec);
  Session session(model, {.threads = o.threads});
  std::map<std::string, Tensor> inputs = random_inputs(spec, 0);  // what `gradc bench` feeds
  Feeds feeds;
  for (const auto& [name, t] : inputs) feeds.emplace(name, TensorView(t));
  bool train = model.train_step != nullptr;

  std::vector<Timed> timed;
  timed.push_back({.name = "gradc", .call = [&] { train ? (void)session.step(feeds) : (void)session.predict(feeds); }});

  // --finite-check: the same model compiled without the step's NaN/inf check on updated params.
  std::optional<Model> unchecked_model;
  std::optional<Session> unchecked;
  if (o.finite_check && train) {
    CompileOptions without_check;
    without_check.check_finite = false;
    unchecked_model.emplace(compile(spec, without_check));
    unchecked.emplace(*unchecked_model, SessionOptions{.threads = o.threads});
    timed.push_back({.name = "unchecked", .call = [&] { (void)unchecked->step(feeds); }});
  }

  std::optional<benchmark::StepGemms> blas_gemms;
  if (blas && !gemms.empty()) {
    blas_gemms.emplace(*blas, gemms);
    timed.push_back({.name = "openblas", .call = [&] { blas_gemms->run(); }});
  }

#ifdef GRADC_BENCH_HAVE_TORCH
  std::unique_ptr<benchmark::TorchStep> torch;
  if (o.torch && train) {
    try {
      std::map<std::string, Tensor> params;  // as the session initialized them, before any step
      for (ValueId id : spec.leaves(NodeKind::Param)) params.emplace(spec[id].name, session.param(spec[id].name));
      torch = std::make_unique<benchmark::TorchStep>(spec, params, inputs);
      // The same model: the same loss at step 0 (same params), and after one and two updates.
      double first = 0, worst_later = 0;
      std::string losses;
      for (int s = 0; s < 3; ++s) {
        double ours = session.step(feeds), theirs = torch->step();
        if (s == 0) first = rel_diff(ours, theirs);
        else worst_later = std::max(worst_later, rel_diff(ours, theirs));
        losses += fmt::format("{}step {}: gradc {:.7g}, libtorch {:.7g}", s ? "; " : "", s, ours, theirs);
      }
      row.loss_match = fmt::format("{} {:.0e}/{:.0e}", first <= 1e-4 ? "ok" : "NO", first, worst_later);
      row.notes.push_back("losses " + losses);
      if (first > 1e-4) row.notes.push_back("libtorch's step-0 loss differs from gradc's by more than 1e-4 (relative)");
      timed.push_back({.name = "torch", .call = [&] { torch->step(); }});
    } catch (const Error& e) {
      row.loss_match = "error";
      row.notes.push_back(e.what());
    }
  }
#endif

  time_interleaved(timed, o.runs, o.steps, o.run_seconds);
  if (unchecked) {  // runs r of both were back to back: their ratio is paired against the machine's noise
    std::vector<double> ratios;
    for (size_t r = 0; r < timed[0].us.size(); ++r) ratios.push_back(timed[0].us[r] / timed[1].us[r]);
    row.check_cost = median(ratios) - 1;
  }
  for (const Timed& t : timed) {
    if (t.name != "unchecked") (t.name == "gradc" ? row.gradc_us : t.name == "openblas" ? row.blas_us : row.torch_us) = t.median_us();
    row.notes.push_back(fmt::format("{}: runs of {} steps, us/step {:.1f}", t.name, t.steps, fmt::join(t.us, ", ")));
  }

  if (o.gemms) {
    for (const StepGemm& g : gemms) {
      std::string line = fmt::format("{:<28} {:>5} x [{:>5} x {:>5} x {:>5}] {}{} {:>9.3f} MFLOP", g.what, g.batch, g.m,
                                     g.n, g.k, g.a_transposed ? "T" : "N", g.b_transposed ? "T" : "N", g.flops() / 1e6);
      if (blas) {
        benchmark::StepGemms one(*blas, {g});
        std::vector<Timed> t;
        t.push_back({.name = g.what, .call = [&] { one.run(); }});
        time_interleaved(t, o.runs, 0, 0.03);
        line += fmt::format("  OpenBLAS {:>9.1f} us {:>7.1f} GFLOP/s", t[0].median_us(), g.flops() / (t[0].median_us() * 1e3));
      }
      row.notes.push_back(line);
    }
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"gradc_bench: gradc's train step beside OpenBLAS SGEMM (same GEMMs) and libtorch (same model)",
               "gradc_bench"};
  app.add_option("SPEC", o.specs, "model specs (default: seed_mlp, mlp_128, mlp_1024, cnn_fmnist from samples/specs)");
  app.add_option("--threads", o.threads, "threads for gradc, OpenBLAS and libtorch alike (0: every core)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--runs", o.runs, "timed runs of each (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "steps per run (default: as many as take about 0.2 s, at least 3)")->check(CLI::PositiveNumber);
  app.add_flag("--gemms", o.gemms, "list each model's GEMMs with OpenBLAS's time for each");
  bool no_torch = false;
  app.add_flag("--no-torch", no_torch, "skip libtorch");
  app.add_flag("--finite-check", o.finite_check,
               "also time each step compiled without its NaN/inf check on updated params, and print what the check costs");
  CLI11_PARSE(app, argc, argv);
  o.torch = !no_torch;
  if (o.specs.empty())
    for (const char* name : {"seed_mlp", "mlp_128", "mlp_1024", "cnn_fmnist"})
      o.specs.push_back(fmt::format("{}/samples/specs/{}.gir", GRADC_SOURCE_DIR, name));
  o.threads = ThreadPool::resolve(o.threads);

  std::string environment = prepare_openblas_environment(o.threads, argv);
  try {
    fmt::print("{}\n", version_string());
    FmaPeak peak = measure_fma_peak(o.threads);
    fmt::print("measured FMA peak: {:.1f} GFLOP/s ({}, {} thread{})\n", peak.gflops, peak.isa, o.threads,
               o.threads == 1 ? "" : "s");
    std::optional<benchmark::OpenBlas> blas = benchmark::OpenBlas::load(o.threads);
    fmt::print("OpenBLAS: {}; {}\n", blas ? blas->describe() : "not found (libopenblas.so.0): n/a", environment);
#ifdef GRADC_BENCH_HAVE_TORCH
    if (o.torch) benchmark::TorchStep::set_threads(o.threads);
    std::string libblas = loaded_libblas();
    fmt::print("libtorch: {}\n", o.torch ? fmt::format("{}, {} thread{}, its BLAS {}", benchmark::TorchStep::version(), o.threads,
                                                      o.threads == 1 ? "" : "s", libblas.empty() ? "(none loaded)" : libblas)
                                          : "skipped");
#else
    fmt::print("libtorch: not built in (install libtorch-dev and reconfigure): n/a\n");
#endif
    std::fflush(stdout);

    std::vector<Row> rows;
    for (const std::string& spec : o.specs) {
      try {
        rows.push_back(bench_model(spec, o, blas));
      } catch (const Error& e) {
        std::cerr << spec << ": " << e.what() << "\n";
        return 1;
      }
      fmt::print("\n{}:\n", rows.back().model);
      for (const std::string& n : rows.back().notes) fmt::print("  {}\n", n);
      std::fflush(stdout);
    }

    FmaPeak after = measure_fma_peak(o.threads);
    fmt::print("\nFMA peak measured again at the end: {:.1f} GFLOP/s; the table uses the larger\n", after.gflops);
    double best = std::max(peak.gflops, after.gflops);

    fmt::print("\n| model | batch | MFLOP/step | gradc us/step | GFLOP/s | % of peak | OpenBLAS us | OpenBLAS GFLOP/s "
               "| libtorch us/step | libtorch/gradc | loss match |\n");
    fmt::print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for (const Row& r : rows) {
      double gflops = r.flops / (r.gradc_us * 1e3);
      fmt::print("| {} | {} | {:.4g} | {} | {:.1f} | {:.1f}% | {} | {} | {} | {} | {} |\n", r.model, r.batch, r.flops / 1e6,
                 us_cell(r.gradc_us), gflops, 100 * gflops / best, us_cell(r.blas_us),
                 r.blas_us > 0 ? fmt::format("{:.1f}", r.flops / (r.blas_us * 1e3)) : "n/a", us_cell(r.torch_us),
                 r.torch_us > 0 ? fmt::format("{:.2f}", r.torch_us / r.gradc_us) : "n/a", r.loss_match);
    }
    fmt::print("\npeak {:.1f} GFLOP/s ({} FMA, {} thread{}, measured in this run). FLOPs: the step's GEMMs only "
               "(matmuls; convs as im2col GEMMs), 2 per multiply-add, no gradient of the data. OpenBLAS us: the same "
               "GEMMs, same transposes, alone (no im2col/col2im, no elementwise work). libtorch/gradc > 1: gradc is "
               "faster. loss match: step-0 relative difference / worst of the next two steps.\n",
               best, peak.isa, o.threads, o.threads == 1 ? "" : "s");
    if (o.finite_check) {
      fmt::print("\n| model | gradc us/step | NaN/inf check cost |\n|---|--:|--:|\n");
      for (const Row& r : rows) fmt::print("| {} | {} | {:+.1f}% |\n", r.model, us_cell(r.gradc_us), 100 * r.check_cost);
      fmt::print("\ncheck cost: the median over runs of (step / the same step compiled without the check) - 1; each "
                 "run of one is timed right after the other's.\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gradc_bench: " << e.what() << "\n";
    return 1;
  }
}
