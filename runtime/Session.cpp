#include "runtime/Session.h"

#include <cmath>
#include <cstdlib>

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

void Session::bind_inputs(const Feeds& inputs, uint8_t use) {
  for (const auto& [name, view] : inputs)
    if (find(name, is_input) < 0) fail({}, "model '{}' has no input '{}'", program_.name, name);
  for (size_t i = 0; i < program_.slots.size(); ++i) {
    const Slot& s = program_.slots[i];
    if (s.kind != SlotKind::Input || !(s.uses & use)) continue;
    auto it = inputs.find(s.name);
    if (it == inputs.end()) fail({}, "no value given for input '{}' ({})", s.name, s.type);
    const TensorView& v = it->second;
    TensorType given{v.dtype, v.shape};
    if (given != s.type) fail({}, "input '{}' expects {}, got {}", s.name, s.type, given);
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
    fail({}, "{} stopped, {}: {}", what, changed ? "params changed" : "params unchanged", why);
  }
}

double Session::step(const Feeds& inputs) {
  bind_inputs(inputs, kUsedByTrainStep);
  run(program_.train_step, "train step");
  const Tensor& loss = storage_[static_cast<size_t>(program_.loss_slot)];
  return loss.dtype() == DType::F64 ? *loss.as<double>() : *loss.as<float>();
}

const Tensor& Session::predict(const Feeds& inputs) {
  bind_inputs(inputs, kUsedByPredict);
  run(program_.predict_entry(), "predict");
  if (program_.predict_outputs.empty()) fail({}, "model '{}' declares no output to predict", program_.name);
  return storage_[static_cast<size_t>(program_.predict_outputs[0])];
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

// The first element of `t` that is NaN or infinite, or -1.
template <typename T>
int64_t first_nonfinite(const Tensor& t) {
  const T* v = t.as<T>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(v[i])) return i;
  return -1;
}

// A checkpoint is what a run can restart from: one holding a NaN or an infinity is never written.
void Session::save(const std::string& path) const {
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (const std::string& name : param_names()) {
    const Tensor& t = storage_[static_cast<size_t>(find(name, is_weight))];
    int64_t bad = t.dtype() == DType::F32 ? first_nonfinite<float>(t) : t.dtype() == DType::F64 ? first_nonfinite<double>(t) : -1;
    if (bad >= 0)
      fail({path}, "not saved: '{}' holds a non-finite value (element {} is {}); a checkpoint is written only of finite "
                   "params and state", name, bad, t.dtype() == DType::F32 ? double(t.as<float>()[bad]) : t.as<double>()[bad]);
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
