// Fusion and memory planning: kernel counts, the planner checker on every sample spec and on
// random graphs, and the fused JIT step against the interpreter on random graphs.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include "JitUtil.h"
#include "TestUtil.h"
#include "passes/MemoryPlan.h"

namespace gradc {

namespace {

void check_sound(const KernelProgram& p, const std::string& what) {
  std::vector<std::string> faults = check_plan(p.buffers, p.arena_bytes);
  INFO(what, ": ", faults.empty() ? "" : faults[0]);
  CHECK(faults.empty());
  std::vector<std::string> kernel_faults = verify_kernels(p, true);
  INFO(what, ": ", kernel_faults.empty() ? "" : kernel_faults[0]);
  CHECK(kernel_faults.empty());
  CHECK(p.arena_bytes >= p.lower_bound_bytes);
  CHECK(p.lower_bound_bytes <= p.unshared_bytes);
}

// A MatMul or Conv kernel's head reads its operands from memory: no member of the kernel may
// compute them (the head would read them before the epilogue wrote them).
void check_heads(const KernelProgram& p) {
  for (const Kernel& k : p.kernels) {
    if (k.kind != KernelKind::MatMul && k.kind != KernelKind::Conv) continue;
    CAPTURE(k.name);
    CHECK(p.graph[k.members[0]].op == (k.kind == KernelKind::MatMul ? OpKind::MatMul : OpKind::Conv2d));
    for (ValueId operand : {k.a, k.b}) {
      operand = p.graph.viewed(operand);
      CHECK(std::find(k.members.begin(), k.members.end(), operand) == k.members.end());
    }
  }
}

// A random training spec: a few params and inputs, elementwise ops, matmuls, transposes,
// reductions and rowwise ops chained at random, a scalar loss, a random optimizer.
std::string random_spec(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng)); };
  std::string text = "model random\ninput x : f32[4, 6]\nparam w : f32[6, 6] = glorot_uniform\n"
                     "param b : f32[6] = normal\nparam v : f32[4, 6] = normal\n";
  std::vector<std::string> mats = {"x", "v", "add(x, b)"};  // values of shape [4, 6]
  for (int i = 0; i < 8; ++i) {
    std::string a = mats[static_cast<size_t>(pick(static_cast<int>(mats.size())))];
    std::string c = mats[static_cast<size_t>(pick(static_cast<int>(mats.size())))];
    std::string e;
    switch (pick(9)) {
      case 0: e = fmt::format("matmul({}, w)", a); break;
      case 1: e = fmt::format("matmul({}, transpose(w))", a); break;
      case 2: e = fmt::format("mul({}, {})", a, c); break;
      case 3: e = fmt::format("tanh(add({}, b))", a); break;
      case 4: e = fmt::format("relu(sub({}, {}))", a, c); break;
      case 5: e = fmt::format("softmax({}, axis=1)", a); break;
      case 6: e = fmt::format("mul({}, sum({}, axes=[1], keepdims=true))", a, c); break;
      case 7: e = fmt::format("transpose(matmul(transpose(w), transpose({})))", a); break;
      default: e = fmt::format("div({}, add(square({}), 1))", a, c); break;
    }
    text += fmt::format("h{} = {}\n", i, e);
    mats.push_back(fmt::format("h{}", i));
  }
  const char* optimizers[] = {"sgd(lr=0.001)", "momentum(lr=0.001, momentum=0.9)", "adam(lr=0.01)", "adamw(lr=0.01)",
                              "sgd(lr=0.001, clip_norm=0.5)", "adam(lr=0.01, clip_norm=0.5)"};
  text += fmt::format("loss = mean(square({}))\noutput {}\nminimize loss with {}\n", mats.back(), mats[3 + static_cast<size_t>(pick(8))],
                      optimizers[pick(6)]);
  return text;
}

}  // namespace

TEST_CASE("fusion: the seed's step is at most 12 kernels in an arena at most half the naive bytes") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  KernelProgram fused = train_kernels(g), unfused = train_kernels(g, false);
  MESSAGE("seed_mlp: ", unfused.kernels.size(), " kernels unfused, ", fused.kernels.size(), " fused; arena ",
          unfused.arena_bytes, " -> ", fused.arena_bytes, " bytes (naive ", fused.naive_bytes, ")");
  CHECK(fused.kernels.size() <= 12);
  CHECK(2 * fused.arena_bytes <= fused.naive_bytes);
  // No transpose is materialized, and each param's Adam update is one kernel writing w, m, v.
  for (const Kernel& k : fused.kernels)
    for (ValueId m : k.members) CHECK(fused.graph[m].op != OpKind::Transpose);
  for (const char* param : {"w1", "b1", "w2", "b2"}) {
    CAPTURE(param);
    int writers = 0;
    for (const Kernel& k : fused.kernels) {
      int into = 0;
      for (ValueId v : k.outputs) {
        const Location& l = fused.locations[static_cast<size_t>(v)];
        if (l.kind == Location::Assigned) {
          std::string target = fused.graph[l.node].name;
          into += target == param || target == std::string(param) + ".exp_avg" || target == std::string(param) + ".exp_avg_sq";
        }
      }
      if (into) CHECK(into == 3);
      writers += into ? 1 : 0;
    }
    CHECK(writers == 1);
  }
}

TEST_CASE("fusion: the planner checker finds every sample's plans sound, fused and unfused") {
  for (const std::string& path : test::sample_specs()) {
    Graph g = load_spec_file(test::source_path(path));
    for (bool fuse : {true, false}) {
      KernelProgram train = train_kernels(g, fuse), predict = predict_kernels(g, fuse);
      check_sound(train, path + " train");
      check_sound(predict, path + " predict");
      check_heads(train);
      check_heads(predict);
      MESSAGE(path, std::string(fuse ? " fused: " : " unfused: "), train.kernels.size(), " kernels, arena ", train.arena_bytes,
              " bytes (naive ", train.naive_bytes, ", lower bound ", train.lower_bound_bytes, ")");
    }
  }
}

TEST_CASE("fusion: every value a kernel reads from another kernel comes with why it was not fused") {
  for (const std::string& path : test::sample_specs()) {
    CAPTURE(path);
    KernelProgram p = train_kernels(load_spec_file(test::source_path(path)));
    std::vector<int> stored_by(p.graph.nodes.size(), -1);
    for (size_t k = 0; k < p.kernels.size(); ++k)
      for (ValueId v : p.kernels[k].outputs) stored_by[static_cast<size_t>(v)] = static_cast<int>(k);
    for (const Kernel& k : p.kernels)
      for (ValueId v : k.inputs) {
        ValueId r = p.graph.viewed(v);
        auto reason = std::find_if(k.unfused.begin(), k.unfused.end(), [&](const auto& u) { return u.first == v; });
        CAPTURE(k.name);
        CAPTURE(v);
        CHECK((reason != k.unfused.end()) == (stored_by[static_cast<size_t>(r)] >= 0));
        if (reason != k.unfused.end()) CHECK(reason->second.find("not tried") == std::string::npos);
      }
  }
  // The seed's two GEMM kernels: the second reads relu's mask from the first, and both have a head.
  std::string fused = dump(load_spec_file(test::source_path("samples/specs/seed_mlp.gir")), Stage::Fused);
  CHECK(fused.find("  not fused: %12: both kernels have a head: a matmul, a conv or rows\n") != std::string::npos);
  CHECK(fused.find("  not fused: %7: read whole by the kernel's head\n") != std::string::npos);
  CHECK(fused.find(": a reduction, whole only after its kernel's loop\n") != std::string::npos);
}

TEST_CASE("fusion: the CNN's conv2d kernels take the bias, relu and relu's mask as their epilogue") {
  Graph g = load_spec_file(test::source_path("samples/specs/cnn_fmnist.gir"));
  for (bool training : {true, false}) {
    CAPTURE(training);
    KernelProgram p = training ? train_kernels(g) : predict_kernels(g);
    check_sound(p, training ? "cnn train" : "cnn predict");
    check_heads(p);
    int convs = 0;
    for (const Kernel& k : p.kernels) {
      for (size_t i = 0; i < k.members.size(); ++i)
        if (p.graph[k.members[i]].op == OpKind::Conv2d) CHECK((k.kind == KernelKind::Conv && i == 0));
      if (k.kind != KernelKind::Conv) continue;
      ++convs;
      CAPTURE(k.name);
      std::multiset<OpKind> epilogue;
      for (size_t i = 1; i < k.members.size(); ++i) epilogue.insert(p.graph[k.members[i]].op);
      CHECK(epilogue.count(OpKind::Add) == 1);
      CHECK(epilogue.count(OpKind::Relu) == 1);
      CHECK(epilogue.count(OpKind::Greater) == (training ? 1 : 0));  // the mask relu's gradient reads
      // The raw sums go straight into the bias add: they never reach memory.
      ValueId conv = k.members[0];
      CHECK(std::find(k.outputs.begin(), k.outputs.end(), conv) == k.outputs.end());
      CHECK(p.locations[static_cast<size_t>(conv)].kind == Location::None);
      for (const ArenaBuffer& b : p.buffers) CHECK(b.value != conv);
    }
    CHECK(convs == 2);
  }
}

// The seed's spec with `optimizer` in its minimize line.
std::string seed_with(const std::string& optimizer) {
  std::string text = test::read_file(test::source_path("samples/specs/seed_mlp.gir"));
  size_t at = text.find("minimize loss with ");
  REQUIRE(at != std::string::npos);
  return text.substr(0, at) + "minimize loss with " + optimizer + "\n";
}

TEST_CASE("fusion: clip_norm's global norm is stored by the kernels that sum it, for every optimizer") {
  // The norm sums every gradient's squares; the scale it gives multiplies every gradient. Fused
  // into the kernel that computes a gradient and its sum of squares, the scale would read that
  // sum before the kernel's loop has finished it, and the other kernels would read a sum that no
  // kernel stores.
  for (const char* optimizer : {"sgd(lr=0.1, clip_norm=1.0)", "momentum(lr=0.1, momentum=0.9, clip_norm=1.0)",
                                "momentum(lr=0.1, momentum=0.9, nesterov=true, clip_norm=1.0)", "adam(lr=0.001, clip_norm=1.0)",
                                "adamw(lr=0.001, clip_norm=1.0)"}) {
    CAPTURE(optimizer);
    Graph g = load_spec(seed_with(optimizer), "seed_clip.gir");
    KernelProgram p = train_kernels(g);
    check_sound(p, optimizer);
    for (const Kernel& k : p.kernels)
      for (ValueId m : k.members) {
        const Node& n = p.graph[m];
        if (n.kind != NodeKind::Op || n.op != OpKind::Sum || n.type.numel() != 1) continue;
        // The squares' sum of a gradient is stored: the norm is computed from it elsewhere.
        CHECK(std::find(k.outputs.begin(), k.outputs.end(), m) != k.outputs.end());
      }
  }
}

TEST_CASE("fusion: the kernel verifier finds a value no kernel stores and a kernel run before what it reads") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  KernelProgram p = train_kernels(g);
  REQUIRE(verify_kernels(p, true).empty());
  KernelProgram unstored = p;
  Kernel& first = unstored.kernels[0];
  REQUIRE(!first.outputs.empty());
  first.outputs.clear();
  std::vector<std::string> faults = verify_kernels(unstored, false);
  REQUIRE(!faults.empty());
  CHECK(faults[0].find("which no kernel stores") != std::string::npos);
  KernelProgram reordered = p;
  std::swap(reordered.kernels[0], reordered.kernels[1]);
  faults = verify_kernels(reordered, false);
  REQUIRE(!faults.empty());
  CHECK(faults[0].find("before kernel") != std::string::npos);
  KernelProgram unplaced = p;
  unplaced.locations[static_cast<size_t>(unplaced.kernels[0].outputs[0])] = {};
  CHECK(!verify_kernels(unplaced, true).empty());
  CHECK(verify_kernels(unplaced, false).empty());
}

// What a head reads (a matmul's or conv's operands, a row op's rows and class ids) is read
// from memory before any member of its kernel runs.
TEST_CASE("fusion: the kernel verifier finds a head that reads a value its kernel does not have in memory") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  KernelProgram p = train_kernels(g);
  REQUIRE(verify_kernels(p, true).empty());
  auto matmul = std::find_if(p.kernels.begin(), p.kernels.end(), [](const Kernel& k) { return k.kind == KernelKind::MatMul; });
  REQUIRE(matmul != p.kernels.end());
  size_t index = static_cast<size_t>(matmul - p.kernels.begin());
  KernelProgram unread = p;
  Kernel& k = unread.kernels[index];
  k.inputs.erase(std::find(k.inputs.begin(), k.inputs.end(), k.a));
  std::vector<std::string> faults = verify_kernels(unread, false);
  REQUIRE(!faults.empty());
  CHECK(faults[0].find("which is not one of its inputs") != std::string::npos);
  KernelProgram own = unread;
  own.kernels[index].members.push_back(own.kernels[index].a);
  faults = verify_kernels(own, false);
  REQUIRE(!faults.empty());
  CHECK(faults[0].find("which a member of the same kernel computes only after it") != std::string::npos);
}

// A [1, 1] value is a scalar to fusion, or a view of a constant: a head that reads one reads it
// from a kernel that stored it before (fused and unfused, train and predict).
TEST_CASE("fusion: specs with dims of 1 fuse into sound programs whose heads read only what earlier kernels stored") {
  for (const auto& [name, text] : test::unit_dim_specs()) {
    Graph g = load_spec(text, name);
    for (bool fuse : {true, false}) {
      CAPTURE(fuse);
      KernelProgram train = train_kernels(g, fuse), predict = predict_kernels(g, fuse);
      check_sound(train, name + " train");
      check_sound(predict, name + " predict");
      check_heads(train);
      check_heads(predict);
    }
  }
}

TEST_CASE("fusion: the checker catches overlapping buffers, and the planner is sound on random live ranges") {
  std::vector<ArenaBuffer> bad = {{1, 100, 0, 0, 3}, {2, 100, 64, 2, 5}};
  CHECK(check_plan(bad, 1000).size() == 1);
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<ArenaBuffer> buffers;
    int n = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      int32_t first = static_cast<int32_t>(rng() % 20);
      buffers.push_back({i, static_cast<int64_t>(1 + rng() % 5000), 0, first, first + static_cast<int32_t>(rng() % 8)});
    }
    int64_t arena = place_buffers(buffers);
    CHECK(check_plan(buffers, arena).empty());
  }
}

TEST_CASE("fusion: random graphs plan soundly and their fused JIT step equals the interpreter") {
  for (uint64_t seed = 0; seed < 30; ++seed) {
    std::string text = random_spec(seed);
    CAPTURE(text);
    Graph g = load_spec(text, "random.gir");
    KernelProgram train_program = train_kernels(g), predict_program = predict_kernels(g);
    check_sound(train_program, "random train");
    check_sound(predict_program, "random predict");
    check_heads(train_program);
    check_heads(predict_program);
    Model model = compile(g);
    Session session(model, {.seed = seed});
    Graph train = simplified_graph(g);
    interp::Feeds feeds;
    for (const std::string& name : session.param_names()) feeds[name] = test::to_interp(session.param(name));
    for (int s = 0; s < 3; ++s) {
      auto inputs = random_inputs(g, seed * 10 + static_cast<uint64_t>(s));
      for (const auto& [name, t] : inputs) feeds[name] = test::to_interp(t);
      double loss = session.step(test::views(inputs));
      double ref = interp::step(train, feeds)[static_cast<size_t>(train.outputs[0].value)].data[0];
      REQUIRE(std::isfinite(ref));
      CHECK(std::fabs(loss - ref) <= 1e-5 * std::max(std::fabs(ref), 1e-3));
    }
    for (const std::string& name : session.param_names()) {
      INFO(name);
      CHECK(test::relative_error(session.param(name), feeds.at(name)) <= 1e-5);
    }
  }
}

}  // namespace gradc
