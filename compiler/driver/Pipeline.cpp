#include "driver/Pipeline.h"

#include <functional>

#include <fmt/ranges.h>

#include "gradc/gradc.h"
#include "ir/Printer.h"
#include "ir/Stopwatch.h"
#include "ir/Verifier.h"
#include "passes/Autodiff.h"
#include "passes/Dropout.h"
#include "passes/ExpandComposites.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"
#include "passes/OptimizerLowering.h"
#include "passes/Simplify.h"

namespace gradc {

namespace {

// Runs passes one after another, checking each result and recording (when given a log) its
// name, time and whether it changed anything.
class Runner {
 public:
  Runner(const PipelineOptions& options, std::vector<PassRun>* log) : options_(options), log_(log) {}

  // The pass takes its input by value, so a graph moves from pass to pass uncopied (the
  // printed input is kept only when tracing).
  Graph graph_pass(const std::string& name, Graph in, const std::function<Graph(Graph)>& pass) {
    bool traced = log_ && (options_.trace || options_.print_after);
    std::string before = traced ? print_spec(in) : "";
    auto start = std::chrono::steady_clock::now();
    Graph out = pass(std::move(in));
    verify_or_throw(out);
    if (log_) {
      PassRun& r = log_->emplace_back(PassRun{.name = name, .ms = ms_since(start), .changed = true, .after = {}});
      if (traced) {
        std::string printed = print_spec(out);
        r.changed = printed != before;
        if (options_.print_after) r.after = std::move(printed);
      }
    }
    return out;
  }

  KernelProgram fusion(const std::string& which, const Graph& g) {
    auto start = std::chrono::steady_clock::now();
    KernelProgram p = fuse(g, {.fuse = options_.fuse});
    check(p, false, "fusion");
    record(which + " fusion", start, [&] { return print_kernels(p); });
    return p;
  }

  void plan(const std::string& which, KernelProgram& p) {
    auto start = std::chrono::steady_clock::now();
    plan_memory(p);
    check(p, true, "the memory plan");
    record(which + " memory plan", start, [&] { return print_plan(p); });
  }

 private:
  void record(const std::string& name, std::chrono::steady_clock::time_point start,
              const std::function<std::string()>& ir) {
    if (!log_) return;
    PassRun& r = log_->emplace_back(PassRun{.name = name, .ms = ms_since(start), .changed = true, .after = {}});
    if (options_.print_after) r.after = ir();
  }

  // Codegen trusts the Kernel program: a fault here is a compiler bug, reported before any code.
  static void check(const KernelProgram& p, bool planned, std::string_view after) {
    std::vector<std::string> faults = verify_kernels(p, planned);
#ifndef NDEBUG  // check_plan compares every pair of buffers: debug builds only (tests call it on every sample)
    if (planned)
      for (std::string& f : check_plan(p.buffers, p.arena_bytes)) faults.push_back(std::move(f));
#endif
    if (!faults.empty())
      fail({}, "internal error: after {}, the kernel program of '{}' is unsound: {}", after, p.graph.name,
           fmt::join(faults, "; "));
  }

  const PipelineOptions& options_;
  std::vector<PassRun>* log_;
};

// A graph that already has its optimizer's state and assigns (a dumped train stage) is taken
// as it is.

// The spec with its composite ops expanded: the first pass of every path.
Graph expanded_of(Runner& r, const Graph& g) {
  return r.graph_pass("expand composites", g, [](Graph in) { return expand_composites(std::move(in)); });
}

// The paths below start from an expanded spec (expanded_of).
Graph train_graph_of(Runner& r, const Graph& g) {
  if (is_assign_step(g)) return g;
  // The optimizer reads autodiff's gradient table beside its graph: the graph travels through
  // graph_pass and is put back into `d` for it.
  Graph masked = r.graph_pass("dropout", g, [](Graph in) { return lower_dropout(std::move(in)); });
  Differentiated d;
  Graph grads = r.graph_pass("autodiff", std::move(masked), [&](Graph in) {
    d = differentiate(std::move(in));
    return std::move(d.graph);
  });
  return r.graph_pass("optimizer", std::move(grads), [&](Graph in) {
    d.graph = std::move(in);
    return lower_optimizer(std::move(d));
  });
}

Graph simplified_of(Runner& r, const Graph& g) {
  return r.graph_pass("simplify", train_graph_of(r, g), [](Graph in) { return simplify(std::move(in)); });
}

Graph predict_graph_of(Runner& r, const Graph& g) {
  return r.graph_pass("forward graph (outputs, simplified)", g, [](Graph forward) {
    forward.minimize.reset();
    forward.assigns.clear();
    return simplify(std::move(forward));
  });
}

KernelProgram planned(Runner& r, const std::string& which, const Graph& g) {
  KernelProgram p = r.fusion(which, g);
  r.plan(which, p);
  return p;
}

const PipelineOptions kPlain{};

}  // namespace

Lowered lower(const Graph& spec, const PipelineOptions& options) {
  Lowered l;
  Runner r(options, &l.passes);
  Graph g = expanded_of(r, spec);
  if (g.trains()) l.train = planned(r, "train", simplified_of(r, g));
  l.predict = planned(r, "predict", predict_graph_of(r, g));
  return l;
}

const KernelProgram& step_program(const Lowered& l) { return l.train ? *l.train : l.predict; }

std::string print_passes(const Lowered& l) {
  std::string out;
  double total = 0;
  for (size_t i = 0; i < l.passes.size(); ++i) {
    const PassRun& p = l.passes[i];
    total += p.ms;
    out += fmt::format("{:>3}  {:<38} {:>9.3f} ms{}\n", i + 1, p.name, p.ms, p.changed ? "" : "  unchanged");
    if (!p.after.empty()) out += fmt::format("# ---- after {}\n{}\n", p.name, p.after);
  }
  return out + fmt::format("     {:<38} {:>9.3f} ms\n", "every pass before LLVM", total);
}

Graph grad_graph(const Graph& g) {
  Runner r(kPlain, nullptr);
  Graph expanded = expanded_of(r, g);
  if (is_assign_step(expanded)) return expanded;  // a step written with assign lines: nothing to differentiate
  return r.graph_pass("autodiff", std::move(expanded), [](Graph in) { return differentiate(std::move(in)).graph; });
}

Graph train_graph(const Graph& g) {
  Runner r(kPlain, nullptr);
  return train_graph_of(r, expanded_of(r, g));
}

Graph simplified_graph(const Graph& g) {
  Runner r(kPlain, nullptr);
  return simplified_of(r, expanded_of(r, g));
}

Graph predict_graph(const Graph& g) {
  Runner r(kPlain, nullptr);
  return predict_graph_of(r, expanded_of(r, g));
}

KernelProgram train_kernels(const Graph& g, bool fuse) {
  if (!g.trains()) fail({}, "the spec minimizes nothing, so it has no train step (its predict: predict_kernels)");
  PipelineOptions options{.fuse = fuse};
  Runner r(options, nullptr);
  return planned(r, "train", simplified_of(r, expanded_of(r, g)));
}

KernelProgram predict_kernels(const Graph& g, bool fuse) {
  PipelineOptions options{.fuse = fuse};
  Runner r(options, nullptr);
  return planned(r, "predict", predict_graph_of(r, expanded_of(r, g)));
}

}  // namespace gradc
