// The step's thread pool (gradc/ThreadPool.h): every task runs once, results do not depend on
// the thread count, and a run never waits for a worker that claimed nothing (one stopped by a
// signal here, as a descheduled one would be).
#include <doctest/doctest.h>

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "gradc/ThreadPool.h"

namespace gradc {

namespace {

using namespace std::chrono_literals;

// Counts how often each task ran.
struct Counts {
  std::vector<std::atomic<int>> ran;
  explicit Counts(int64_t n) : ran(static_cast<size_t>(n)) {}
  static int32_t task(void* ctx, int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) static_cast<Counts*>(ctx)->ran[static_cast<size_t>(t)].fetch_add(1);
    return 0;
  }
  bool each_once() const {
    for (const std::atomic<int>& r : ran)
      if (r.load() != 1) return false;
    return true;
  }
};

// The params after `steps` steps of a spec on fixed inputs, with `threads` threads.
std::vector<std::vector<float>> trained(const Model& m, int threads, int steps) {
  Session s(m, {.seed = 7, .threads = threads});
  std::map<std::string, Tensor> inputs;
  for (const Slot& slot : m.slots)
    if (slot.kind == SlotKind::Input) {
      Tensor t(slot.type);
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (t.dtype() == DType::F32) t.as<float>()[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.3f;
        else if (t.dtype() == DType::I32) t.as<int32_t>()[i] = static_cast<int32_t>(i % 10);
      }
      inputs.emplace(slot.name, std::move(t));
    }
  Feeds feeds;
  for (const auto& [name, t] : inputs) feeds.emplace(name, TensorView(t));
  for (int i = 0; i < steps; ++i) s.step(feeds);
  std::vector<std::vector<float>> params;
  for (const Slot& slot : m.slots)
    if (slot.kind == SlotKind::Param) {
      const Tensor& t = s.param(slot.name);
      params.emplace_back(t.as<float>(), t.as<float>() + t.numel());
    }
  return params;
}

// The params after `steps` steps on 2, 4 and 8 threads are the bits of those on one.
void same_bits_on_1_2_4_and_8_threads(const Model& m, int steps) {
  std::vector<std::vector<float>> one = trained(m, 1, steps);
  for (int threads : {2, 4, 8}) {
    CAPTURE(threads);
    std::vector<std::vector<float>> many = trained(m, threads, steps);
    REQUIRE(many.size() == one.size());
    for (size_t p = 0; p < one.size(); ++p)
      CHECK(std::memcmp(one[p].data(), many[p].data(), one[p].size() * sizeof(float)) == 0);
  }
}

// A worker stopped at an arbitrary point outside any task: SIGUSR1 parks the thread it is sent
// to in the handler until `release` is set.
std::atomic<bool> parked{false}, release{false};
void park(int) {
  parked.store(true);
  timespec ms{0, 1000000};
  while (!release.load()) nanosleep(&ms, nullptr);
  parked.store(false);
}

}  // namespace

TEST_CASE("thread pool: every task runs exactly once, for any count of tasks and threads") {
  for (int threads : {2, 3, 4, 8}) {
    ThreadPool pool(threads);
    CHECK(pool.threads() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) {
      CAPTURE(threads);
      CAPTURE(n);
      Counts c(n);
      CHECK(pool.run(&Counts::task, &c, n) == 0);
      CHECK(c.each_once());
    }
  }
}

TEST_CASE("thread pool: the lowest-numbered failing task's code is returned") {
  ThreadPool pool(4);
  auto failing = [](void*, int64_t begin, int64_t) -> int32_t { return begin >= 5 ? static_cast<int32_t>(begin) : 0; };
  for (int i = 0; i < 50; ++i) CHECK(pool.run(failing, nullptr, 40) == 5);
  CHECK(pool.run(failing, nullptr, 5) == 0);
}

TEST_CASE("thread pool: many short runs in a row, on more threads than cores") {
  int threads = static_cast<int>(std::thread::hardware_concurrency()) * 4 + 1;
  ThreadPool pool(std::min(threads, ThreadPool::kMaxThreads));
  std::atomic<int64_t> sum{0};
  auto add = [](void* ctx, int64_t begin, int64_t end) -> int32_t {
    for (int64_t t = begin; t < end; ++t) static_cast<std::atomic<int64_t>*>(ctx)->fetch_add(t + 1);
    return 0;
  };
  int64_t expected = 0;
  for (int run = 0; run < 10000; ++run) {
    int64_t n = 2 + run % 9;
    expected += n * (n + 1) / 2;
    REQUIRE(pool.run(add, &sum, n) == 0);
  }
  CHECK(sum.load() == expected);
}

TEST_CASE("thread pool: a step gives the same bits on 1, 2, 4 and 8 threads") {
  Model m = compile_file(test::source_path("samples/specs/mlp_256_128.gir"));
  same_bits_on_1_2_4_and_8_threads(m, 3);
}

// Conv, pooling and Loop kernels split over images, channels and slices (codegen/ParallelTasks.h):
// never along an axis a reduction sums over, so every sum keeps its order.
TEST_CASE("thread pool: the CNN's step gives the same bits on 1, 2, 4 and 8 threads") {
  Model m = compile_file(test::source_path("samples/specs/cnn_fmnist.gir"));
  same_bits_on_1_2_4_and_8_threads(m, 2);
}

// A strided conv whose weight gradient's blocks of output channels leave a remainder, avgpool,
// and Loop kernels large enough to split that sum over the batch (the bias's gradient), over
// rows and over columns.
TEST_CASE("thread pool: convs, pools and reductions give the same bits on 1, 2, 4 and 8 threads") {
  Model m = compile_string(R"(
    model reductions
    input x : f32[32, 3, 34, 34]
    input y : i32[32]
    param c : f32[10, 3, 5, 5] = he_uniform
    param d : f32[10, 1, 1]    = zeros
    param w : f32[2560, 10]    = glorot_uniform
    param s : f32[256, 400]    = glorot_uniform
    param t : f32[300, 512]    = glorot_uniform
    h = avgpool2d(tanh(add(conv2d(x, c, stride=1, padding=1), d)), kernel=2)
    logits = matmul(reshape(h, shape=[32, 2560]), w)
    rows = sum(square(s), axes=[1], keepdims=true)
    cols = sum(square(s), axes=[0], keepdims=true)
    per_row = sum(square(t), axes=[1], keepdims=true)
    loss = add(softmax_cross_entropy(logits, y), mul(0.001, add(sum(rows), add(mean(mul(cols, rows)), sum(square(per_row))))))
    minimize loss with adam(lr=0.01)
  )");
  same_bits_on_1_2_4_and_8_threads(m, 3);
}

TEST_CASE("thread pool: a worker busy in its task holds back only that task") {
  ThreadPool pool(3);
  std::thread::id caller;
  std::atomic<int> finished{0};
  std::atomic<bool> held{false}, let_go{false};
  struct Ctx {
    std::thread::id* caller;
    std::atomic<int>* finished;
    std::atomic<bool>*held, *let_go;
  } ctx{&caller, &finished, &held, &let_go};
  // The first task a worker claims waits for let_go; the caller's tasks wait until one is held
  // (so that a worker surely claims one, however loaded the machine); the rest finish at once.
  auto task = [](void* p, int64_t, int64_t) -> int32_t {
    Ctx& c = *static_cast<Ctx*>(p);
    bool expected = false;
    if (std::this_thread::get_id() == *c.caller) {
      for (auto until = std::chrono::steady_clock::now() + 20s; !c.held->load() && std::chrono::steady_clock::now() < until;)
        std::this_thread::sleep_for(100us);
    } else if (c.held->compare_exchange_strong(expected, true)) {
      while (!c.let_go->load()) std::this_thread::sleep_for(100us);
    }
    c.finished->fetch_add(1);
    return 0;
  };
  constexpr int n = 200;
  auto done = std::async(std::launch::async, [&] {
    caller = std::this_thread::get_id();
    return pool.run(task, &ctx, n);
  });
  // Everything but the held task finishes while it is held; the run ends once it is let go.
  auto until = std::chrono::steady_clock::now() + 30s;
  while (finished.load() < n - 1 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  CHECK(held.load());
  CHECK(finished.load() == n - 1);
  CHECK(done.wait_for(0s) == std::future_status::timeout);
  let_go.store(true);
  CHECK(done.get() == 0);
  CHECK(finished.load() == n);
}

TEST_CASE("thread pool: run returns while a worker is stopped outside any task") {
  ThreadPool pool(2);
  // Find the worker: the thread other than this one that runs a task.
  std::mutex m;
  std::set<pthread_t> seen;
  struct Ctx {
    std::mutex* m;
    std::set<pthread_t>* seen;
  } ctx{&m, &seen};
  auto note = [](void* p, int64_t, int64_t) -> int32_t {
    Ctx& c = *static_cast<Ctx*>(p);
    std::this_thread::sleep_for(100us);
    std::lock_guard lock(*c.m);
    c.seen->insert(pthread_self());
    return 0;
  };
  for (int i = 0; i < 2000 && seen.size() < 2; ++i) pool.run(note, &ctx, 8);
  seen.erase(pthread_self());
  REQUIRE(seen.size() == 1);
  pthread_t worker = *seen.begin();

  struct sigaction action{}, old{};
  action.sa_handler = park;
  sigemptyset(&action.sa_mask);
  REQUIRE(sigaction(SIGUSR1, &action, &old) == 0);
  release.store(false);
  REQUIRE(pthread_kill(worker, SIGUSR1) == 0);
  while (!parked.load()) std::this_thread::sleep_for(1ms);

  // The stopped worker claims nothing, so the runs finish on this thread alone.
  auto runs = std::async(std::launch::async, [&] {
    bool ok = true;
    for (int i = 0; i < 1000; ++i) {
      Counts c(16);
      ok = pool.run(&Counts::task, &c, 16) == 0 && c.each_once() && ok;
    }
    return ok;
  });
  bool finished = runs.wait_for(10s) == std::future_status::ready;
  CHECK(finished);
  release.store(true);  // (lets a pool that waited for the worker finish too)
  CHECK(runs.get());
  while (parked.load()) std::this_thread::sleep_for(1ms);
  sigaction(SIGUSR1, &old, nullptr);
  // Back from the stop, the worker takes tasks again.
  Counts c(1000);
  CHECK(pool.run(&Counts::task, &c, 1000) == 0);
  CHECK(c.each_once());
}

TEST_CASE("thread pool: destruction with idle workers, asleep or never used") {
  auto start = std::chrono::steady_clock::now();
  { ThreadPool unused(8); }
  {
    ThreadPool pool(8);
    Counts c(100);
    CHECK(pool.run(&Counts::task, &c, 100) == 0);
    std::this_thread::sleep_for(20ms);  // the workers have stopped spinning and sleep
  }
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("thread pool: a count out of range, or threads the system refuses, are errors") {
  for (int threads : {-1, ThreadPool::kMaxThreads + 1, 20000, 100000}) {
    CAPTURE(threads);
    CHECK_THROWS_WITH_AS(ThreadPool{threads}, doctest::Contains("1 to 256 threads"), Error);
  }
  CHECK(ThreadPool::resolve(0) >= 1);
  CHECK(ThreadPool::resolve(0) <= ThreadPool::kMaxThreads);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // Address space for no more thread stacks: std::thread throws std::system_error, the pool an Error.
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
  long pages = 0;
  {
    std::ifstream statm("/proc/self/statm");
    statm >> pages;
  }
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(pages) * 4096 + (64u << 20);
  REQUIRE(setrlimit(RLIMIT_AS, &tight) == 0);
  std::string message;
  try {
    ThreadPool pool(200);
  } catch (const Error& e) {
    message = e.message();
  }
  setrlimit(RLIMIT_AS, &old);
  CHECK(message.find("cannot start 200 threads") != std::string::npos);
#endif
}

TEST_CASE("thread pool: --threads takes 1 to 256 and refuses the rest with exit 1") {
  std::string spec = test::source_path("samples/specs/seed_mlp.gir");
  for (const char* bad : {"0", "-1", "257", "20000", "100000"}) {
    CAPTURE(bad);
    test::CommandResult train = test::run_gradc("train " + spec + " --data fashion-mnist --steps 1 --threads " + bad);
    CHECK(train.exit_code == 1);
    CHECK(train.err.find("--threads") != std::string::npos);
    CHECK(train.err.find("1 to 256") != std::string::npos);
    CHECK(test::run_gradc("bench " + spec + " --steps 1 --threads " + std::string(bad)).exit_code == 1);
  }
  test::CommandResult ok = test::run_gradc("bench " + spec + " --steps 2 --threads 3");
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("\nthreads: 3\n") != std::string::npos);
}

}  // namespace gradc
