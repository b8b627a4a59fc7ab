#include "driver/Train.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

#include "driver/Eval.h"
#include "driver/Sources.h"
#include "gradc/gradc.h"
#include "gradc/Dataset.h"
#include "runtime/File.h"
#include "runtime/Npy.h"

namespace gradc {

double LrSchedule::at(int64_t t, int64_t total) const {
  auto cosine = [&](double progress) {
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * std::clamp(progress, 0.0, 1.0)));
  };
  switch (kind) {
    case Kind::Constant: return lr;
    case Kind::Step: return lr * std::pow(gamma, static_cast<double>(t / every));
    case Kind::Exponential: return lr * std::pow(gamma, static_cast<double>(t) / static_cast<double>(every));
    case Kind::Cosine: return cosine(static_cast<double>(t) / static_cast<double>(std::max<int64_t>(total, 1)));
    case Kind::WarmupCosine:
      if (t < warmup) return lr * static_cast<double>(t) / static_cast<double>(warmup);
      return cosine(static_cast<double>(t - warmup) / static_cast<double>(std::max<int64_t>(total - warmup, 1)));
  }
  return lr;
}

std::optional<LrSchedule::Kind> parse_lr_schedule(const std::string& name) {
  using K = LrSchedule::Kind;
  for (auto [n, k] : {std::pair{"constant", K::Constant}, {"step", K::Step}, {"exponential", K::Exponential},
                      {"cosine", K::Cosine}, {"warmup-cosine", K::WarmupCosine}})
    if (name == n) return k;
  return std::nullopt;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// An error at a line of the spec, shown with that line when the spec came from a file.
[[noreturn]] void fail_at_spec_line(const SourceLoc& loc, const std::string& message) {
  Error e(loc, message);
  std::ifstream in(loc.file);
  if (!loc.known() || !in) throw e;
  std::stringstream text;
  text << in.rdbuf();
  throw e.with_source(text.str());
}

// The spec's input `name` for --data fashion-mnist, which must have a leading batch dim.
const Node& fashion_input(const Graph& g, const std::string& name) {
  std::optional<ValueId> id = g.find(name);
  if (!id || g[*id].kind != NodeKind::Input || g[*id].type.rank() < 1)
    fail({}, "gradc train: the spec needs an input '{}' with a batch dimension for --data fashion-mnist", name);
  return g[*id];
}

// The batch of `rows` from every source, and the scalar inputs.
Feeds gather(std::vector<Source>& sources, const std::vector<int64_t>& rows, const std::map<std::string, Tensor>& scalars) {
  Feeds feeds;
  for (Source& src : sources) {
    if (src.batch.shape().empty()) {  // first use
      Shape shape = src.data.shape();
      shape[0] = static_cast<int64_t>(rows.size());
      src.batch = Tensor(TensorType{src.data.dtype(), shape});
    }
    gather_rows(src.data, rows, src.batch);
    feeds.emplace(src.input, TensorView{src.batch.dtype(), src.type.shape, src.batch.data()});
  }
  for (const auto& [name, t] : scalars) feeds.emplace(name, TensorView(t));
  return feeds;
}

// The sources for `--input NAME=FILE.npy` (or --val): every input of the spec with a batch
// dim, each file's rows shaped like one example of its input, and the same number of rows in all.
std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files,
                                const char* flag) {
  SourceChecks checks;
  checks.where = [flag](const std::string& name) { return fmt::format("{} {}", flag, name); };
  checks.before_load = [flag](const Node& input) {
    const TensorType& t = input.type;
    if (t.rank() == 0)
      fail({}, "{} {}: '{}' is a scalar input ({}), set it with --feed {}=VALUE", flag, input.name, input.name, t, input.name);
  };
  checks.after_load = [flag](const Source& s, const std::vector<Source>& earlier) {
    const std::string& name = s.input;
    const Tensor& data = s.data;
    const TensorType& t = s.type;
    if (data.shape().empty() || data.dtype() != t.dtype ||
        data.numel() / std::max<int64_t>(data.shape()[0], 1) != t.numel() / t.shape[0])
      fail({s.file}, "{} {}: {} does not hold examples of {} (one row per example, {} elements each)", flag, name,
           data.type(), t, t.numel() / t.shape[0]);
    if (!earlier.empty() && data.shape()[0] != earlier[0].data.shape()[0])
      fail({s.file}, "{} {}: {} rows, but {} has {}", flag, name, data.shape()[0], earlier[0].input,
           earlier[0].data.shape()[0]);
  };
  std::vector<Source> sources = gradc::npy_sources(spec, files, checks);
  for (ValueId id : spec.leaves(NodeKind::Input))
    if (spec[id].type.rank() > 0 && !find_source(sources, spec[id].name))
      fail({}, "gradc train: no data for input '{}' (give {} {}=FILE.npy)", spec[id].name, flag, spec[id].name);
  return sources;
}


// What the loop knows about the spec's inputs and outputs.
struct Roles {
  int64_t batch = 0;
  std::string loss;    // the minimized value, also an output of predict
  std::string scores;  // the first output when it is [B, C] class scores with labels among the inputs
  std::string labels;  // the i32[B] input holding the class ids
};

struct Evaluation {
  double loss = 0;        // mean over the full batches
  std::optional<double> accuracy;
  int64_t examples = 0;
};

// The loss over the full batches of `val` and, with class scores, the accuracy over every
// example: the last batch is padded with copies of example 0, whose predictions are not counted.
Evaluation evaluate(Session& session, std::vector<Source>& val, const std::map<std::string, Tensor>& scalars,
                    const Roles& roles) {
  int64_t count = val[0].data.shape()[0], batch = roles.batch, correct = 0, full = 0;
  auto label_source = std::find_if(val.begin(), val.end(), [&](const Source& s) { return s.input == roles.labels; });
  Evaluation r;
  r.examples = count;
  for (int64_t first = 0; first < count; first += batch) {
    int64_t real = std::min(batch, count - first);
    if (real < batch && roles.scores.empty()) break;
    std::vector<int64_t> rows(static_cast<size_t>(batch), 0);
    for (int64_t i = 0; i < real; ++i) rows[static_cast<size_t>(i)] = first + i;
    session.predict(gather(val, rows, scalars));
    if (real == batch) {
      const Tensor& loss = session.output(roles.loss);
      r.loss += loss.dtype() == DType::F64 ? *loss.as<double>() : *loss.as<float>();
      ++full;
    }
    if (roles.scores.empty()) continue;
    const Tensor& scores = session.output(roles.scores);
    const int32_t* labels = label_source->batch.as<int32_t>();
    int64_t classes = scores.shape()[1];
    for (int64_t i = 0; i < real; ++i) {
      correct += argmax_row(scores, i, classes) == labels[i] ? 1 : 0;
    }
  }
  if (full > 0) r.loss /= static_cast<double>(full);
  if (!roles.scores.empty()) r.accuracy = count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0;
  return r;
}

// The class scores and labels, when the spec has them: its first output [B, C] (C >= 2, f32 or
// f64; after the loss, in a step written with assign lines, a dumped training graph) and one
// i32[B] input fed with data.
void find_classes(const Graph& spec, Roles& roles, const std::vector<Source>& sources) {
  size_t at = is_assign_step(spec) ? 1 : 0;
  if (spec.outputs.size() <= at) return;
  const Node& first = spec[spec.outputs[at].value];
  if (first.type.rank() != 2 || first.type.shape[0] != roles.batch || first.type.shape[1] < 2 ||
      first.type.dtype == DType::I32)
    return;
  std::vector<std::string> labels;
  for (const Source& s : sources)
    if (s.type == TensorType{DType::I32, {roles.batch}}) labels.push_back(s.input);
  if (labels.size() != 1) return;
  roles.scores = first.name;
  roles.labels = labels[0];
}

std::string csv_number(double v) { return fmt::format("{}", v); }

// A copy of every param and optimizer state, to go back to.
std::vector<Tensor> snapshot(Session& s) {
  std::vector<Tensor> copy;
  for (const std::string& name : s.param_names()) copy.push_back(s.param(name));
  return copy;
}
void restore(Session& s, const std::vector<Tensor>& copy) {
  std::vector<std::string> names = s.param_names();
  for (size_t i = 0; i < names.size(); ++i) s.param(names[i]) = copy[i];
}

}  // namespace

void train(const Graph& spec, const TrainOptions& options, const TrainEvents& events) {
  if (options.epochs < 1) fail({}, "gradc train: epochs must be at least 1, not {}", options.epochs);
  if (options.max_steps < -1) fail({}, "gradc train: max_steps must be at least 0 (or -1: every epoch), not {}", options.max_steps);
  // No step from the spec's initial params would save (or report) them as if trained; with a
  // checkpoint loaded, 0 steps re-saves it.
  if (options.max_steps == 0 && options.load.empty())
    fail({}, "gradc train: --steps 0 trains nothing, so --save would write the initial params as if trained "
             "(give --steps 1 or more, or --load CKPT to re-save a checkpoint)");
  const bool fashion = options.inputs.empty();
  if (!spec.minimize && spec.assigns.empty()) fail({}, "gradc train: the spec minimizes nothing (add `minimize LOSS with adam()`)");
  std::vector<Source> sources, val_sources;
  Roles roles;
  if (fashion) {
    if (!options.val.empty()) fail({}, "gradc train: --val goes with --input; --data fashion-mnist validates on its test set");
    const Node& x = fashion_input(spec, "x");
    std::optional<ValueId> y_id = spec.find("y");
    roles.batch = x.type.shape[0];
    if (x.type.numel() != roles.batch * 784 || x.type.dtype != DType::F32)
      fail({}, "gradc train: --data fashion-mnist feeds x with {} images of 28x28 (f32); the spec has x : {}", roles.batch,
           x.type);
    bool labels = y_id && spec[*y_id].kind == NodeKind::Input;
    if (labels && spec[*y_id].type != TensorType{DType::I32, {roles.batch}})
      fail({}, "gradc train: --data fashion-mnist feeds y : i32[{}] (the class ids); the spec has y : {}", roles.batch,
           spec[*y_id].type);
    for (ValueId id : spec.leaves(NodeKind::Input))
      if (spec[id].type.rank() > 0 && spec[id].name != "x" && spec[id].name != "y")
        fail({}, "gradc train: --data fashion-mnist feeds x (and y), not the spec's input '{}' : {}", spec[id].name,
             spec[id].type);
    LabeledData train_data = load_fashion_mnist(options.data_dir, true);
    LabeledData test_data = load_fashion_mnist(options.data_dir, false);
    sources = {{x.name, "Fashion-MNIST's training images", x.type, std::move(train_data.images), {}}};
    val_sources = {{x.name, "Fashion-MNIST's test images", x.type, std::move(test_data.images), {}}};
    if (labels) {
      const Node& y = spec[*y_id];
      sources.push_back({y.name, "Fashion-MNIST's training labels", y.type, std::move(train_data.labels), {}});
      val_sources.push_back({y.name, "Fashion-MNIST's test labels", y.type, std::move(test_data.labels), {}});
    }
  } else {
    sources = npy_sources(spec, options.inputs, "--input");
    roles.batch = sources[0].type.shape[0];
    if (!options.val.empty()) val_sources = npy_sources(spec, options.val, "--val");
  }
  find_classes(spec, roles, sources);
  if (!val_sources.empty() && val_sources[0].data.shape()[0] < roles.batch)
    fail({options.val.empty() ? "" : options.val[0].second}, "gradc train: {} validation examples make no full batch of {}",
         val_sources[0].data.shape()[0], roles.batch);
  if (options.early_stop > 0 && val_sources.empty())
    fail({}, "gradc train: --early-stop watches the validation loss: give --val NAME=FILE.npy for every --input");

  // Scalar inputs: fed from --feed, or the optimizer's lr input from the schedule.
  std::map<std::string, Tensor> scalars;
  std::string lr_input;
  if (spec.minimize) {
    const Attr* lr = spec.minimize->optimizer.args.find("lr");
    if (lr && lr->is_ident()) lr_input = lr->as_ident();
    if (options.schedule && lr_input.empty())
      fail_at_spec_line(spec.minimize->loc,
                        fmt::format("--lr-schedule needs the optimizer's lr to name a scalar input (`input lr : f32[]` "
                                    "and `{}(lr=lr)`), but this spec's lr is the number {}",
                                    spec.minimize->optimizer.kind, lr ? fmt::format("{:g}", lr->as_number()) : "default"));
  } else if (options.schedule) {
    fail({}, "gradc train: --lr-schedule needs a spec with `minimize LOSS with OPTIMIZER(lr=NAME)`");
  }
  for (const auto& [name, value] : options.feeds) {
    std::optional<ValueId> id = spec.find(name);
    if (!id || spec[*id].kind != NodeKind::Input) fail({}, "--feed {}: the spec has no input '{}'", name, name);
    const TensorType& t = spec[*id].type;
    if (t.rank() != 0) fail({}, "--feed {}: '{}' is {}; --feed sets scalar inputs (give --input {}=FILE.npy)", name, name, t, name);
    if (scalars.count(name)) fail({}, "--feed {}: given twice", name);
    if (name == lr_input && options.schedule)
      fail({}, "--feed {}: '{}' is the optimizer's lr, which --lr-schedule feeds", name, name);
    if (name == lr_input && !(value >= 0))  // as lr=-1 in the spec, and torch.optim's "Invalid learning rate"
      fail({}, "--feed {}={}: '{}' is the optimizer's lr, which must be at least 0", name, value, name);
    if (t.dtype == DType::F32 && !fits_f32(value))
      fail({}, "--feed {}={}: does not fit in the input's f32 (it would be {})", name, value, static_cast<float>(value));
    Tensor v(t);
    if (t.dtype == DType::F32) *v.as<float>() = static_cast<float>(value);
    else if (t.dtype == DType::F64) *v.as<double>() = value;
    else {
      if (value != std::trunc(value) || std::abs(value) > 2147483647.0) fail({}, "--feed {}: {} is not an i32", name, value);
      *v.as<int32_t>() = static_cast<int32_t>(value);
    }
    scalars.emplace(name, std::move(v));
  }
  if (options.schedule) {
    std::optional<ValueId> id = spec.find(lr_input);
    if (!id || spec[*id].kind != NodeKind::Input || spec[*id].type.rank() != 0 || spec[*id].type.dtype == DType::I32)
      fail_at_spec_line(spec.minimize->loc, fmt::format("--lr-schedule feeds the optimizer's lr '{}', which must be an "
                                                        "f32[] or f64[] input", lr_input));
    scalars.emplace(lr_input, Tensor(spec[*id].type));
  }
  for (ValueId id : spec.leaves(NodeKind::Input))
    if (spec[id].type.rank() == 0 && !scalars.count(spec[id].name))
      fail({}, "gradc train: no value for the scalar input '{}' (give --feed {}=VALUE{})", spec[id].name, spec[id].name,
           spec[id].name == lr_input ? ", or --lr-schedule" : "");
  auto set_lr = [&](double lr) {
    Tensor& t = scalars.at(lr_input);
    if (t.dtype() == DType::F32) *t.as<float>() = static_cast<float>(lr);
    else *t.as<double>() = lr;
  };
  auto fed_lr = [&]() -> std::string {
    auto it = scalars.find(lr_input);
    if (it == scalars.end()) return "";
    return csv_number(it->second.dtype() == DType::F32 ? double(*it->second.as<float>()) : *it->second.as<double>());
  };

  // The loss becomes an output of predict too, so that evaluation reports it.
  Graph compiled = spec;
  // A step written with assign lines (a dumped training graph) returns its first output as the loss.
  std::optional<ValueId> loss = step_loss(spec);
  roles.loss = loss ? spec[*loss].name : "";
  if (spec.minimize && !std::any_of(compiled.outputs.begin(), compiled.outputs.end(),
                                    [&](const Output& o) { return o.value == spec.minimize->loss; }))
    compiled.outputs.push_back({spec.minimize->loss, spec.minimize->loc});
  if (roles.loss.empty() && !val_sources.empty())
    fail({}, "gradc train: validation reports the loss of `minimize`, and this spec has none");

  Batches batches(sources[0].data.shape()[0], roles.batch, options.shuffle, options.seed);
  if (batches.size() == 0)
    fail({}, "gradc train: {} examples make no full batch of {}", sources[0].data.shape()[0], roles.batch);
  const int64_t planned = std::min(options.epochs > INT64_MAX / batches.size() ? INT64_MAX : options.epochs * batches.size(),
                                   options.max_steps < 0 ? INT64_MAX : options.max_steps);
  if (options.schedule && options.schedule->kind == LrSchedule::Kind::WarmupCosine && options.schedule->warmup >= planned &&
      planned > 0)
    fail({}, "--warmup {}: the run has {} steps, so no step would follow the warmup", options.schedule->warmup, planned);

  // Refused now rather than after the training: a --save or --log onto a FIFO or a directory.
  for (const std::string* out : {&options.save, &options.log})
    if (!out->empty()) check_output_path(*out);

  Model model = compile(compiled);
  if (events.compiled) events.compiled(model.compile_ms);
  Session session(model, {.seed = options.seed, .threads = options.threads});
  if (!options.load.empty()) session.load(options.load);
  std::string log = kLogHeader;
  auto write_log = [&] {
    if (!options.log.empty()) write_file_atomically(options.log, {std::as_bytes(std::span(log))});
  };
  auto note = [&](const std::string& text) {
    if (events.note) events.note(text);
  };

  auto stopped = [&] { return options.stop && options.stop->load() != 0; };
  int64_t steps_run = 0, last_saved = -1;
  std::optional<double> best_loss;
  int64_t best_epoch = 0, epochs_without_gain = 0;
  std::vector<Tensor> best;
  auto run_start = Clock::now();
  for (int64_t epoch = 1; epoch <= options.epochs && steps_run < planned; ++epoch) {
    EpochReport r;
    r.epoch = epoch;
    int64_t epoch_steps = std::min(batches.size(), planned - steps_run);
    auto start = Clock::now();
    for (int64_t b = 0; b < epoch_steps; ++b) {
      if (options.schedule) set_lr(options.schedule->at(steps_run, planned));
      double loss = 0;
      bool stepped = false;
      try {
        loss = session.step(gather(sources, batches.indices(b), scalars));
        stepped = true;
        if (!std::isfinite(loss)) fail({}, "the loss became {}", loss);
      } catch (const Error& e) {
        // Session::run says whether the step stopped before or after it changed params; a
        // non-finite loss is found after the whole step ran.
        auto* stopped_in_step = dynamic_cast<const StepError*>(&e);
        bool changed = stepped || (stopped_in_step && stopped_in_step->params_changed());
        std::string kept;
        if (options.save.empty()) {
          kept = changed ? "; the params are corrupted (no --save was given)" : "";
        } else if (!changed) {
          session.save(options.save);
          kept = fmt::format("; the last good params and state are saved in {} (after step {})", options.save, steps_run);
        } else if (last_saved >= 0) {
          kept = fmt::format("; the params are corrupted, so they are not saved: the last good checkpoint is {}, "
                             "written after step {}", options.save, last_saved);
        } else {
          kept = fmt::format("; the params are corrupted, so they are not saved, and no checkpoint was written before "
                             "(--save-every N writes one every N steps)");
        }
        write_log();
        fail(e.loc(), "gradc train: step {} (epoch {}, batch {}): {}{}", steps_run + 1, epoch, b + 1, e.message(), kept);
      }
      ++steps_run;
      r.mean_loss += loss;
      ++r.steps;
      log += fmt::format("step,{},{},{},,,{},{:.6f}\n", epoch, steps_run, csv_number(loss), fed_lr(), seconds_since(run_start));
      if (options.save_every > 0 && steps_run % options.save_every == 0 && !options.save.empty()) {
        session.save(options.save);
        last_saved = steps_run;
      }
      if (events.step) events.step({epoch, b + 1, epoch_steps, loss, seconds_since(start)});
      if (stopped()) break;
    }
    if (stopped()) {
      note(fmt::format("stopped by signal {} after step {} (epoch {}, batch {} of {}){}", options.stop->load(), steps_run,
                       epoch, r.steps, epoch_steps,
                       options.save.empty() ? "" : fmt::format(": the params and state are saved in {}", options.save)));
      break;
    }
    r.seconds = seconds_since(start);
    if (r.steps > 0) r.mean_loss /= static_cast<double>(r.steps);
    std::string val_loss, val_accuracy;
    if (!val_sources.empty()) {
      Evaluation v = evaluate(session, val_sources, scalars, roles);
      r.test_set = fashion;
      r.val_examples = v.examples;
      r.val_loss = v.loss;
      r.val_accuracy = v.accuracy;
      val_loss = csv_number(v.loss);
      if (v.accuracy) val_accuracy = csv_number(*v.accuracy);
    }
    log += fmt::format("epoch,{},{},{},{},{},{},{:.6f}\n", epoch, steps_run, csv_number(r.mean_loss), val_loss,
                       val_accuracy, fed_lr(), seconds_since(run_start));
    if (events.epoch) events.epoch(r);
    batches.next_epoch();
    if (options.early_stop > 0) {
      if (!best_loss || r.val_loss < *best_loss) {
        best_loss = r.val_loss;
        best_epoch = epoch;
        epochs_without_gain = 0;
        best = snapshot(session);
      } else if (++epochs_without_gain >= options.early_stop) {
        note(fmt::format("early stop: the validation loss has not improved for {} epoch{} after epoch {} ({:.4f})",
                         options.early_stop, options.early_stop == 1 ? "" : "s", best_epoch, *best_loss));
        break;
      }
    }
  }
  if (options.early_stop > 0 && !best.empty() && epochs_without_gain > 0) {
    restore(session, best);
    note(fmt::format("restored the params and optimizer state of epoch {} (validation loss {:.4f})", best_epoch, *best_loss));
  }
  if (!options.save.empty()) session.save(options.save);
  write_log();
}

}  // namespace gradc
