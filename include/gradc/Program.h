// The contract between generated code and the runtime: the entry points the JIT (or, later, an
// ahead-of-time object) provides, and the slots they read and write.
//
//   int32_t train_step(void* const* slots, std::byte* arena, void* pool);
//   int32_t predict(void* const* slots, std::byte* arena, void* pool);
//
// `slots[i]` points at the elements of slot i (row-major, the slot's dtype): the inputs the
// caller feeds, the params and optimizer state the step reads and updates in place, and the
// outputs it writes. `arena` is scratch memory of `arena_bytes` bytes, 64-byte aligned, that
// holds every intermediate tensor at an offset fixed at compile time. A step allocates nothing.
// `pool` is a ParallelFor (gradc/StepAbi.h) that large kernels split their work over, or null
// for one thread; the results are the same either way. It returns 0, or k > 0 when the data was
// bad (a class id out of range, say): `errors[k - 1]` says what, and params and state are then
// left as they were, but for a param whose new value is not finite (errors_after_update[k - 1]):
// that is found as the update stores it, so params and state are partly updated then.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "gradc/Init.h"
#include "gradc/StepAbi.h"

namespace gradc {

enum class SlotKind : uint8_t { Input, Param, State, Output };

// Which entry points use a slot.
inline constexpr uint8_t kUsedByTrainStep = 1, kUsedByPredict = 2;

struct Slot {
  std::string name;
  SlotKind kind = SlotKind::Input;
  TensorType type;
  InitSpec init;      // params and state: how they start
  uint8_t uses = 0;   // kUsedByTrainStep | kUsedByPredict
};

struct Program {
  std::string name;                    // the model's
  std::vector<Slot> slots;
  int64_t arena_bytes = 0;
  EntryPoint train_step = nullptr;     // null when the spec minimizes nothing
  // Predict's entry point. When the spec trains, predict compiles on a thread of its own after
  // the train step is callable: the first call of predict_entry() waits for it (and rethrows
  // the error if it failed).
  std::shared_future<EntryPoint> predict;
  int32_t loss_slot = -1;              // the train step's loss (its first output)
  std::vector<int32_t> predict_outputs;  // the spec's outputs, as predict writes them
  std::vector<std::string> errors;     // messages of the non-zero return codes
  // Per code: the step stopped after it had changed params (a param went NaN or infinite), where
  // every other code stops it before any change.
  std::vector<bool> errors_after_update;
  std::shared_ptr<const void> code;    // keeps the machine code alive while any copy lives

  EntryPoint predict_entry() const { return predict.valid() ? predict.get() : nullptr; }
};

}  // namespace gradc
