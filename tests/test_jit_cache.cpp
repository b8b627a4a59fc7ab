// The object cache: a second compile of a spec links the cached object (no O3, no instruction
// selection) and trains bit for bit as the first; anything else in the key misses; a damaged
// cache file is replaced; a cache that cannot be written is no cache, and no error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>

#include "JitUtil.h"
#include "TestUtil.h"

namespace gradc {

namespace {

namespace fs = std::filesystem;

// A cache directory of the test's own, empty.
std::string fresh_cache(const std::string& name) {
  fs::path dir = test::temp_dir() / name;
  fs::remove_all(dir);
  return dir.string();
}

std::vector<fs::path> cached_files(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) files.push_back(e.path());
  return files;
}

bool has_phase(const Model& m, std::string_view phase) {
  return std::any_of(m.compile_phases.begin(), m.compile_phases.end(), [&](const auto& p) { return p.first == phase; });
}

const std::string kSeed = "samples/specs/seed_mlp.gir";

// The losses of `steps` train steps from seeded params on seeded inputs, then the params and
// optimizer state, and predict's output.
struct Run {
  std::vector<double> losses;
  std::map<std::string, Tensor> params;
  Tensor probs;
};
Run train(const Model& model, int steps) {
  Session session(model, {.seed = 42, .threads = 1});
  Run run;
  for (int s = 0; s < steps; ++s)
    run.losses.push_back(session.step(test::views(random_inputs(model.spec, 100 + static_cast<uint64_t>(s)))));
  for (const std::string& name : session.param_names()) run.params.emplace(name, session.param(name));
  run.probs = session.predict(test::views(random_inputs(model.spec, 7))).first();
  return run;
}

void check_same(const Run& a, const Run& b) {
  CHECK(a.losses == b.losses);  // bit for bit
  REQUIRE(a.params.size() == b.params.size());
  for (const auto& [name, t] : a.params) {
    INFO(name);
    CHECK(t == b.params.at(name));
  }
  CHECK(a.probs == b.probs);
}

// The cache file's layout (compiler/codegen/Jit.h): object | "gradcobj" | size | FNV-1a 64 | key.
constexpr size_t kTrailer = 8 + 8 + 8 + 32;
uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
// Wraps `object` in a trailer that checks out, with the key of the file it replaces.
std::string with_valid_trailer(const std::string& file, const std::string& object) {
  std::string trailer = file.substr(file.size() - kTrailer);
  uint64_t size = object.size(), sum = fnv1a(object);
  std::memcpy(trailer.data() + 8, &size, 8);  // little-endian hosts only, as the JIT is
  std::memcpy(trailer.data() + 16, &sum, 8);
  return object + trailer;
}

void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes; }

}  // namespace

TEST_CASE("jit cache: a second compile of a spec is a hit and trains bit for bit as the first") {
  CompileOptions options{.cache_dir = fresh_cache("hit")};
  Model first = compile_file(test::source_path(kSeed), options);
  CHECK_FALSE(first.cached);
  CHECK(has_phase(first, "O3"));
  // The step is callable now; predict compiles on another thread, and the cache file (the
  // whole program's objects) is written when it is done.
  REQUIRE(static_cast<bool>(first.predict_entry()));
  REQUIRE(cached_files(*options.cache_dir).size() == 1);

  Model second = compile_file(test::source_path(kSeed), options);
  CHECK(second.cached);
  CHECK_FALSE(has_phase(second, "O3"));
  CHECK_FALSE(has_phase(second, "codegen"));
  CHECK(cached_files(*options.cache_dir).size() == 1);
  MESSAGE("seed_mlp: compiled in ", first.compile_ms, " ms, from the cache in ", second.compile_ms, " ms");

  check_same(train(first, 4), train(second, 4));
}

TEST_CASE("jit cache: another spec or another hyperparameter misses") {
  CompileOptions options{.cache_dir = fresh_cache("miss")};
  std::string text = test::read_file(test::source_path(kSeed));
  REQUIRE(text.find("lr=0.001") != std::string::npos);
  std::string other_lr = text;
  other_lr.replace(other_lr.find("lr=0.001"), 8, "lr=0.002");

  CHECK_FALSE(compile_string(text, "seed.gir", options).cached);
  Model changed = compile_string(other_lr, "seed.gir", options);
  CHECK_FALSE(changed.cached);
  REQUIRE(static_cast<bool>(changed.predict_entry()));  // its cache file is written with predict's code
  CHECK_FALSE(compile_file(test::source_path("samples/specs/regression.gir"), options).cached);
  CHECK(cached_files(*options.cache_dir).size() == 3);
  CHECK(compile_string(text, "seed.gir", options).cached);
  CHECK(compile_string(other_lr, "seed.gir", options).cached);
}

TEST_CASE("jit cache: a damaged cache file is deleted and compiled afresh") {
  CompileOptions options{.cache_dir = fresh_cache("damaged")};
  Model reference = compile_file(test::source_path(kSeed), options);
  Run expected = train(reference, 2);
  REQUIRE(cached_files(*options.cache_dir).size() == 1);
  fs::path file = cached_files(*options.cache_dir)[0];
  const std::string good = test::read_file(file.string());
  REQUIRE(good.size() > kTrailer + 64);
  const std::string object = good.substr(0, good.size() - kTrailer);
  REQUIRE(with_valid_trailer(good, object) == good);  // the layout is as Jit.h says

  // Another spec's object, whole and checked, under this key: its trailer names its own key.
  CompileOptions elsewhere{.cache_dir = fresh_cache("damaged-other")};
  compile_file(test::source_path("samples/specs/mlp_128.gir"), elsewhere);
  REQUIRE(cached_files(*elsewhere.cache_dir).size() == 1);
  const std::string foreign = test::read_file(cached_files(*elsewhere.cache_dir)[0].string());

  std::string garbage(good.size(), '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::pair<const char*, std::string> damages[] = {
      {"empty", ""},
      {"truncated to 10 bytes", good.substr(0, 10)},
      {"truncated to half", good.substr(0, good.size() / 2)},
      {"the trailer cut off", object},
      {"garbage of the same size", garbage},
      {"one flipped byte", [&] { std::string s = good; s[s.size() / 3] ^= 0x40; return s; }()},
      {"another key's object", foreign},
      // Trailers that check out around objects that do not link: the JIT must refuse them.
      {"garbage object, valid trailer", with_valid_trailer(good, garbage.substr(0, object.size()))},
      {"half an object, valid trailer", with_valid_trailer(good, object.substr(0, object.size() / 2))},
      {"no section headers, valid trailer", with_valid_trailer(good, object.substr(0, 64))},
  };
  for (const auto& [what, bytes] : damages) {
    INFO("the cache file: ", what);
    write(file, bytes);
    Model m = compile_file(test::source_path(kSeed), options);
    CHECK_FALSE(m.cached);
    check_same(expected, train(m, 2));
    CHECK(test::read_file(file.string()) == good);  // replaced by the fresh object
    CHECK(compile_file(test::source_path(kSeed), options).cached);
  }
}

// A FIFO under a cache file's name would block a read forever, and a directory or FIFO must not be
// renamed over: the compile neither reads nor replaces what is not a regular file, and compiles
// afresh. (Hung before Jit.cpp checked the file type; CTest's timeout fails the test then.)
TEST_CASE("jit cache: a FIFO or a directory under a cache file's name is left alone and compiled past") {
  CompileOptions options{.cache_dir = fresh_cache("not-regular")};
  Model reference = compile_file(test::source_path(kSeed), options);
  Run expected = train(reference, 2);
  REQUIRE(cached_files(*options.cache_dir).size() == 1);
  const fs::path file = cached_files(*options.cache_dir)[0];
  for (const char* what : {"fifo", "directory"}) {
    INFO("the cache file is a ", what);
    fs::remove_all(file);
    if (std::string_view(what) == "fifo")
      REQUIRE(mkfifo(file.c_str(), 0600) == 0);
    else
      REQUIRE(fs::create_directory(file));
    Model m = compile_file(test::source_path(kSeed), options);
    CHECK_FALSE(m.cached);
    REQUIRE(static_cast<bool>(m.predict_entry()));  // the store, after predict's code, is done too
    check_same(expected, train(m, 2));
    CHECK(fs::status(file).type() == (std::string_view(what) == "fifo" ? fs::file_type::fifo : fs::file_type::directory));
    CHECK(cached_files(*options.cache_dir).size() == 1);  // no temporary left beside it
  }
  fs::remove_all(file);
}

TEST_CASE("jit cache: a cache directory that cannot be made or written still compiles") {
  fs::path not_a_dir = test::temp_dir() / "cache-is-a-file";
  write(not_a_dir, "a file where the cache directory would be");
  CompileOptions options{.cache_dir = (not_a_dir / "gradc").string()};
  for (int i = 0; i < 2; ++i) {
    Model m = compile_file(test::source_path(kSeed), options);
    CHECK_FALSE(m.cached);
    CHECK(static_cast<bool>(m.train_step));
    CHECK(train(m, 1).losses.size() == 1);
  }
}

TEST_CASE("jit cache: the environment names the directory, GRADC_CACHE=0 turns it off, empty is none") {
  std::string dir = fresh_cache("env");
  auto saved = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  std::optional<std::string> cache = saved("GRADC_CACHE"), cache_dir = saved("GRADC_CACHE_DIR");
  setenv("GRADC_CACHE_DIR", dir.c_str(), 1);

  setenv("GRADC_CACHE", "0", 1);
  CHECK_FALSE(compile_file(test::source_path(kSeed)).cached);
  CHECK(cached_files(dir).empty());

  setenv("GRADC_CACHE", "1", 1);
  CHECK_FALSE(compile_file(test::source_path(kSeed)).cached);
  CHECK(cached_files(dir).size() == 1);
  CHECK(compile_file(test::source_path(kSeed)).cached);
  CHECK_FALSE(compile_file(test::source_path(kSeed), {.cache_dir = ""}).cached);  // explicitly none

  for (auto [name, value] : {std::pair{"GRADC_CACHE", &cache}, std::pair{"GRADC_CACHE_DIR", &cache_dir}})
    if (*value) setenv(name, (*value)->c_str(), 1);
    else unsetenv(name);
}

}  // namespace gradc
