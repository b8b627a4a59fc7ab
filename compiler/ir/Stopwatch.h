// Times the consecutive phases of a compile into a list of (phase, milliseconds), for
// GRADC_TIME_COMPILE, the JIT's report and compile_bench. In ir/ because every compiler
// library sees it.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace gradc {

using Phases = std::vector<std::pair<std::string, double>>;

inline double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

class Stopwatch {
 public:
  explicit Stopwatch(Phases* phases = nullptr) : phases_(phases) {}  // nullptr: times nothing
  // Ends the phase begun at the last lap (or at construction) under `phase`'s name.
  void lap(std::string phase) {
    if (!phases_) return;
    phases_->emplace_back(std::move(phase), ms_since(last_));
    last_ = std::chrono::steady_clock::now();
  }

 private:
  Phases* phases_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace gradc
