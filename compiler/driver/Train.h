// Training a spec on Fashion-MNIST or on .npy arrays: the loop of `gradc train`, over the
// JIT-ed train step of a Session.
#pragma once

#include <atomic>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ir/Graph.h"

namespace gradc {

// A learning-rate schedule for a spec whose optimizer's lr names a scalar input (`input lr :
// f32[]`, `adam(lr=lr)`): the value fed at step t = 0, 1, ..., T-1 of a run of T steps.
//   constant:      lr
//   step:          lr * gamma^floor(t / every)                       (PyTorch's StepLR)
//   exponential:   lr * gamma^(t / every)                            (Keras' ExponentialDecay)
//   cosine:        lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2    (CosineAnnealingLR, T_max = T)
//   warmup-cosine: lr t / warmup for t < warmup, then cosine from lr to lr_min over the other
//                  T - warmup steps (transformers' get_cosine_schedule_with_warmup, with a floor)
struct LrSchedule {
  enum class Kind { Constant, Step, Exponential, Cosine, WarmupCosine };
  Kind kind = Kind::Constant;
  double lr = 0;
  double lr_min = 0;
  double gamma = 0.1;
  int64_t every = 1;
  int64_t warmup = 0;
  double at(int64_t t, int64_t total) const;
};
std::optional<LrSchedule::Kind> parse_lr_schedule(const std::string& name);

struct TrainOptions {
  std::string data_dir;  // the four gzipped IDX files of Fashion-MNIST, used when `inputs` is empty
  std::vector<std::pair<std::string, std::string>> inputs;  // input name -> .npy file, rows = examples
  std::vector<std::pair<std::string, std::string>> val;     // the same for held-out data (--val)
  std::vector<std::pair<std::string, double>> feeds;        // scalar input -> its value, every step
  std::optional<LrSchedule> schedule;  // feeds the optimizer's lr input
  int64_t epochs = 1;
  int64_t max_steps = -1;  // stop after this many steps in all (-1: run every epoch out)
  uint64_t seed = 0;       // params and shuffling
  bool shuffle = true;
  std::string load;  // a safetensors checkpoint to start from ("" = initialize from the spec)
  std::string save;  // where to write params and optimizer state at the end ("" = nowhere)
  int64_t save_every = 0;  // also every this many steps (0: at the end only)
  int64_t early_stop = 0;  // stop after this many epochs without a better val loss (0: never)
  std::string log;   // a CSV file of per-step and per-epoch rows ("" = none); see kLogHeader
  int threads = 0;   // threads a step may use (0: every core)
  // Checked after every step: once nonzero (a signal's number, see stop_on_first_signal), the
  // run stops there as it would at its end (no validation of the part epoch), saving and logging.
  const std::atomic<int>* stop = nullptr;
};

// The --log file: one row per step (kind "step") and one per epoch (kind "epoch").
//   step rows:  epoch, step (counted over the run), loss of the step, lr fed (empty without an
//               lr input), seconds since the first step began; val columns empty
//   epoch rows: epoch, step (the run's steps so far), the epoch's mean train loss, val loss and
//               val accuracy (empty without val data, accuracy empty without class scores),
//               the last lr fed, seconds since the first step began
inline constexpr const char* kLogHeader = "kind,epoch,step,loss,val_loss,val_accuracy,lr,seconds\n";

struct StepReport {
  int64_t epoch = 0;        // 1-based
  int64_t step = 0;         // 1-based, within the epoch
  int64_t epoch_steps = 0;  // steps this epoch will run
  double loss = 0;
  double seconds = 0;       // since the epoch began
};

struct EpochReport {
  int64_t epoch = 0;      // 1-based
  int64_t steps = 0;      // steps run in this epoch
  double mean_loss = 0;   // over those steps
  bool test_set = false;  // the val data is Fashion-MNIST's test set
  int64_t val_examples = 0;    // 0: no val data
  double val_loss = 0;         // the mean loss over the val set's full batches
  std::optional<double> val_accuracy;  // when the spec's first output is class scores
  double seconds = 0;     // wall time of the epoch's steps
};

struct TrainEvents {
  std::function<void(double compile_ms)> compiled;
  std::function<void(const StepReport&)> step;
  std::function<void(const EpochReport&)> epoch;
  std::function<void(const std::string&)> note;  // early stopping, restored params, checkpoints
};

// Compiles `spec`, trains it and reports. With Fashion-MNIST the spec's inputs are x (28x28
// images, any f32 shape of 784 elements a row) and optionally y (i32 class ids); each epoch ends
// with the loss over the 10000 test images (and the test accuracy when the first output is the
// [B, 10] class scores). With .npy inputs every input of the spec with a batch dim gets a file
// whose leading dim is the examples, split into batches (shuffled by the seed unless !shuffle;
// the last partial batch is dropped), and `val` files are evaluated the same way each epoch.
// Scalar inputs come from `feeds` or the lr schedule. Evaluation uses predict on batches of the
// spec's size: the accuracy counts every example (the last batch padded), the loss the full
// batches.
void train(const Graph& spec, const TrainOptions& options, const TrainEvents& events);

}  // namespace gradc
