// Training a spec on Fashion-MNIST or on .npy arrays: the loop of `gradc train`, over the
// JIT-ed train step of a Session.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ir/Graph.h"

namespace gradc {

struct TrainOptions {
  std::string data_dir;  // the four gzipped IDX files of Fashion-MNIST, used when `inputs` is empty
  std::vector<std::pair<std::string, std::string>> inputs;  // input name -> .npy file, rows = examples
  int64_t epochs = 1;
  int64_t max_steps = -1;  // stop after this many steps in all (-1: run every epoch out)
  uint64_t seed = 0;       // params and shuffling
  bool shuffle = true;
  std::string load;  // a safetensors checkpoint to start from ("" = initialize from the spec)
  std::string save;  // where to write params and optimizer state at the end ("" = nowhere)
  std::string log;   // a CSV file of `step,loss`, one line per step ("" = none)
  int threads = 0;   // threads a step may use (0: every core)
};

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
  double test_accuracy = 0;  // Fashion-MNIST only
  int64_t test_examples = 0;
  double seconds = 0;     // wall time of the epoch's steps
};

struct TrainEvents {
  std::function<void(double compile_ms)> compiled;
  std::function<void(const StepReport&)> step;
  std::function<void(const EpochReport&)> epoch;
};

// Compiles `spec`, trains it and reports. With Fashion-MNIST the spec's inputs are x (28x28
// images, any f32 shape of 784 elements a row) and y (i32 class ids), its first output the class
// scores, and each epoch ends with the test accuracy over all 10000 test images (predict runs
// on batches of the spec's size; the last one is padded). With .npy inputs every input of the
// spec gets a file whose leading dim is the examples, split into batches (shuffled by the seed
// unless !shuffle; the last partial batch is dropped).
void train(const Graph& spec, const TrainOptions& options, const TrainEvents& events);

}  // namespace gradc
