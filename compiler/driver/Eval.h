// Evaluating and applying a trained spec: what `gradc eval` and `gradc predict` run, over a
// Session of the spec's forward graph (no train step is compiled) with a checkpoint's params.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ir/Graph.h"
#include "gradc/Session.h"

namespace gradc {

// Where the rows come from: Fashion-MNIST's test split (x, and y when the spec has it) when
// `inputs` is empty, else one .npy file per input (its leading dim the examples, the same in all).
struct EvalData {
  std::string data_dir = {};  // the gzipped IDX files of Fashion-MNIST
  std::vector<std::pair<std::string, std::string>> inputs = {};  // input name -> .npy file
};

struct EvalOptions {
  std::string load = {};  // the safetensors checkpoint: every param, optimizer state ignored
  EvalData data = {};
  int threads = 0;
};

// The class that row `row` of scores [rows, classes] (f32 or f64) rates highest (the first of ties).
int64_t argmax_row(const Tensor& scores, int64_t row, int64_t classes);

struct EvalReport {
  std::string model;
  int64_t examples = 0;
  double loss = 0;  // the mean over the examples of the spec's loss
  // With class labels (a softmax_cross_entropy of logits [B, C] against an i32[B] input):
  // confusion[t * classes + p] counts the examples of true class t predicted as p (argmax of
  // the logits). classes == 0: the spec has no class labels, and only the loss is reported.
  int64_t classes = 0;
  std::vector<int64_t> confusion;
  std::vector<std::string> class_names;  // "0", "1", ... or Fashion-MNIST's names

  double accuracy() const;
};

// Compiles the spec's forward graph with its loss (and logits) as outputs, loads the params of
// options.load and runs it over every example. The loss of the last partial batch is exact:
// each of its examples runs in a batch of its own copies (every loss here is a mean over rows).
EvalReport evaluate(const Graph& spec, const EvalOptions& options);

// scikit-learn's classification_report(y_true, y_pred, labels=range(C), target_names=names,
// digits=digits, zero_division=0) for the counts in `confusion` ([C * C], rows the true class).
std::string classification_report(const std::vector<int64_t>& confusion, const std::vector<std::string>& names,
                                  int digits = 2);
// The confusion matrix as numpy prints sklearn's confusion_matrix: "[[5 0]\n [1 3]]".
std::string format_confusion_matrix(const std::vector<int64_t>& confusion, int64_t classes);
// What `gradc eval` prints: loss, accuracy, the report and the matrix (the loss alone without classes).
std::string format_eval_report(const EvalReport& r);

struct PredictOptions {
  std::string load;
  std::vector<std::pair<std::string, std::string>> inputs = {};  // input name -> .npy file
  std::string out;     // the .npy file to write
  std::string output;  // which output of the spec; may be empty when the spec has one
  int threads = 0;
};
// Runs predict over every row of the inputs and writes the chosen output (all rows) as .npy.
// Returns the rows written.
int64_t predict_to_npy(const Graph& spec, const PredictOptions& options);

// Loads the params of a checkpoint into a session of a forward graph of `spec`: every param the
// session has must be there with its type; the checkpoint's optimizer state is ignored, and a
// tensor that is neither a param nor a state of the spec's training is refused.
void load_params(Session& session, const Graph& spec, const std::string& path);

}  // namespace gradc
