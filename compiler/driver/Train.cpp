#include "driver/Train.h"

#include <chrono>

#include "gradc/gradc.h"
#include "runtime/Dataset.h"
#include "runtime/File.h"
#include "runtime/Init.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

using interp::Tensor;

// The spec's input `name`, which must exist with a leading batch dim.
const Node& input(const Graph& g, const std::string& name) {
  std::optional<ValueId> id = g.find(name);
  if (!id || g[*id].kind != NodeKind::Input || g[*id].type.rank() < 1)
    fail({}, "gradc train: the spec needs an input '{}' with a batch dimension for --data fashion-mnist", name);
  return g[*id];
}

InitSpec init_spec(const Init& init) {
  InitSpec s{init.kind, {}};
  for (const NamedAttr& a : init.args) s.args.emplace_back(a.name, a.value.as_number());
  return s;
}

Tensor to_interp(const gradc::Tensor& t, const TensorType& type) {
  Tensor out = Tensor::zeros(type);
  if (t.dtype() == DType::F32) {
    const float* v = t.as<float>();
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = v[i];
  } else if (t.dtype() == DType::F64) {
    const double* v = t.as<double>();
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = v[i];
  } else {
    const int32_t* v = t.as<int32_t>();
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = v[i];
  }
  return out;
}

gradc::Tensor from_interp(const Tensor& t) {
  gradc::Tensor out(t.type);
  for (size_t i = 0; i < t.data.size(); ++i) {
    if (t.type.dtype == DType::F32) out.as<float>()[i] = static_cast<float>(t.data[i]);
    else if (t.type.dtype == DType::F64) out.as<double>()[i] = t.data[i];
    else out.as<int32_t>()[i] = static_cast<int32_t>(t.data[i]);
  }
  return out;
}

// Params and states from a checkpoint, checked by name and type as PyTorch's strict
// load_state_dict does. A file of params alone is fine: the optimizer then starts fresh.
void load_checkpoint(const Graph& train, const std::string& path, interp::Feeds& feeds) {
  std::map<std::string, gradc::Tensor> saved = load_safetensors(path);
  bool has_state = false;
  for (const Node& n : train.nodes)
    if (n.kind == NodeKind::State && saved.count(n.name)) has_state = true;
  for (const Node& n : train.nodes) {
    if (n.kind != NodeKind::Param && n.kind != NodeKind::State) continue;
    auto it = saved.find(n.name);
    if (it == saved.end()) {
      if (n.kind == NodeKind::State && !has_state) continue;  // params alone: fresh optimizer state
      fail({path}, "the checkpoint has no tensor '{}' ({} {})", n.name, n.kind == NodeKind::Param ? "param" : "state",
           n.type);
    }
    if (it->second.type() != n.type)
      fail({path}, "tensor '{}' is {} in the checkpoint but {} in the spec", n.name, it->second.type(), n.type);
    feeds[n.name] = to_interp(it->second, n.type);
    saved.erase(it);
  }
  if (!saved.empty()) fail({path}, "the checkpoint has a tensor '{}' that the spec does not have", saved.begin()->first);
}

void save_checkpoint(const Graph& train, const std::string& path, const interp::Feeds& feeds) {
  std::vector<gradc::Tensor> tensors;
  std::vector<std::string> names;
  for (const Node& n : train.nodes)
    if (n.kind == NodeKind::Param || n.kind == NodeKind::State) {
      names.push_back(n.name);
      tensors.push_back(from_interp(feeds.at(n.name)));
    }
  std::vector<std::pair<std::string, const gradc::Tensor*>> named;
  for (size_t i = 0; i < names.size(); ++i) named.emplace_back(names[i], &tensors[i]);
  save_safetensors(path, named);
}

// Rows along the leading dim of `data`, fed to the spec's input `input` (the rows reshaped to
// its type: Fashion-MNIST's [N, 28, 28] images become x : f32[B, 784] or f32[B, 1, 28, 28]).
struct Source {
  std::string input;
  gradc::Tensor data;
};

void feed_batch(const std::vector<Source>& sources, const std::vector<int64_t>& rows, const Graph& g,
                interp::Feeds& feeds) {
  for (const Source& src : sources) {
    Shape shape = src.data.shape();
    shape[0] = static_cast<int64_t>(rows.size());
    gradc::Tensor batch(TensorType{src.data.dtype(), shape});
    gather_rows(src.data, rows, batch);
    feeds[src.input] = to_interp(batch, g[*g.find(src.input)].type);
  }
}

// The sources for `--input NAME=FILE.npy`: every input of the spec, each file's rows shaped
// like one example of its input, and the same number of rows in all.
std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<Source> sources;
  for (const auto& [name, file] : files) {
    std::optional<ValueId> id = spec.find(name);
    if (!id || spec[*id].kind != NodeKind::Input) fail({file}, "--input {}: the spec has no input '{}'", name, name);
    const TensorType& t = spec[*id].type;
    gradc::Tensor data = load_npy(file);
    if (t.rank() < 1 || data.shape().empty() || data.dtype() != t.dtype ||
        data.numel() / data.shape()[0] != t.numel() / t.shape[0])
      fail({file}, "--input {}: {} does not hold examples of {} (one row per example, {} elements each)", name,
           data.type(), t, t.rank() ? t.numel() / t.shape[0] : 1);
    if (!sources.empty() && data.shape()[0] != sources[0].data.shape()[0])
      fail({file}, "--input {}: {} rows, but {} has {}", name, data.shape()[0], sources[0].input,
           sources[0].data.shape()[0]);
    sources.push_back({name, std::move(data)});
  }
  for (ValueId id : spec.leaves(NodeKind::Input))
    if (!std::any_of(sources.begin(), sources.end(), [&](const Source& s) { return s.input == spec[id].name; }))
      fail({}, "gradc train: no data for input '{}' (give --input {}=FILE.npy)", spec[id].name, spec[id].name);
  return sources;
}

int64_t argmax_row(const Tensor& t, int64_t row) {
  int64_t classes = t.type.shape[1], best = 0;
  for (int64_t c = 1; c < classes; ++c)
    if (t.data[static_cast<size_t>(row * classes + c)] > t.data[static_cast<size_t>(row * classes + best)]) best = c;
  return best;
}

}  // namespace

void train(const Graph& spec, const TrainOptions& options, const std::function<void(const EpochReport&)>& report) {
  const bool fashion = options.inputs.empty();
  std::vector<Source> sources, test_sources;
  ValueId scores = -1;
  int64_t batch = 0;
  if (fashion) {
    const Node& x = input(spec, "x");
    const Node& y = input(spec, "y");
    batch = x.type.shape[0];
    if (x.type.numel() != batch * 784 || y.type != TensorType{DType::I32, {batch}})
      fail({}, "gradc train: --data fashion-mnist feeds x with {} images of 28x28 and y : i32[{}]; the spec has x : {}, y : {}",
           batch, batch, x.type, y.type);
    if (spec.outputs.empty() || spec[spec.outputs[0].value].type != TensorType{x.type.dtype, {batch, 10}})
      fail({}, "gradc train: test accuracy needs the spec's first output to be the [{}, 10] class scores", batch);
    scores = spec.outputs[0].value;
    LabeledData train_data = load_fashion_mnist(options.data_dir, true);
    LabeledData test_data = load_fashion_mnist(options.data_dir, false);
    sources = {{x.name, std::move(train_data.images)}, {y.name, std::move(train_data.labels)}};
    test_sources = {{x.name, std::move(test_data.images)}, {y.name, std::move(test_data.labels)}};
  } else {
    sources = npy_sources(spec, options.inputs);
    batch = spec[*spec.find(sources[0].input)].type.shape[0];
  }
  Graph train = simplified_graph(spec);

  interp::Feeds feeds;
  for (const Node& n : train.nodes) {
    if (n.kind != NodeKind::Param && n.kind != NodeKind::State) continue;
    feeds[n.name] = to_interp(initialize(init_spec(n.init.value_or(Init{"zeros", {}})), n.type, options.seed, n.name), n.type);
  }
  if (!options.load.empty()) load_checkpoint(train, options.load, feeds);
  std::string log = "step,loss\n";

  Batches batches(sources[0].data.shape()[0], batch, options.shuffle, options.seed);
  if (batches.size() == 0)
    fail({}, "gradc train: {} examples make no full batch of {}", sources[0].data.shape()[0], batch);
  int64_t steps_run = 0;
  for (int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
    EpochReport r{epoch, 0, 0, 0, 0, 0};
    auto start = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < batches.size(); ++b) {
      if (options.max_steps >= 0 && steps_run >= options.max_steps) break;
      feed_batch(sources, batches.indices(b), train, feeds);
      double loss = interp::step(train, feeds)[static_cast<size_t>(train.outputs[0].value)].data[0];
      if (!std::isfinite(loss)) fail({}, "gradc train: the loss became {} at step {}", loss, steps_run + 1);
      r.mean_loss += loss;
      ++r.steps;
      ++steps_run;
      log += fmt::format("{},{}\n", steps_run, loss);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.steps > 0) r.mean_loss /= static_cast<double>(r.steps);
    if (fashion) {
      // Test accuracy with the forward graph and the trained params (full batches of the test set).
      Batches test_batches(test_sources[0].data.shape()[0], batch, false, 0);
      int64_t correct = 0;
      const std::string& y = test_sources[1].input;
      for (int64_t b = 0; b < test_batches.size(); ++b) {
        feed_batch(test_sources, test_batches.indices(b), spec, feeds);
        interp::Tensor s = interp::evaluate(spec, feeds)[static_cast<size_t>(scores)];
        for (int64_t i = 0; i < batch; ++i)
          correct += argmax_row(s, i) == static_cast<int64_t>(feeds[y].data[static_cast<size_t>(i)]) ? 1 : 0;
        r.test_examples += batch;
      }
      r.test_accuracy = r.test_examples ? static_cast<double>(correct) / static_cast<double>(r.test_examples) : 0;
    }
    report(r);
    batches.next_epoch();
    if (options.max_steps >= 0 && steps_run >= options.max_steps) break;
  }
  if (!options.save.empty()) save_checkpoint(train, options.save, feeds);
  if (!options.log.empty()) write_file_atomically(options.log, {std::as_bytes(std::span(log))});
}

}  // namespace gradc
