// A Session runs a compiled model: it owns the params, the optimizer state, the outputs and the
// arena, and calls the generated entry points. Needs neither LLVM nor the compiler.
//
//   gradc::Session s(model, {.seed = 42});
//   double loss = s.step({{"x", xs}, {"y", ys}});      // one call of the native train step
//   const gradc::Tensor& probs = s.predict({{"x", xs}});
//   s.save("ckpt.safetensors");
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/Program.h"
#include "runtime/Tensor.h"
#include "runtime/ThreadPool.h"

namespace gradc {

// Elements the caller owns, with the dtype and shape they claim; checked against the slot.
struct TensorView {
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;

  TensorView() = default;
  TensorView(const Tensor& t) : dtype(t.dtype()), shape(t.shape()), data(t.data()) {}  // NOLINT: implicit on purpose
  TensorView(DType dt, Shape s, const void* elements) : dtype(dt), shape(std::move(s)), data(elements) {}
  template <typename T>
  TensorView(const T* elements, Shape s) : dtype(dtype_of<T>()), shape(std::move(s)), data(elements) {}
};

using Feeds = std::map<std::string, TensorView, std::less<>>;

struct SessionOptions {
  uint64_t seed = 0;  // seeds the params' initializers (with each param's name)
  int threads = 0;    // threads a step may use: 0 means every core; results do not depend on it
};

class Session {
 public:
  explicit Session(const Program& program, SessionOptions options = {});

  // One training step on the inputs (every input the step reads, each of exactly its slot's
  // dtype and shape). Returns the loss. Throws gradc::Error for missing or mismatched inputs and
  // for bad data the step found (params are then left as they were).
  double step(const Feeds& inputs);

  // The forward graph on the inputs it reads; returns the spec's first output (all of them
  // by name through output()).
  const Tensor& predict(const Feeds& inputs);

  // The last value an entry point wrote to an output, by name.
  const Tensor& output(std::string_view name) const;

  // A param or optimizer state by name ("w1", "w1.exp_avg", "adam.step"), to read or to set.
  Tensor& param(std::string_view name);
  std::vector<std::string> param_names() const;  // params, then state, in the spec's order

  // Checkpoints as safetensors: params and optimizer state by name. load() checks every name,
  // dtype and shape; a file of params alone restarts the optimizer from its initial state.
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
};

}  // namespace gradc
