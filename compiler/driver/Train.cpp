#include "driver/Train.h"

#include <chrono>
#include <cmath>

#include "gradc/gradc.h"
#include "runtime/Dataset.h"
#include "runtime/File.h"
#include "runtime/Npy.h"

namespace gradc {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The spec's input `name`, which must exist with a leading batch dim.
const Node& input(const Graph& g, const std::string& name) {
  std::optional<ValueId> id = g.find(name);
  if (!id || g[*id].kind != NodeKind::Input || g[*id].type.rank() < 1)
    fail({}, "gradc train: the spec needs an input '{}' with a batch dimension for --data fashion-mnist", name);
  return g[*id];
}

// Rows along the leading dim of `data`, fed to the spec's input `input` as `type` (the rows
// reshaped: Fashion-MNIST's [N, 28, 28] images become x : f32[B, 784] or f32[B, 1, 28, 28]).
struct Source {
  std::string input;
  TensorType type;
  Tensor data;
  Tensor batch;  // the rows of the current batch, [B, ...] as in `data`
};

Feeds gather(std::vector<Source>& sources, const std::vector<int64_t>& rows) {
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
  return feeds;
}

// The sources for `--input NAME=FILE.npy`: every input of the spec, each file's rows shaped
// like one example of its input, and the same number of rows in all.
std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<Source> sources;
  for (const auto& [name, file] : files) {
    std::optional<ValueId> id = spec.find(name);
    if (!id || spec[*id].kind != NodeKind::Input) fail({file}, "--input {}: the spec has no input '{}'", name, name);
    const TensorType& t = spec[*id].type;
    Tensor data = load_npy(file);
    if (t.rank() < 1 || data.shape().empty() || data.dtype() != t.dtype ||
        data.numel() / std::max<int64_t>(data.shape()[0], 1) != t.numel() / t.shape[0])
      fail({file}, "--input {}: {} does not hold examples of {} (one row per example, {} elements each)", name,
           data.type(), t, t.rank() ? t.numel() / t.shape[0] : 1);
    if (!sources.empty() && data.shape()[0] != sources[0].data.shape()[0])
      fail({file}, "--input {}: {} rows, but {} has {}", name, data.shape()[0], sources[0].input,
           sources[0].data.shape()[0]);
    sources.push_back({name, t, std::move(data), {}});
  }
  for (ValueId id : spec.leaves(NodeKind::Input))
    if (!std::any_of(sources.begin(), sources.end(), [&](const Source& s) { return s.input == spec[id].name; }))
      fail({}, "gradc train: no data for input '{}' (give --input {}=FILE.npy)", spec[id].name, spec[id].name);
  return sources;
}

template <typename T>
int64_t argmax_row(const T* scores, int64_t classes) {
  int64_t best = 0;
  for (int64_t c = 1; c < classes; ++c)
    if (scores[c] > scores[best]) best = c;
  return best;
}

// Test accuracy with predict: every example counted once; the last batch is padded with
// copies of example 0, whose predictions are not counted.
std::pair<double, int64_t> accuracy(Session& session, std::vector<Source>& test, int64_t batch) {
  int64_t count = test[0].data.shape()[0], correct = 0;
  for (int64_t first = 0; first < count; first += batch) {
    std::vector<int64_t> rows(static_cast<size_t>(batch), 0);
    int64_t real = std::min(batch, count - first);
    for (int64_t i = 0; i < real; ++i) rows[static_cast<size_t>(i)] = first + i;
    Feeds feeds = gather(test, rows);
    const Tensor& scores = session.predict(feeds);
    const int32_t* labels = test[1].batch.as<int32_t>();
    int64_t classes = scores.shape()[1];
    for (int64_t i = 0; i < real; ++i) {
      int64_t guess = scores.dtype() == DType::F64 ? argmax_row(scores.as<double>() + i * classes, classes)
                                                   : argmax_row(scores.as<float>() + i * classes, classes);
      correct += guess == labels[i] ? 1 : 0;
    }
  }
  return {count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0, count};
}

}  // namespace

void train(const Graph& spec, const TrainOptions& options, const TrainEvents& events) {
  const bool fashion = options.inputs.empty();
  std::vector<Source> sources, test_sources;
  int64_t batch = 0;
  if (fashion) {
    const Node& x = input(spec, "x");
    const Node& y = input(spec, "y");
    batch = x.type.shape[0];
    if (x.type.numel() != batch * 784 || x.type.dtype != DType::F32 || y.type != TensorType{DType::I32, {batch}})
      fail({}, "gradc train: --data fashion-mnist feeds x with {} images of 28x28 (f32) and y : i32[{}]; the spec has "
               "x : {}, y : {}", batch, batch, x.type, y.type);
    if (spec.outputs.empty() || spec[spec.outputs[0].value].type.shape != Shape{batch, 10})
      fail({}, "gradc train: test accuracy needs the spec's first output to be the [{}, 10] class scores", batch);
    LabeledData train_data = load_fashion_mnist(options.data_dir, true);
    LabeledData test_data = load_fashion_mnist(options.data_dir, false);
    sources = {{x.name, x.type, std::move(train_data.images), {}}, {y.name, y.type, std::move(train_data.labels), {}}};
    test_sources = {{x.name, x.type, std::move(test_data.images), {}}, {y.name, y.type, std::move(test_data.labels), {}}};
  } else {
    sources = npy_sources(spec, options.inputs);
    batch = sources[0].type.shape[0];
  }
  if (!spec.minimize && spec.assigns.empty()) fail({}, "gradc train: the spec minimizes nothing (add `minimize LOSS with adam()`)");

  // Refused now rather than after the training: a --save or --log onto a FIFO or a directory.
  for (const std::string* out : {&options.save, &options.log})
    if (!out->empty()) check_output_path(*out);

  Model model = compile(spec);
  if (events.compiled) events.compiled(model.compile_ms);
  Session session(model, {.seed = options.seed, .threads = options.threads});
  if (!options.load.empty()) session.load(options.load);
  std::string log = "step,loss\n";

  Batches batches(sources[0].data.shape()[0], batch, options.shuffle, options.seed);
  if (batches.size() == 0)
    fail({}, "gradc train: {} examples make no full batch of {}", sources[0].data.shape()[0], batch);
  int64_t steps_run = 0;
  auto steps_left = [&] { return options.max_steps < 0 ? INT64_MAX : options.max_steps - steps_run; };
  for (int64_t epoch = 1; epoch <= options.epochs && steps_left() > 0; ++epoch) {
    EpochReport r{epoch, 0, 0, 0, 0, 0};
    int64_t epoch_steps = std::min(batches.size(), steps_left());
    auto start = Clock::now();
    for (int64_t b = 0; b < epoch_steps; ++b) {
      double loss = 0;
      try {
        loss = session.step(gather(sources, batches.indices(b)));
        if (!std::isfinite(loss)) fail({}, "the loss became {}", loss);
      } catch (const Error& e) {
        // The step left params and state as they were: keep them, and the log so far.
        std::string kept;
        if (!options.save.empty()) {
          session.save(options.save);
          kept = fmt::format("; the last good params and state are saved in {}", options.save);
        }
        if (!options.log.empty()) write_file_atomically(options.log, {std::as_bytes(std::span(log))});
        fail(e.loc(), "gradc train: step {} (epoch {}, batch {}): {}{}", steps_run + 1, epoch, b + 1, e.message(), kept);
      }
      ++steps_run;
      r.mean_loss += loss;
      ++r.steps;
      log += fmt::format("{},{}\n", steps_run, loss);
      if (events.step) events.step({epoch, b + 1, epoch_steps, loss, seconds_since(start)});
    }
    r.seconds = seconds_since(start);
    if (r.steps > 0) r.mean_loss /= static_cast<double>(r.steps);
    if (fashion) std::tie(r.test_accuracy, r.test_examples) = accuracy(session, test_sources, batch);
    if (events.epoch) events.epoch(r);
    batches.next_epoch();
  }
  if (!options.save.empty()) session.save(options.save);
  if (!options.log.empty()) write_file_atomically(options.log, {std::as_bytes(std::span(log))});
}

}  // namespace gradc
