// A Session runs a compiled model: it owns the params, the optimizer state, the outputs and the
// arena, and calls the generated entry points. Needs neither LLVM nor the compiler.
//
//   gradc::Session s(model, {.seed = 42});
//   std::vector<float> xs(64 * 784);  std::vector<int32_t> ys(64);   // shapes from the spec
//   double loss = s.step({{"x", xs}, {"y", ys}});      // one call of the native train step
//   const gradc::Tensor& probs = s.predict({{"x", xs}}).at("probs");  // any number of rows
//   s.save("ckpt.safetensors");
#pragma once

#include <concepts>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gradc/Program.h"
#include "gradc/Tensor.h"
#include "gradc/ThreadPool.h"

namespace gradc {

// The C++ types of the elements of a tensor: float (f32), double (f64), int32_t (i32).
template <typename T>
concept Element = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int32_t>;

// Elements the caller owns, checked against the slot they feed. Either with the dtype and shape
// they claim (a Tensor, or a pointer and a Shape), or a std::vector or std::span of the element
// type alone, whose shape is the slot's (step: exactly its element count; predict: any number
// of rows of it).
struct TensorView {
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;
  int64_t count = -1;  // the elements of a vector or span, which take the slot's shape; -1 when `shape` is given

  bool has_shape() const { return count < 0; }

  TensorView() = default;
  TensorView(const Tensor& t) : dtype(t.dtype()), shape(t.shape()), data(t.data()) {}  // NOLINT: implicit on purpose
  TensorView(DType dt, Shape s, const void* elements) : dtype(dt), shape(std::move(s)), data(elements) {}
  template <Element T>
  TensorView(const T* elements, Shape s) : dtype(dtype_of<T>()), shape(std::move(s)), data(elements) {}
  template <typename T, size_t N>
    requires Element<std::remove_const_t<T>>
  TensorView(std::span<T, N> elements)  // NOLINT: implicit on purpose
      : dtype(dtype_of<std::remove_const_t<T>>()), data(elements.data()), count(static_cast<int64_t>(elements.size())) {}
  template <Element T>
  TensorView(const std::vector<T>& elements)  // NOLINT: implicit on purpose
      : TensorView(std::span<const T>(elements)) {}
};

using Feeds = std::map<std::string, TensorView, std::less<>>;

// What predict returns: every output of the spec by name, in the spec's order.
class Outputs {
 public:
  using value_type = std::pair<std::string, Tensor>;

  // The output `name`; throws gradc::Error naming the outputs there are.
  const Tensor& at(std::string_view name) const;
  const Tensor& operator[](std::string_view name) const { return at(name); }
  bool contains(std::string_view name) const;
  const Tensor& first() const { return at_index(0); }  // the spec's first output
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> names() const;
  std::vector<value_type>::const_iterator begin() const { return items_.begin(); }
  std::vector<value_type>::const_iterator end() const { return items_.end(); }

 private:
  friend class Session;
  const Tensor& at_index(size_t i) const;
  std::vector<value_type> items_;
};

struct SessionOptions {
  uint64_t seed = 0;  // seeds the params' initializers (with each param's name)
  int threads = 0;    // threads a step may use: 0 means every core; results do not depend on it
};

// What step and predict throw when the compiled code stopped on bad data (a label out of range,
// a non-finite loss, gradient or updated param): whether it stopped after an update had already
// written params (they are then not the last good ones) or before anything changed.
class StepError : public Error {
 public:
  StepError(std::string message, bool params_changed) : Error({}, std::move(message)), params_changed_(params_changed) {}
  bool params_changed() const { return params_changed_; }

 private:
  bool params_changed_;
};

class Session {
 public:
  explicit Session(const Program& program, SessionOptions options = {});

  // One training step on the inputs (every input the step reads, each of exactly its slot's
  // dtype and shape, or a vector or span of exactly its element count). Returns the loss.
  // Throws gradc::Error for missing or mismatched inputs (params left as they were), and a
  // StepError for bad data the step found (its params_changed() says whether params were).
  double step(const Feeds& inputs);

  // The forward graph on the inputs it reads; returns every output of the spec by name. Takes
  // any number N of rows: the inputs with the spec's batch as their leading dim (B, the same for
  // all) each get N rows ([N, ...] views, or vectors or spans of N rows' elements), and the
  // compiled predict runs on ceil(N / B) batches, the last one padded with copies of its first
  // row inside; the outputs are cut back to N rows. Every other input is fed as its slot is; an
  // output without the batch as its leading dim needs N = B. The result stays valid until the
  // next predict (copy it to keep it).
  const Outputs& predict(const Feeds& inputs);

  // The last value an entry point wrote to an output, by name.
  const Tensor& output(std::string_view name) const;

  // A param or optimizer state by name ("w1", "w1.exp_avg", "adam.step"), to read or to set.
  Tensor& param(std::string_view name);
  std::vector<std::string> param_names() const;  // params, then state, in the spec's order

  // Checkpoints as safetensors: params and optimizer state by name. load() checks every name,
  // dtype and shape (and that every value is finite); a file of params alone restarts the
  // optimizer from its initial state.
  void save(const std::string& path) const;
  void load(const std::string& path);

  const Program& program() const { return program_; }

  // The raw entry point, for callers who manage memory themselves: the slot pointers (inputs
  // left as the last call set them) and the arena.
  void* const* raw_slots() { return pointers_.data(); }
  std::byte* raw_arena() { return arena_.get(); }
  void* raw_pool() { return pool_ ? pool_->entry() : nullptr; }  // null with one thread
  int threads() const { return pool_ ? pool_->threads() : 1; }

 private:
  void bind_inputs(const Feeds& inputs, uint8_t use);
  void check_names(const Feeds& inputs) const;
  void run(EntryPoint entry, const char* what);
  int32_t find(std::string_view name, bool (*kind_ok)(SlotKind)) const;

  Program program_;
  std::vector<Tensor> storage_;  // params, state and outputs (inputs stay the caller's)
  std::vector<void*> pointers_;  // one per slot, what the entry points get
  struct FreeAligned {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], FreeAligned> arena_;
  std::unique_ptr<ThreadPool> pool_;
  Outputs outputs_;              // predict's last result
  std::vector<Tensor> staging_;  // per slot: the padded last batch of an input fed more or fewer rows than B
};

// Throws gradc::Error (at `checkpoint`) when tensor `name` of it holds a NaN or an infinity: a
// checkpoint is written and read only of finite params and state (Session::load, eval, predict).
void refuse_nonfinite(const std::string& checkpoint, const std::string& name, const Tensor& t);

}  // namespace gradc
