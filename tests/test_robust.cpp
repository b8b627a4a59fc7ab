// Issue 14, faults 5 and 6: inputs that crashed, hung or overflowed, and outputs that replaced
// what was not a regular file. Each now ends in a located gradc::Error (exit code 1 from the
// command), promptly, with every file it did not own left as it was.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "TestUtil.h"
#include "driver/Pipeline.h"
#include "fuzz/FuzzFiles.h"
#include "gradc/gradc.h"
#include "ir/Kernel.h"
#include "ir/Verifier.h"
#include "runtime/File.h"
#include "runtime/Idx.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"

namespace gradc {

using test::error_of;
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path d = test::temp_dir() / ("robust-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// test::run_gradc under `timeout 60`, so that a hang fails the test (exit code 124).
test::CommandResult run_with_timeout(const std::string& args) {
  std::string out = (test::temp_dir() / "robust-stdout.txt").string();
  std::string err = (test::temp_dir() / "robust-stderr.txt").string();
  int status = std::system(fmt::format("timeout 60 {} {} >{} 2>{} </dev/null", GRADC_BINARY, args, out, err).c_str());
  test::CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = test::read_file(out);
  r.err = test::read_file(err);
  return r;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A .npy file with `header` as its header text, unchecked, and `data` after it.
std::string raw_npy(const std::string& name, const std::string& header, const std::string& data = "") {
  std::string text = header + "\n";
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>(text.size() >> (8 * i));
  return test::write_temp(name, bytes + text + data);
}

std::string raw_safetensors(const std::string& name, const std::string& header, const std::string& data = "") {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  return test::write_temp(name, bytes + header + data);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

const char* kRegression = "model m\ninput x : f32[4, 2]\nparam w : f32[2, 2] = zeros\nloss = mean(matmul(x, w))\n"
                          "minimize loss with sgd(lr=0.1)\n";

}  // namespace

// ---- fault 5: specs the backend indexed or recursed over unchecked

TEST_CASE("robust: a spec with assign lines needs an output, the step's loss") {
  std::string no_output = "model m\ninput x : f32[4, 3]\nparam w : f32[3, 2] = zeros\nh = matmul(x, w)\n"
                          "assign w = sub(w, mul(w, 0.1))\n";
  std::string e = error_of([&] { load_spec(no_output, "noout.gir"); });
  CHECK(contains(e, "noout.gir:5:"));
  CHECK(contains(e, "a spec with assign lines needs an output"));

  // The command: exit 1 with the location (was SIGSEGV in ModuleEmitter, outputs[0] of none).
  std::string spec = test::write_temp("noout.gir", no_output);
  test::CommandResult r = test::run_gradc("dump " + spec + " --stage llvm");
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "noout.gir:5:"));

  // A hand-written step with its loss first still compiles.
  std::string ok = "model m\ninput x : f32[4, 3]\nparam w : f32[3, 2] = zeros\noutput loss = mean(matmul(x, w))\n"
                   "assign w = sub(w, mul(w, 0.1))\n";
  CHECK_NOTHROW(compile(load_spec(ok, "ok.gir")));

  // The first output is the loss the step returns: a tensor there was taken for one (its
  // element 0 reported as the loss), and an integer one too. Refused at its output line.
  for (const char* first : {"output h = matmul(x, w)\n", "output k\n"}) {
    INFO(first);
    std::string text = std::string("model m\ninput x : f32[4, 3]\ninput k : i32[]\nparam w : f32[3, 2] = zeros\n") + first +
                       "output loss = mean(matmul(x, w))\nassign w = sub(w, mul(w, 0.1))\n";
    std::string bad = error_of([&] { load_spec(text, "first.gir"); });
    CHECK(contains(bad, "first.gir:5:8:"));
    CHECK(contains(bad, "returns its first output as the loss, so it must be a float scalar"));
  }
}

TEST_CASE("robust: ranks are bounded (kMaxRank) in specs, ops, graphs built in C++ and every file format") {
  std::string dims = "1" + repeat(", 1", 19999);
  std::string e = error_of([&] { load_spec("model m\ninput x : f32[" + dims + "]\noutput y = neg(x)\n", "r.gir"); });
  CHECK(contains(e, "r.gir:2:"));
  CHECK(contains(e, fmt::format("at most {} dimensions", kMaxRank)));

  std::string ones = "1" + repeat(", 1", 40);
  e = error_of([&] { load_spec("model m\ninput x : f32[2]\noutput y = reshape(x, shape=[2, " + ones + "])\n", "o.gir"); });
  CHECK(contains(e, "o.gir:3:"));
  CHECK(contains(e, "result of rank 42"));

  Graph g;
  g.name = "m";
  Node x;
  x.kind = NodeKind::Input;
  x.name = "x";
  x.type = {DType::F32, Shape(static_cast<size_t>(kMaxRank + 1), 1)};
  g.add(x);
  CHECK(contains(error_of([&] { verify_or_throw(g); }), "'x' has rank 33"));

  // .npy and safetensors (IDX allows 4, checked before).
  std::string npy = raw_npy("rank.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (" + repeat("1,", 20000) + "), }",
                            std::string(4, '\0'));
  CHECK(contains(error_of([&] { load_npy(npy); }), "shape has 20000 dims; gradc reads arrays of at most 32"));
  std::string st = raw_safetensors(
      "rank.safetensors",
      R"({"t": {"dtype": "F32", "shape": [)" + ones + R"(], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  CHECK(contains(error_of([&] { load_safetensors(st); }), "shape has 41 dims; gradc reads tensors of at most 32"));
}

TEST_CASE("robust: deeply nested file headers are refused, not recursed into") {
  std::string deep = std::string(40000, '(') + std::string(40000, ')');
  std::string npy = raw_npy("deep.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': " + deep + ", }");
  std::string e = error_of([&] { load_npy(npy); });
  CHECK(contains(e, "deep.npy: error: malformed .npy header: expected at most 16 nested tuples or lists"));

  // nlohmann's parser does not recurse, but dump() and the destructor do: a shape nested a
  // million deep, printed in the message about the bad dim, overflowed the stack.
  std::string st = raw_safetensors("deep.safetensors", R"({"t": {"dtype": "F32", "shape": )" + std::string(1000000, '[') +
                                                          std::string(1000000, ']') + R"(, "data_offsets": [0, 0]}})");
  e = error_of([&] { load_safetensors(st); });
  CHECK(contains(e, "deep.safetensors: error: header nests JSON arrays or objects over 64 deep"));
}

TEST_CASE("robust: size arithmetic saturates where it wrapped (checked_* and saturating_* in Types.h)") {
  CHECK_FALSE(checked_mul(int64_t{1} << 32, int64_t{1} << 31).has_value());
  CHECK(checked_mul(int64_t{1} << 31, int64_t{1} << 31) == int64_t{1} << 62);
  CHECK_FALSE(checked_add(INT64_MAX, 1).has_value());
  CHECK(saturating_add(INT64_MAX - 1, 5) == INT64_MAX);
  CHECK(saturating_bytes({DType::F64, {int64_t{1} << 48, int64_t{1} << 48}}) == INT64_MAX);
  CHECK(saturating_bytes({DType::F64, {3, 5}}) == 120);

  // 4,100 unused f64[2^48] inputs: 2^51 bytes each, a sum that wrapped negative and passed the
  // memory check, then died in std::bad_alloc.
  std::string big = "model big\n";
  for (int i = 0; i < 4100; ++i) big += fmt::format("input u{} : f64[281474976710656]\n", i);
  big += std::string(kRegression).substr(std::string_view("model m\n").size());
  std::string e = error_of([&] { compile(load_spec(big, "big.gir")); });
  CHECK(contains(e, "needs more than 9223372036854775807 bytes"));
  CHECK(contains(e, "more than this machine's"));

  // A f32[2^24, 2^24] matmul: 2^73 FLOPs, which wrapped; now the count saturates.
  std::string mm = "model mm\ninput x : f32[16777216, 16777216]\nparam w : f32[16777216, 16777216] = zeros\n"
                   "loss = mean(matmul(x, w))\nminimize loss with sgd(lr=0.1)\n";
  KernelProgram p = train_kernels(load_spec(mm, "mm.gir"));
  bool saturated = false;
  for (const Kernel& k : p.kernels) {
    CHECK(k.flops >= 0);
    CHECK(k.bytes >= 0);
    saturated |= k.kind == KernelKind::MatMul && k.flops == INT64_MAX;
  }
  CHECK(saturated);
  CHECK(contains(error_of([&] { compile(load_spec(mm, "mm.gir")); }), "more than this machine's"));
}

// ---- fault 5: inputs that are not regular files

TEST_CASE("robust: a FIFO, directory or device given as an input is refused at once, not opened") {
  fs::path dir = fresh_dir("fifo-in");
  std::string fifo = (dir / "pipe").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string kind = "cannot read file: it is a FIFO (named pipe), not a regular file";
  CHECK(contains(error_of([&] { load_npy(fifo); }), fifo + ": error: " + kind));
  CHECK(contains(error_of([&] { load_safetensors(fifo); }), fifo + ": error: " + kind));
  CHECK(contains(error_of([&] { read_idx(fifo); }), fifo + ": error: " + kind));
  CHECK(contains(error_of([&] { load_spec_file(fifo); }), fifo + ": error: " + kind));
  CHECK(contains(error_of([&] { read_idx(dir.string()); }), "it is a directory, not a regular file"));
  CHECK(contains(error_of([&] { load_npy("/dev/zero"); }), "it is a character device, not a regular file"));

  // The command, under a timeout: before, each of these hung in open() until killed (124).
  std::string spec = test::write_temp("fifo.gir", kRegression);
  Tensor x(TensorType{DType::F32, {8, 2}});
  std::string xs = (dir / "x.npy").string();
  save_npy(xs, x);
  fs::path fashion = dir / "fashion";
  fs::create_directories(fashion);
  REQUIRE(::mkfifo((fashion / "train-images-idx3-ubyte.gz").c_str(), 0600) == 0);
  for (const std::string& args : {"train " + spec + " --input x=" + fifo, "train " + spec + " --input x=" + xs + " --load " + fifo,
                                  "dump " + fifo, "check " + fifo,
                                  "train " + test::source_path("samples/specs/seed_mlp.gir") + " --data fashion-mnist --data-dir " +
                                      fashion.string()}) {
    CAPTURE(args);
    auto start = std::chrono::steady_clock::now();
    test::CommandResult r = run_with_timeout(args);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "not a regular file"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
  }
}

// ---- fault 6: outputs that are not regular files

TEST_CASE("robust: a save onto a FIFO, a directory or a symlink to one is refused and leaves it as it was") {
  Tensor t = Tensor::of<float>({2}, {1, 2});
  fs::path dir = fresh_dir("fifo-out");
  fs::path fifo = dir / "pipe", sub = dir / "sub", to_fifo = dir / "to_fifo", to_dir = dir / "to_dir",
           dangling = dir / "dangling";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  fs::create_directory(sub);
  fs::create_symlink(fifo, to_fifo);
  fs::create_symlink(sub, to_dir);
  fs::create_symlink(dir / "nowhere", dangling);
  std::vector<std::string> before = names_in(dir);

  struct Case {
    fs::path path;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {fifo, "cannot save: it is a FIFO (named pipe), not a regular file"},
           {sub, "cannot save: it is a directory, not a regular file"},
           {to_fifo, "cannot save: it is a symbolic link to a FIFO (named pipe), not to a regular file"},
           {to_dir, "cannot save: it is a symbolic link to a directory, not to a regular file"},
           {dangling, "cannot save: it is a symbolic link to a missing file"},
       }) {
    CAPTURE(c.path);
    CHECK(contains(error_of([&] { save_safetensors(c.path.string(), {{"t", &t}}); }), c.path.string() + ": error: " + c.message));
    CHECK(contains(error_of([&] { save_npy(c.path.string(), t); }), c.message));
  }
  CHECK(names_in(dir) == before);  // no temporary, nothing replaced
  CHECK(fs::is_fifo(fs::symlink_status(fifo)));
  CHECK(fs::is_directory(fs::symlink_status(sub)));
  CHECK(fs::is_empty(sub));
  CHECK(fs::is_symlink(fs::symlink_status(to_fifo)));

  // A symlink to a regular file: the file is replaced and the link kept.
  fs::path file = dir / "real.safetensors", link = dir / "link.safetensors";
  save_safetensors(file.string(), {{"old", &t}});
  fs::create_symlink(file, link);
  save_safetensors(link.string(), {{"new", &t}});
  CHECK(fs::is_symlink(fs::symlink_status(link)));
  CHECK(load_safetensors(file.string()).contains("new"));

  // The command: --save and --log onto a FIFO exit 1 before training, the FIFO still a FIFO.
  std::string spec = test::write_temp("out.gir", kRegression);
  Tensor x(TensorType{DType::F32, {8, 2}});
  std::string xs = (dir / "x.npy").string();
  save_npy(xs, x);
  for (const char* option : {"--save", "--log"}) {
    CAPTURE(option);
    test::CommandResult r =
        test::run_gradc(fmt::format("train {} --input x={} --epochs 1 {} {}", spec, xs, option, fifo.string()));
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "is a FIFO (named pipe), not a regular file"));
    CHECK_FALSE(contains(r.out, "epoch"));  // refused before training
    CHECK(fs::is_fifo(fs::symlink_status(fifo)));
  }
}

// An output flag pointed at a file the command reads (by any path: ./, a symlink), at another
// output, at an empty path or into a missing directory: refused before any work, the file as it
// was (--save over the spec, -o over the checkpoint, --log over the data exited 0 and destroyed them).
TEST_CASE("robust: outputs never write over the command's own inputs or each other, and are checked up front") {
  fs::path dir = fresh_dir("clobber");
  std::string spec = (dir / "m.gir").string(), xs = (dir / "x.npy").string(), ckpt = (dir / "m.st").string();
  std::ofstream(spec) << kRegression;
  Tensor x(TensorType{DType::F32, {8, 2}});
  save_npy(xs, x);
  fs::create_symlink(ckpt, dir / "alias.st");
  const std::string train = fmt::format("train {} --input x={} --epochs 1 ", spec, xs);
  REQUIRE(test::run_gradc(train + "--save " + ckpt).exit_code == 0);
  const std::string spec_bytes = test::read_file(spec), x_bytes = test::read_file(xs), ckpt_bytes = test::read_file(ckpt);

  struct Case {
    std::string args, message;
  };
  const std::string predict = fmt::format("predict {} --load {} --input x={} ", spec, ckpt, xs);
  for (const Case& c : std::vector<Case>{
           {train + "--save " + spec, "--save would write over the spec, which this command reads"},
           {train + "--save " + (dir / "." / "x.npy").string(), "--save would write over --input x"},
           {train + "--log " + xs, "--log would write over --input x"},
           {train + "--load " + ckpt + " --log " + ckpt, "--log would write over --load"},
           {train + "--save " + (dir / "o.st").string() + " --log " + (dir / "o.st").string(),
            "--save and --log name one file"},
           {train + "--save " + (dir / "missing" / "o.st").string(), "the directory " + (dir / "missing").string() + " does not exist"},
           {predict + "-o " + ckpt, "-o would write over --load"},
           {predict + "-o " + (dir / "alias.st").string(), "-o would write over --load"},
           {predict + "-o " + spec, "-o would write over the spec"},
           {predict + "-o ''", "-o: expected a file to write, got an empty path"},
       }) {
    CAPTURE(c.args);
    test::CommandResult r = test::run_gradc(c.args);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, c.message));
    CHECK_FALSE(contains(r.out, "epoch"));  // refused before training
  }
  CHECK(test::read_file(spec) == spec_bytes);
  CHECK(test::read_file(xs) == x_bytes);
  CHECK(test::read_file(ckpt) == ckpt_bytes);
  CHECK_FALSE(fs::exists(dir / "o.st"));

  // A resumed run may save over the checkpoint it loaded (read whole first, written atomically).
  CHECK(test::run_gradc(train + "--load " + ckpt + " --save " + ckpt).exit_code == 0);
  CHECK(contains(error_of([&] { save_npy("", x); }), "the path is empty"));
}

TEST_CASE("robust: a save's temporary is named for what it is and removed when a signal ends the save") {
  CHECK(temporary_name_pattern("dir/ckpt.safetensors") == "dir/.ckpt.safetensors.gradc-tmp-XXXXXX");
  CHECK(temporary_name_pattern("ckpt") == ".ckpt.gradc-tmp-XXXXXX");
  fs::path dir = fresh_dir("signal");
  std::string target = (dir / "ckpt.bin").string();
  std::string old = "the old checkpoint";
  test::write_temp("robust-signal/ckpt.bin", old);

  for (int sig : {SIGINT, SIGTERM}) {
    CAPTURE(sig);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // A save of 4 GiB (one 64 MiB buffer written 64 times): long enough to be interrupted.
      remove_temporaries_on_signals();
      static std::vector<std::byte> chunk(size_t{64} << 20);
      std::vector<std::span<const std::byte>> pieces(64, std::span<const std::byte>(chunk));
      try {
        write_file_atomically(target, pieces);
      } catch (...) {
      }
      ::_exit(0);
    }
    // Wait for the temporary to appear, then signal.
    bool seen = false;
    for (int i = 0; i < 2000 && !seen; ++i) {
      for (const std::string& name : names_in(dir)) seen |= name.starts_with(".ckpt.bin.gradc-tmp-");
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(seen);
    ::kill(child, sig);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(names_in(dir) == std::vector<std::string>{"ckpt.bin"});
    CHECK(test::read_file(target) == old);
  }
}

}  // namespace gradc

// ---- the fuzz corpus of the file readers

TEST_CASE("robust: the file fuzzer's seeds are read or refused without a crash, valid files read") {
  int files = 0, taken = 0;
  for (const auto& entry : std::filesystem::directory_iterator(gradc::test::source_path("tests/fuzz_files"))) {
    if (entry.path().extension() == ".md") continue;
    CAPTURE(entry.path().string());
    bool ok = gradc::fuzz::run_file_reader(gradc::test::read_file(entry.path().string()));
    std::string name = entry.path().filename().string();
    // The families that once crashed a reader are refused; the other seeds are valid files.
    bool refused = false;
    for (const char* family : {"nested", "rank40", "overflow"}) refused |= name.find(family) != std::string::npos;
    CHECK(ok == !refused);
    ++files;
    taken += ok ? 1 : 0;
  }
  CHECK(files >= 9);
  CHECK(taken >= 5);
}

