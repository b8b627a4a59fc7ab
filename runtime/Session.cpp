#include "gradc/Session.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/ranges.h>

#include "runtime/Format.h"
#include "runtime/Safetensors.h"

namespace gradc {

namespace {

bool is_input(SlotKind k) { return k == SlotKind::Input; }
bool is_output(SlotKind k) { return k == SlotKind::Output; }
bool is_weight(SlotKind k) { return k == SlotKind::Param || k == SlotKind::State; }

const char* kind_word(SlotKind k) {
  switch (k) {
    case SlotKind::Input: return "input";
    case SlotKind::Param: return "param";
    case SlotKind::State: return "state";
    case SlotKind::Output: return "output";
  }
  return "?";
}

// Whether `t` has the elements of `type` (a default Tensor is f32[] of no bytes).
bool holds(const Tensor& t, const TensorType& type) {
  return t.type() == type && static_cast<int64_t>(t.bytes()) == type.numel() * dtype_bytes(type.dtype);
}

}  // namespace

void Session::FreeAligned::operator()(std::byte* p) const { std::free(p); }

Session::Session(const Program& program, SessionOptions options) : program_(program) {
  storage_.resize(program_.slots.size());
  pointers_.assign(program_.slots.size(), nullptr);
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (s.kind == SlotKind::Input) continue;
    storage_[i] = is_weight(s.kind) ? initialize(s.init, s.type, options.seed, s.name) : Tensor(s.type);
    pointers_[i] = storage_[i].data();
  }
  size_t bytes = static_cast<size_t>((program_.arena_bytes + 63) / 64 * 64);
  arena_.reset(static_cast<std::byte*>(std::aligned_alloc(64, std::max<size_t>(bytes, 64))));
  if (!arena_) fail({}, "cannot allocate the arena of {} bytes for model '{}'", bytes, program_.name);
  if (options.threads < 0) fail({}, "a session needs at least one thread, not {}", options.threads);
  if (ThreadPool::resolve(options.threads) > 1) pool_ = std::make_unique<ThreadPool>(options.threads);
}

int32_t Session::find(std::string_view name, bool (*kind_ok)(SlotKind)) const {
  for (size_t i = 0; i < program_.slots.size(); ++i)
    if (program_.slots[i].name == name && kind_ok(program_.slots[i].kind)) return static_cast<int32_t>(i);
  return -1;
}

void Session::check_names(const Feeds& inputs) const {
  for (const auto& [name, view] : inputs)
    if (find(name, is_input) < 0) fail({}, "model '{}' has no input '{}'", program_.name, name);
}

namespace {

// The view's dtype against the slot's; a vector or span carries no shape, so its element type is all there is.
void check_dtype(const Slot& s, const TensorView& v) {
  if (v.dtype == s.type.dtype) return;
  if (v.has_shape()) fail({}, "input '{}' expects {}, got {}", s.name, s.type, TensorType{v.dtype, v.shape});
  fail({}, "input '{}' expects {} elements ({}), got {} {} elements", s.name, dtype_name(s.type.dtype), s.type, v.count,
       dtype_name(v.dtype));
}

}  // namespace

void Session::bind_inputs(const Feeds& inputs, uint8_t use) {
  check_names(inputs);
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (s.kind != SlotKind::Input || !(s.uses & use)) continue;
    auto it = inputs.find(s.name);
    if (it == inputs.end()) fail({}, "no value given for input '{}' ({})", s.name, s.type);
    const TensorView& v = it->second;
    check_dtype(s, v);
    if (v.has_shape()) {
      TensorType given{v.dtype, v.shape};
      if (given != s.type) fail({}, "input '{}' expects {}, got {}", s.name, s.type, given);
    } else if (v.count != s.type.numel()) {
      fail({}, "input '{}' expects {} elements ({}), got {}", s.name, s.type.numel(), s.type, v.count);
    }
    if (!v.data && s.type.numel() > 0) fail({}, "input '{}' has no data", s.name);
    pointers_[i] = const_cast<void*>(v.data);  // entry points only read inputs
  }
}

void Session::run(EntryPoint entry, const char* what) {
  if (!entry) fail({}, "model '{}' has no {} (its spec minimizes nothing)", program_.name, what);
  // param() hands out references: a tensor replaced through one must still fit its slot.
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (s.kind == SlotKind::Input) continue;
    if (storage_[i].type() != s.type) fail({}, "{} '{}' was set to {}, but the model needs {}", kind_word(s.kind), s.name,
                                           storage_[i].type(), s.type);
    pointers_[i] = storage_[i].data();
  }
  int32_t status = entry(pointers_.data(), arena_.get(), pool_ ? pool_->entry() : nullptr);
  if (status != 0) {
    std::string why = status > 0 && static_cast<size_t>(status) <= program_.errors.size()
                          ? program_.errors[static_cast<size_t>(status - 1)]
                          : fmt::format("unknown error code {}", status);
    bool changed = status > 0 && static_cast<size_t>(status) <= program_.errors_after_update.size() &&
                   program_.errors_after_update[static_cast<size_t>(status - 1)];
    throw StepError(fmt::format("{} stopped, {}: {}", what, changed ? "params changed" : "params unchanged", why), changed);
  }
}

double Session::step(const Feeds& inputs) {
  bind_inputs(inputs, kUsedByTrainStep);
  run(program_.train_step, "train step");
  const Tensor& loss = storage_[static_cast<size_t>(program_.loss_slot)];
  return loss.dtype() == DType::F64 ? *loss.as<double>() : *loss.as<float>();
}

// Predict on any number of rows: the batched inputs (those whose leading dim is the spec's batch
// B, when every input predict reads that has a leading dim shares it) are fed N rows each; full
// batches are read in place, the last partial one is copied and padded with its first row.
const Outputs& Session::predict(const Feeds& inputs) {
  EntryPoint entry = program_.predict_entry();
  if (!entry) fail({}, "model '{}' has no predict", program_.name);
  if (program_.predict_outputs.empty()) fail({}, "model '{}' declares no output to predict", program_.name);
  check_names(inputs);

  // The spec's batch: the leading dim every input predict reads with a rank of 1 or more shares.
  int64_t batch = -1;
  bool shared = true;
  for (const Slot& s : program_.slots)
    if (s.kind == SlotKind::Input && (s.uses & kUsedByPredict) && s.type.rank() >= 1) {
      if (batch >= 0 && s.type.shape[0] != batch) shared = false;
      batch = s.type.shape[0];
    }
  if (!shared || batch == 0) batch = -1;

  struct Fed {
    size_t slot;
    const std::byte* data;
    int64_t row_bytes;  // of one example; -1: fed as the slot is, every call
  };
  std::vector<Fed> fed;
  int64_t rows = -1;
  std::string rows_from;
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (s.kind != SlotKind::Input || !(s.uses & kUsedByPredict)) continue;
    auto it = inputs.find(s.name);
    if (it == inputs.end()) fail({}, "no value given for input '{}' ({})", s.name, s.type);
    const TensorView& v = it->second;
    check_dtype(s, v);
    const int64_t numel = s.type.numel();
    int64_t n = -1;  // the rows this input was given
    if (batch < 0 || s.type.rank() == 0) {
      bool same = v.has_shape() ? TensorType{v.dtype, v.shape} == s.type : v.count == numel;
      if (!same)
        fail({}, "input '{}' expects {}, got {}", s.name, s.type,
             v.has_shape() ? to_string(TensorType{v.dtype, v.shape}) : fmt::format("{} elements", v.count));
    } else {
      Shape example(s.type.shape.begin() + 1, s.type.shape.end());
      int64_t per_row = numel / batch;
      if (v.has_shape()) {
        if (v.shape.size() != s.type.shape.size() || !std::equal(example.begin(), example.end(), v.shape.begin() + 1))
          fail({}, "input '{}' expects rows of {} ({} for one batch), got {}", s.name, to_string(example), s.type,
               TensorType{v.dtype, v.shape});
        n = v.shape[0];
      } else {
        if (per_row == 0 ? v.count != 0 : v.count % per_row != 0)
          fail({}, "input '{}' expects whole rows of {} elements ({} for one batch), got {} elements", s.name, per_row,
               s.type, v.count);
        n = per_row == 0 ? batch : v.count / per_row;
      }
      if (rows >= 0 && n != rows) fail({}, "input '{}' has {} rows, but '{}' has {}", s.name, n, rows_from, rows);
      rows = n, rows_from = s.name;
    }
    if (!v.data && (n < 0 ? numel : n * (numel / batch)) > 0) fail({}, "input '{}' has no data", s.name);
    fed.push_back({i, static_cast<const std::byte*>(v.data), n < 0 ? -1 : numel / batch * dtype_bytes(s.type.dtype)});
  }
  if (rows < 0) rows = batch < 0 ? 1 : batch;  // nothing batched: one call
  const bool exact = batch < 0 || rows == batch;

  // The outputs: those with the batch as their leading dim get `rows` rows; any other needs exactly B.
  std::vector<int64_t> out_row_bytes;
  outputs_.items_.resize(program_.predict_outputs.size());
  for (size_t k = 0; k < program_.predict_outputs.size(); ++k) {
    const Slot& s = program_.slots[static_cast<size_t>(program_.predict_outputs[k])];
    bool batched = batch >= 0 && s.type.rank() >= 1 && s.type.shape[0] == batch;
    if (!batched && !exact)
      fail({}, "output '{}' ({}) has no leading dim of the batch {}, so predict takes exactly {} rows, not {}", s.name,
           s.type, batch, batch, rows);
    TensorType type = s.type;
    if (batched) type.shape[0] = rows;
    auto& [name, tensor] = outputs_.items_[k];
    name = s.name;
    if (!holds(tensor, type)) tensor = Tensor(type);
    out_row_bytes.push_back(batched ? s.type.numel() / batch * dtype_bytes(s.type.dtype) : -1);
  }

  staging_.resize(program_.slots.size());
  const int64_t chunk = batch < 0 ? 1 : batch;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t real = std::min(chunk, rows - first);
    for (const Fed& f : fed) {
      if (f.row_bytes < 0) {
        pointers_[f.slot] = const_cast<std::byte*>(f.data);
      } else if (real == batch) {  // a full batch, read where it is
        pointers_[f.slot] = const_cast<std::byte*>(f.data + first * f.row_bytes);
      } else {
        Tensor& pad = staging_[f.slot];
        if (!holds(pad, program_.slots[f.slot].type)) pad = Tensor(program_.slots[f.slot].type);
        const auto n = static_cast<size_t>(f.row_bytes);
        std::memcpy(pad.data(), f.data + first * f.row_bytes, static_cast<size_t>(real) * n);
        for (int64_t r = real; r < batch; ++r) std::memcpy(pad.data() + r * f.row_bytes, f.data + first * f.row_bytes, n);
        pointers_[f.slot] = pad.data();
      }
    }
    run(entry, "predict");
    for (size_t k = 0; k < program_.predict_outputs.size(); ++k) {
      const Tensor& out = storage_[static_cast<size_t>(program_.predict_outputs[k])];
      Tensor& dst = outputs_.items_[k].second;
      if (out_row_bytes[k] < 0)
        std::memcpy(dst.data(), out.data(), out.bytes());
      else
        std::memcpy(dst.data() + first * out_row_bytes[k], out.data(), static_cast<size_t>(real * out_row_bytes[k]));
    }
  }
  return outputs_;
}

const Tensor& Outputs::at(std::string_view name) const {
  for (const auto& [n, t] : items_)
    if (n == name) return t;
  fail({}, "no output '{}' (the outputs are: {})", name, fmt::join(names(), ", "));
}

bool Outputs::contains(std::string_view name) const {
  return std::any_of(items_.begin(), items_.end(), [&](const value_type& item) { return item.first == name; });
}

std::vector<std::string> Outputs::names() const {
  std::vector<std::string> out;
  for (const auto& item : items_) out.push_back(item.first);
  return out;
}

const Tensor& Outputs::at_index(size_t i) const {
  if (i >= items_.size()) fail({}, "predict has no output {} (it has {})", i, items_.size());
  return items_[i].second;
}

const Tensor& Session::output(std::string_view name) const {
  int32_t i = find(name, is_output);
  if (i < 0) fail({}, "model '{}' has no output '{}'", program_.name, name);
  return storage_[static_cast<size_t>(i)];
}

Tensor& Session::param(std::string_view name) {
  int32_t i = find(name, is_weight);
  if (i < 0) fail({}, "model '{}' has no param or optimizer state '{}'", program_.name, name);
  return storage_[static_cast<size_t>(i)];
}

std::vector<std::string> Session::param_names() const {
  std::vector<std::string> names;
  for (SlotKind kind : {SlotKind::Param, SlotKind::State})
    for (const Slot& s : program_.slots)
      if (s.kind == kind) names.push_back(s.name);
  return names;
}

void refuse_nonfinite(const std::string& path, const std::string& name, const Tensor& t) {
  if (int64_t bad = first_nonfinite(t); bad >= 0)
    fail({path}, "tensor '{}' holds a non-finite value (element {} is {}): not loaded; gradc writes checkpoints only of "
                 "finite params and state, so this one is damaged or was written elsewhere", name, bad,
         element_as_double(t, bad));
}

// A checkpoint is what a run can restart from: one holding a NaN or an infinity is never written.
void Session::save(const std::string& path) const {
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (const std::string& name : param_names()) {
    const Tensor& t = storage_[static_cast<size_t>(find(name, is_weight))];
    if (int64_t bad = first_nonfinite(t); bad >= 0)
      fail({path}, "not saved: '{}' holds a non-finite value (element {} is {}); a checkpoint is written only of finite "
                   "params and state", name, bad, element_as_double(t, bad));
    named.emplace_back(name, &t);
  }
  save_safetensors(path, named);
}

// Checked by name and type as PyTorch's strict load_state_dict; nothing changes unless all is well.
void Session::load(const std::string& path) {
  std::map<std::string, Tensor> saved = load_safetensors(path);
  bool has_state = false;
  for (const Slot& s : program_.slots)
    if (s.kind == SlotKind::State && saved.count(s.name)) has_state = true;
  std::vector<std::pair<size_t, Tensor>> updates;
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (!is_weight(s.kind)) continue;
    auto it = saved.find(s.name);
    if (it == saved.end()) {
      if (s.kind == SlotKind::State && !has_state) continue;  // params alone: the optimizer starts fresh
      fail({path}, "the checkpoint has no tensor '{}' ({} {})", s.name, kind_word(s.kind), s.type);
    }
    if (it->second.type() != s.type)
      fail({path}, "tensor '{}' is {} in the checkpoint but {} in the model", s.name, it->second.type(), s.type);
    refuse_nonfinite(path, s.name, it->second);
    updates.emplace_back(i, std::move(it->second));
    saved.erase(it);
  }
  if (!saved.empty()) fail({path}, "the checkpoint has a tensor '{}' that the model does not have", saved.begin()->first);
  if (!has_state) {
    // A fresh optimizer: its state back to how it starts (zeros for every optimizer here).
    for (size_t i = 0; i < program_.slots.size(); ++i)
      if (program_.slots[i].kind == SlotKind::State)
        updates.emplace_back(i, initialize(program_.slots[i].init, program_.slots[i].type, 0, program_.slots[i].name));
  }
  for (auto& [i, t] : updates) {
    storage_[i] = std::move(t);
    pointers_[i] = storage_[i].data();
  }
}

}  // namespace gradc
