#include "driver/Eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gradc/gradc.h"
#include "gradc/Dataset.h"
#include "driver/Sources.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

// Fashion-MNIST's class names, in the order of its label ids.
const std::vector<std::string> kFashionNames = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// The spec without its training: predict's graph, to which evaluate adds outputs.
Graph forward_of(const Graph& spec) {
  Graph g = spec;
  g.minimize.reset();
  g.assigns.clear();
  return g;
}

// Makes `id` an output of `g` (naming it `fallback` when it has no name); returns its name.
std::string add_output(Graph& g, ValueId id, const std::string& fallback) {
  if (g[id].name.empty()) g[id].name = fallback;
  bool present = std::any_of(g.outputs.begin(), g.outputs.end(), [&](const Output& o) { return o.value == id; });
  if (!present) g.outputs.push_back({id, {}});
  return g[id].name;
}

std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files,
                                const char* command) {
  return gradc::npy_sources(spec, files, {.where = [command](const std::string&) { return fmt::format("gradc {}", command); }});
}

// The inputs `session`'s predict reads, each fed from its source as rows of its slot's
// examples: the source's rows reshaped (Fashion-MNIST's [N, 28, 28] as x : f32[B, 784]).
struct Fed {
  const Slot* slot;
  const Source* source;
  int64_t rows;       // -1 for an input without a batch dim (fed whole, every call)
  int64_t row_bytes;  // of one example
};

std::vector<Fed> bind_sources(const Session& session, const std::vector<Source>& sources, const char* command) {
  std::vector<Fed> fed;
  for (const Slot& s : session.program().slots) {
    if (s.kind != SlotKind::Input || !(s.uses & kUsedByPredict)) continue;
    const Source* src = find_source(sources, s.name);
    if (!src) fail({}, "gradc {}: no data for input '{}' ({}); give --input {}=FILE.npy", command, s.name, s.type, s.name);
    const Tensor& d = src->data;
    if (s.type.rank() == 0) {
      if (d.type() != s.type) fail({src->file}, "--input {}: {} is not the {} the spec's input is", s.name, d.type(), s.type);
      fed.push_back({&s, src, -1, 0});
      continue;
    }
    int64_t per_example = s.type.shape[0] ? s.type.numel() / s.type.shape[0] : 0;
    int64_t rows = d.shape().empty() ? -1 : d.shape()[0];
    if (rows < 0 || d.dtype() != s.type.dtype || (rows ? d.numel() / rows : per_example) != per_example)
      fail({src->file}, "--input {}: {} does not hold examples of {} (one row per example, {} {} elements each)", s.name,
           d.type(), s.type, per_example, dtype_name(s.type.dtype));
    for (const Fed& other : fed)
      if (other.rows >= 0 && rows != other.rows)
        fail({src->file}, "--input {}: {} rows, but {} has {}", s.name, rows, other.slot->name, other.rows);
    fed.push_back({&s, src, rows, per_example * dtype_bytes(s.type.dtype)});
  }
  return fed;
}

int64_t rows_of(const std::vector<Fed>& fed) {
  for (const Fed& f : fed)
    if (f.rows >= 0) return f.rows;
  return -1;
}

// Views of rows [first, first + count) of every batched input, with the slot's trailing shape.
Feeds views(const std::vector<Fed>& fed, int64_t first, int64_t count) {
  Feeds feeds;
  for (const Fed& f : fed) {
    if (f.rows < 0) {
      feeds.emplace(f.slot->name, TensorView(f.source->data));
      continue;
    }
    Shape shape = f.slot->type.shape;
    shape[0] = count;
    feeds.emplace(f.slot->name, TensorView(f.slot->type.dtype, shape, f.source->data.data() + first * f.row_bytes));
  }
  return feeds;
}

double scalar(const Tensor& t) { return t.dtype() == DType::F64 ? *t.as<double>() : *t.as<float>(); }

// The spec's class labels: the first softmax_cross_entropy of logits [B, C] against an i32[B] input.
struct Classes {
  ValueId logits = -1;
  std::string labels;  // the input's name
  int64_t count = 0;
};

Classes find_classes(const Graph& g) {
  for (const Node& n : g.nodes) {
    // A loss over logits and an operand of class ids (the op table's column): the classifier.
    if (n.kind != NodeKind::Op || !op_info(n.op).has(kLoss) || n.args.size() != 2) continue;
    std::optional<ClassIds> ids = op_info(n.op).class_ids(g, n);
    if (!ids) continue;
    ValueId logits_id = n.args[1 - ids->operand];
    const Node& logits = g[logits_id];
    const Node& labels = g[n.args[ids->operand]];
    if (labels.kind == NodeKind::Input && labels.type.rank() == 1 && logits.type.rank() == 2 && !logits.is_leaf())
      return {logits_id, labels.name, ids->classes};
  }
  return {};
}

}  // namespace

void load_params(Session& session, const Graph& spec, const std::string& path) {
  std::map<std::string, Tensor> saved = load_safetensors(path);
  std::set<std::string> known;
  const Graph trained = spec.minimize || !spec.assigns.empty() ? train_graph(spec) : spec;
  for (NodeKind kind : {NodeKind::Param, NodeKind::State})
    for (ValueId id : trained.leaves(kind)) known.insert(trained[id].name);
  // Optimizer state is ignored, the spec's optimizer's or another's (a checkpoint trained with
  // momentum, evaluated by a spec that says adam): a tensor named for a param or an optimizer,
  // "w.momentum_buffer", "adam.step". Anything else is not this model's checkpoint.
  auto optimizer_state = [&](const std::string& name) {
    size_t dot = name.rfind('.');
    if (dot == std::string::npos) return false;
    std::string owner = name.substr(0, dot);
    std::optional<ValueId> param = spec.find(owner);
    return (param && spec[*param].kind == NodeKind::Param) || optimizer_schema(owner) != nullptr;
  };
  for (const auto& [name, t] : saved)
    if (!known.count(name) && !optimizer_state(name))
      fail({path}, "the checkpoint has a tensor '{}' that the model '{}' does not have", name, spec.name);
  std::vector<std::pair<std::string, Tensor>> updates;
  for (const Slot& s : session.program().slots) {
    if (s.kind != SlotKind::Param) continue;
    auto it = saved.find(s.name);
    if (it == saved.end()) fail({path}, "the checkpoint has no tensor '{}' (param {})", s.name, s.type);
    if (it->second.type() != s.type)
      fail({path}, "tensor '{}' is {} in the checkpoint but {} in the model", s.name, it->second.type(), s.type);
    refuse_nonfinite(path, s.name, it->second);
    updates.emplace_back(s.name, std::move(it->second));
  }
  for (auto& [name, t] : updates) session.param(name) = std::move(t);
}

namespace {

template <typename T>
int64_t argmax(const T* row, int64_t n) {
  int64_t best = 0;
  for (int64_t c = 1; c < n; ++c)
    if (row[c] > row[best]) best = c;
  return best;
}

}  // namespace

int64_t argmax_row(const Tensor& scores, int64_t row, int64_t classes) {
  return scores.dtype() == DType::F64 ? argmax(scores.as<double>() + row * classes, classes)
                                      : argmax(scores.as<float>() + row * classes, classes);
}

double EvalReport::accuracy() const {
  int64_t correct = 0, total = 0;
  for (int64_t t = 0; t < classes; ++t)
    for (int64_t p = 0; p < classes; ++p) {
      int64_t n = confusion[static_cast<size_t>(t * classes + p)];
      total += n;
      correct += t == p ? n : 0;
    }
  return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
}

EvalReport evaluate(const Graph& spec, const EvalOptions& options) {
  // The loss: minimize's, or a step written with assign lines returns its first output as one.
  std::optional<ValueId> loss = step_loss(spec);
  if (!loss) fail({}, "gradc eval: the spec minimizes nothing, so it has no loss to evaluate");
  Graph g = forward_of(spec);
  const std::string loss_name = add_output(g, *loss, "eval.loss");
  Classes classes = find_classes(spec);
  std::string logits_name = classes.count ? add_output(g, classes.logits, "eval.logits") : "";

  std::vector<Source> sources;
  bool fashion = options.data.inputs.empty();
  if (fashion) {
    LabeledData test = load_fashion_mnist(options.data.data_dir, false);
    sources.push_back({"x", "Fashion-MNIST's test images", {}, std::move(test.images), {}});
    sources.push_back({"y", "Fashion-MNIST's test labels", {}, std::move(test.labels), {}});
  } else {
    sources = npy_sources(spec, options.data.inputs, "eval");
  }

  Model model = compile(g);
  Session session(model, {.threads = options.threads});
  load_params(session, spec, options.load);
  std::vector<Fed> fed = bind_sources(session, sources, "eval");
  const int64_t rows = rows_of(fed);
  if (rows < 0) fail({}, "gradc eval: the spec's inputs have no batch dimension to hold examples");
  if (rows == 0) fail({}, "gradc eval: the inputs hold no examples (0 rows), so there is nothing to evaluate");
  int64_t batch = -1;
  for (const Fed& f : fed)
    if (f.rows >= 0) {
      if (batch >= 0 && f.slot->type.shape[0] != batch)
        fail({}, "gradc eval: the spec's inputs differ in their leading dim ({} and {}), so it has no one batch size",
             batch, f.slot->type.shape[0]);
      batch = f.slot->type.shape[0];
    }

  EvalReport r;
  r.model = spec.name;
  r.examples = rows;
  const Tensor* labels = nullptr;
  std::string labels_file;
  if (classes.count) {
    const Source* src = find_source(sources, classes.labels);
    if (src) {
      labels = &src->data;
      labels_file = src->file;
      r.classes = classes.count;
      r.confusion.assign(static_cast<size_t>(classes.count * classes.count), 0);
      for (int64_t c = 0; c < classes.count; ++c)
        r.class_names.push_back(fashion && classes.count == 10 ? kFashionNames[static_cast<size_t>(c)] : std::to_string(c));
    }
  }
  if (labels)
    for (int64_t e = 0; e < rows; ++e)
      if (int32_t t = labels->as<int32_t>()[e]; t < 0 || t >= classes.count)
        fail({labels_file}, "gradc eval: the label of example {} (row {}) is {}, not a class id in [0, {})", e + 1, e, t,
             classes.count);
  auto count = [&](const Tensor& logits, int64_t row, int64_t example) {
    int32_t t = labels->as<int32_t>()[example];
    r.confusion[static_cast<size_t>(t * classes.count + argmax_row(logits, row, classes.count))] += 1;
  };

  double loss_sum = 0;
  int64_t full = rows / batch * batch;
  for (int64_t first = 0; first < full; first += batch) {
    const Outputs& out = session.predict(views(fed, first, batch));
    loss_sum += scalar(out.at(loss_name)) * static_cast<double>(batch);
    for (int64_t i = 0; i < batch; ++i)
      if (labels) count(out.at(logits_name), i, first + i);
  }
  // The last partial batch: each example in a batch of its copies, whose loss is its own.
  std::vector<Tensor> copies(fed.size());
  for (int64_t e = full; e < rows; ++e) {
    Feeds feeds;
    for (size_t k = 0; k < fed.size(); ++k) {
      const Fed& f = fed[k];
      if (f.rows < 0) {
        feeds.emplace(f.slot->name, TensorView(f.source->data));
        continue;
      }
      if (copies[k].shape().empty()) copies[k] = Tensor(f.slot->type);  // a batched slot: rank 1 or more
      for (int64_t i = 0; i < batch; ++i)
        std::memcpy(copies[k].data() + i * f.row_bytes, f.source->data.data() + e * f.row_bytes, static_cast<size_t>(f.row_bytes));
      feeds.emplace(f.slot->name, TensorView(copies[k]));
    }
    const Outputs& out = session.predict(feeds);
    loss_sum += scalar(out.at(loss_name));
    if (labels) count(out.at(logits_name), 0, e);
  }
  r.loss = rows ? loss_sum / static_cast<double>(rows) : 0.0;
  return r;
}

std::string classification_report(const std::vector<int64_t>& confusion, const std::vector<std::string>& names,
                                  int digits) {
  const auto c = static_cast<int64_t>(names.size());
  GRADC_ASSERT(static_cast<int64_t>(confusion.size()) == c * c, "{} counts for {} classes", confusion.size(), c);
  auto at = [&](int64_t t, int64_t p) { return confusion[static_cast<size_t>(t * c + p)]; };
  size_t width = std::string_view("weighted avg").size();
  for (const std::string& n : names) width = std::max(width, n.size());
  width = std::max(width, static_cast<size_t>(digits));

  std::string out = fmt::format("{:>{}} ", "", width);
  for (const char* h : {"precision", "recall", "f1-score", "support"}) out += fmt::format(" {:>9}", h);
  out += "\n\n";
  auto row = [&](std::string_view name, double p, double r, double f, int64_t support) {
    out += fmt::format("{:>{}}  {:>9.{}f} {:>9.{}f} {:>9.{}f} {:>9}\n", name, width, p, digits, r, digits, f, digits, support);
  };
  double sum_p = 0, sum_r = 0, sum_f = 0, w_p = 0, w_r = 0, w_f = 0;
  int64_t total = 0, correct = 0;
  for (int64_t k = 0; k < c; ++k) {
    int64_t tp = at(k, k), predicted = 0, support = 0;
    for (int64_t j = 0; j < c; ++j) predicted += at(j, k), support += at(k, j);
    // zero_division=0: a class never predicted (or absent) scores 0 there, as sklearn's default does.
    double p = predicted ? static_cast<double>(tp) / static_cast<double>(predicted) : 0.0;
    double r = support ? static_cast<double>(tp) / static_cast<double>(support) : 0.0;
    double f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    row(names[static_cast<size_t>(k)], p, r, f, support);
    sum_p += p, sum_r += r, sum_f += f;
    auto s = static_cast<double>(support);
    w_p += p * s, w_r += r * s, w_f += f * s;
    total += support, correct += tp;
  }
  out += "\n";
  double n = static_cast<double>(total), classes = static_cast<double>(std::max<int64_t>(c, 1));
  out += fmt::format("{:>{}}  {:>9} {:>9} {:>9.{}f} {:>9}\n", "accuracy", width, "", "",
                     total ? static_cast<double>(correct) / n : 0.0, digits, total);
  row("macro avg", sum_p / classes, sum_r / classes, sum_f / classes, total);
  row("weighted avg", total ? w_p / n : 0.0, total ? w_r / n : 0.0, total ? w_f / n : 0.0, total);
  return out;
}

std::string format_confusion_matrix(const std::vector<int64_t>& confusion, int64_t classes) {
  size_t width = 1;
  for (int64_t v : confusion) width = std::max(width, std::to_string(v).size());
  std::string out = "[";
  for (int64_t t = 0; t < classes; ++t) {
    out += t ? "\n [" : "[";
    for (int64_t p = 0; p < classes; ++p)
      out += fmt::format("{}{:>{}}", p ? " " : "", confusion[static_cast<size_t>(t * classes + p)], width);
    out += "]";
  }
  return out + "]\n";
}

std::string format_eval_report(const EvalReport& r) {
  std::string out = fmt::format("{}: {} examples\nloss: {:.4f}\n", r.model, r.examples, r.loss);
  if (r.classes == 0) return out;
  int64_t correct = 0;
  for (int64_t c = 0; c < r.classes; ++c) correct += r.confusion[static_cast<size_t>(c * r.classes + c)];
  out += fmt::format("accuracy: {:.4f} ({} of {})\n\n", r.accuracy(), correct, r.examples);
  out += classification_report(r.confusion, r.class_names);
  out += "\nconfusion matrix (rows: true class, columns: predicted class, in the order above):\n";
  out += format_confusion_matrix(r.confusion, r.classes);
  return out;
}

int64_t predict_to_npy(const Graph& spec, const PredictOptions& options) {
  Graph g = forward_of(spec);
  if (g.outputs.empty()) fail({}, "gradc predict: the spec declares no output");
  std::vector<std::string> names;
  for (const Output& o : g.outputs) names.push_back(g[o.value].name);
  std::string chosen = options.output;
  if (chosen.empty()) {
    if (names.size() > 1)
      fail({}, "gradc predict: the spec has {} outputs ({}); choose one with --output NAME", names.size(),
           fmt::join(names, ", "));
    chosen = names[0];
  } else if (std::find(names.begin(), names.end(), chosen) == names.end()) {
    fail({}, "gradc predict: --output {}: the spec has no output '{}' (its outputs: {})", chosen, chosen,
         fmt::join(names, ", "));
  }
  // Only the chosen output is computed, so only what it reads needs data (another output's
  // inputs, or one without the batch dim, made predict refuse the chosen one).
  std::erase_if(g.outputs, [&](const Output& o) { return g[o.value].name != chosen; });
  // Written only over a regular file (or a new path): never onto a device, a FIFO or a directory.
  std::error_code ec;
  auto status = std::filesystem::status(options.out, ec);
  if (!ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    fail({options.out}, "gradc predict: -o {} is not a regular file; give a new path or a regular file to replace",
         options.out);
  std::vector<Source> sources = npy_sources(spec, options.inputs, "predict");
  Model model = compile(g);
  Session session(model, {.threads = options.threads});
  load_params(session, spec, options.load);
  std::vector<Fed> fed = bind_sources(session, sources, "predict");
  int64_t rows = rows_of(fed);
  const Tensor& out = session.predict(views(fed, 0, rows < 0 ? 0 : rows)).at(chosen);
  save_npy(options.out, out);
  return out.shape().empty() ? 1 : out.shape()[0];
}

}  // namespace gradc
