// Helpers shared by the test suites: sample paths, temporary files, running the command.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "runtime/Format.h"

namespace gradc::test {

// What f threw as a gradc Error, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string source_path(const std::string& rel) { return std::string(GRADC_SOURCE_DIR) + "/" + rel; }

inline std::vector<std::string> sample_specs() {
  return {"samples/specs/seed_mlp.gir", "samples/specs/mlp_128.gir", "samples/specs/regression.gir",
          "samples/specs/cnn_fmnist.gir", "samples/specs/autoencoder.gir", "samples/specs/lstm_classifier.gir",
          "samples/specs/gru_classifier.gir"};
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A directory of this test process's own, so that parallel tests never share files.
inline std::filesystem::path temp_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / fmt::format("gradc-tests-{}", getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::string write_temp(const std::string& name, const std::string& text) {
  std::filesystem::path p = temp_dir() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the `gradc` binary with `args` (a shell-quoted string) and captures its output.
inline CommandResult run_gradc(const std::string& args) {
  std::string out = (temp_dir() / "stdout.txt").string();
  std::string err = (temp_dir() / "stderr.txt").string();
  int status = std::system(fmt::format("{} {} >{} 2>{} </dev/null", GRADC_BINARY, args, out, err).c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace gradc::test
