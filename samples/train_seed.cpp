// The seed's program in C++ against the public API: compile the spec, loop over epochs and
// batches of Fashion-MNIST calling the JIT-ed train step, print the test accuracy.
//
//   build/train_seed [--spec samples/specs/seed_mlp.gir] [--epochs 10] [--steps N] [--seed 0]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>

#include <gradc/gradc.h>
#include <gradc/Dataset.h>

namespace {

// The share of the test images whose argmax of predict's class scores is the label: predict takes
// all 10000 rows at once (batches of the spec's size inside, the last one padded and cut back).
double accuracy(gradc::Session& s, const gradc::LabeledData& test, const gradc::TensorType& x_type) {
  const int64_t n = test.images.shape()[0];
  gradc::Shape rows = x_type.shape;  // [B, 784] or [B, 1, 28, 28]: the images as x's examples
  rows[0] = n;
  const gradc::Tensor& probs = s.predict({{"x", gradc::TensorView(test.images.as<float>(), rows)}}).first();
  const int64_t classes = probs.shape()[1];
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs.as<float>() + i * classes;
    correct += std::max_element(row, row + classes) - row == test.labels.as<int32_t>()[i];
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec = GRADC_SOURCE_DIR "/samples/specs/seed_mlp.gir";
  int64_t epochs = 10, max_steps = -1;
  uint64_t seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--spec")) spec = argv[i + 1];
    else if (!std::strcmp(argv[i], "--epochs")) epochs = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) max_steps = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = std::stoull(argv[i + 1]);
    else {
      std::cerr << "usage: train_seed [--spec FILE] [--epochs N] [--steps N] [--seed S]\n";
      return 1;
    }
  }
  try {
    gradc::Model model = gradc::compile_file(spec);
    gradc::Session s(model, {.seed = seed});
    const gradc::TensorType& x_type = model.spec[*model.spec.find("x")].type;
    int64_t batch = x_type.shape[0];
    std::cout << "compiled " << model.spec.name << " in " << model.compile_ms << " ms\n";

    gradc::LabeledData train = gradc::load_fashion_mnist(gradc::kFashionMnistDir, true);
    gradc::LabeledData test = gradc::load_fashion_mnist(gradc::kFashionMnistDir, false);
    gradc::Batches batches(train.images.shape()[0], batch, /*shuffle=*/true, seed);
    gradc::Tensor xs({gradc::DType::F32, {batch, 28, 28}}), ys({gradc::DType::I32, {batch}});
    int64_t steps = 0;
    for (int64_t epoch = 1; epoch <= epochs && steps != max_steps; ++epoch, batches.next_epoch()) {
      auto start = std::chrono::steady_clock::now();
      double total = 0;
      int64_t run = 0;
      for (int64_t b = 0; b < batches.size() && steps != max_steps; ++b, ++steps, ++run) {
        gradc::gather_rows(train.images, batches.indices(b), xs);
        gradc::gather_rows(train.labels, batches.indices(b), ys);
        total += s.step({{"x", gradc::TensorView(xs.as<float>(), x_type.shape)}, {"y", ys}});
      }
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << "epoch " << epoch << ": mean loss " << total / static_cast<double>(run) << ", test accuracy "
                << accuracy(s, test, x_type) << "%, " << seconds << " s\n";
    }
  } catch (const gradc::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
