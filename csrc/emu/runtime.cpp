// The emulator's scheduler: blocks over a pool of OS threads, the threads of
// a block as a loop or as fibers, barriers and warp collectives as
// rendezvous, and the checks a GPU would only show as a hang or as silent
// corruption (see emu.h for the contract).
//
// How one block runs (run_block):
//  1. A single "loop fiber" calls the kernel for thread after thread. Most
//     kernels (elementwise ones) never reach a barrier, so the whole block is
//     one loop with no switching at all.
//  2. The first thread that reaches a barrier or warp collective inside the
//     loop suspends the loop fiber, which from then on belongs to that thread
//     alone; the threads not yet started get fibers of their own. The threads
//     that already finished did so legitimately: no barrier lay between them
//     and the suspended thread.
//  3. Passes: every runnable fiber runs until it suspends or finishes. When
//     none can run, the rendezvous are resolved (warp collectives first, then
//     the block barrier), or the block has finished, or what the threads are
//     waiting for can never happen, which raises BarrierDivergence instead of
//     hanging as a GPU would.
#include "emu/runtime_internal.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

namespace dc::emu {

Error::~Error() = default;
BarrierDivergence::~BarrierDivergence() = default;
MisalignedAccess::~MisalignedAccess() = default;
LaunchConfigError::~LaunchConfigError() = default;
AsyncCopyError::~AsyncCopyError() = default;

namespace detail {
__thread Context tl_context __attribute__((tls_model("initial-exec")));
}  // namespace detail

using detail::tl_context;

// ---- settings ----------------------------------------------------------------------
namespace {

std::mutex g_launch_mutex;  // one launch at a time: the pool is shared
std::atomic<bool> g_race_check{false};
std::atomic<std::uint64_t> g_seed{0};

int threads_from_environment() {
  if (const char* text = std::getenv("DEEPCONV_EMU_THREADS")) {
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && value > 0 && value <= 4096) return static_cast<int>(value);
  }
  unsigned int cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

std::atomic<int> g_threads{0};  // 0 until first asked for

int configured_threads() {
  int threads = g_threads.load();
  if (threads == 0) {
    threads = threads_from_environment();
    g_threads.store(threads);
  }
  return threads;
}

}  // namespace

Settings settings() {
  Settings s;
  s.threads = configured_threads();
  s.race_check = g_race_check.load();
  s.seed = g_seed.load();
  s.stack_bytes = kStackBytes;
  s.context_switch = Fiber::switch_kind();
#if defined(DC_EMU_ASAN)
  s.sanitizer = true;
#else
  s.sanitizer = false;
#endif
  return s;
}

void set_race_check(bool enabled, std::uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  g_race_check.store(enabled);
  g_seed.store(seed);
}

// ---- messages ----------------------------------------------------------------------
namespace {

std::string format_index(uint3 v) {
  std::ostringstream out;
  out << "(" << v.x << "," << v.y << "," << v.z << ")";
  return out.str();
}

std::string where() {
  const Context& c = tl_context;
  std::ostringstream out;
  out << "kernel '" << (c.kernel_name ? c.kernel_name : "?") << "', block "
      << format_index(c.block_idx);
  return out.str();
}

const char* barrier_name(BarrierKind kind) {
  switch (kind) {
    case BarrierKind::kPlain: return "__syncthreads()";
    case BarrierKind::kCount: return "__syncthreads_count()";
    case BarrierKind::kAnd: return "__syncthreads_and()";
    case BarrierKind::kOr: return "__syncthreads_or()";
  }
  return "__syncthreads()";
}

const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::kSync: return "__syncwarp";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
    case WarpOp::kShfl: return "__shfl_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kCompute: return "a warp-wide instruction";
  }
  return "warp collective";
}

const char* warp_wait_name(const ThreadState& t) {
  return t.warp_op == WarpOp::kCompute ? t.site : warp_op_name(t.warp_op);
}

std::string describe_wait(const ThreadState& t) {
  std::ostringstream out;
  out << "thread " << format_index(t.index);
  if (t.status == ThreadStatus::kDone) {
    out << " has exited";
  } else if (t.status == ThreadStatus::kAtBarrier) {
    out << " waits at " << barrier_name(t.barrier_kind) << " at " << t.site;
  } else if (t.status == ThreadStatus::kAtWarp) {
    out << " waits at " << warp_wait_name(t) << "(mask 0x" << std::hex << t.mask << std::dec
        << ")";
    if (t.warp_op != WarpOp::kCompute) out << " at " << t.site;
  } else {
    out << " is running";
  }
  return out.str();
}

bool same_site(const char* a, const char* b) { return a == b || std::strcmp(a, b) == 0; }

}  // namespace

std::string where_thread() {
  return where() + ", thread " + format_index(tl_context.thread_idx);
}

[[noreturn]] void throw_misaligned(const void* p, std::size_t align, const char* what) {
  const Context& c = tl_context;
  std::ostringstream out;
  out << where() << ", thread " << format_index(c.thread_idx) << ": misaligned " << align
      << "-byte vector " << what << " at address " << p << " (address mod " << align << " = "
      << reinterpret_cast<std::uintptr_t>(p) % align << "); a GPU faults on this access";
  throw MisalignedAccess(out.str());
}

// ---- shared memory --------------------------------------------------------------------
void* dynamic_shared() {
  Worker* w = tl_context.worker;
  if (w == nullptr) throw Error("dynamic shared memory used outside a kernel launch");
  return w->arena;
}

void* shared_address(SharedSite& site, std::size_t bytes, std::size_t align, const char* name) {
  Worker* w = tl_context.worker;
  if (w == nullptr) throw Error(std::string("shared variable '") + name + "' used outside a kernel");
  for (const auto& entry : w->site_cache) {
    if (entry.first == &site) return w->arena + entry.second;
  }
  Launch& launch = *tl_context.launch;
  std::size_t offset = 0;
  {
    std::lock_guard<std::mutex> lock(launch.sites_mutex);
    auto found = std::find_if(launch.sites.begin(), launch.sites.end(),
                              [&](const auto& e) { return e.first == &site; });
    if (found != launch.sites.end()) {
      offset = found->second;
    } else {
      if (align < 16) align = 16;
      offset = (launch.static_end + align - 1) / align * align;
      if (offset + bytes > kMaxSharedBytes) {
        std::ostringstream out;
        out << where() << ": shared variable '" << name << "' (" << bytes
            << " bytes) takes the block past " << kMaxSharedBytes
            << " bytes of shared memory (dynamic " << launch.dynamic_shared_bytes
            << " + static " << offset + bytes - launch.static_base << ")";
        throw LaunchConfigError(out.str());
      }
      launch.sites.emplace_back(&site, offset);
      launch.static_end = offset + bytes;
    }
  }
  // First use on this worker: no thread of the current block can have
  // touched these bytes yet, so they get the block-start treatment now.
  std::memset(w->arena + offset, launch.race_check ? kPoisonByte : 0, bytes);
  w->arena_used = std::max(w->arena_used, offset + bytes);
  w->site_cache.emplace_back(&site, offset);
  return w->arena + offset;
}

// ---- the block scheduler ------------------------------------------------------------------
namespace {

Worker& this_worker() {
  thread_local std::unique_ptr<Worker> worker;
  if (!worker) worker = std::make_unique<Worker>();
  return *worker;
}

void loop_fiber_entry(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  const LaunchSpec& spec = *w->launch->spec;
  try {
    spec.run_loop(spec.closure, w->order.data(), w->launch->thread_index.data(),
                  w->launch->threads_per_block, &w->loop_next, w->thread_ptrs.data(),
                  &w->loop_stop);
  } catch (...) {
    w->error = std::current_exception();
  }
  // Once the loop was broken, this fiber ran one thread only: that thread.
  if (w->loop_stop) tl_context.thread->status = ThreadStatus::kDone;
}

void thread_fiber_entry(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  const LaunchSpec& spec = *w->launch->spec;
  try {
    spec.run_one(spec.closure);
  } catch (...) {
    w->error = std::current_exception();
  }
  tl_context.thread->status = ThreadStatus::kDone;
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  // splitmix64 step: decorrelates (seed, block, phase) into a shuffle seed.
  std::uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t name_hash(const char* name) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (; *name; ++name) h = (h ^ static_cast<unsigned char>(*name)) * 0x100000001b3ull;
  return h;
}

// Between two barriers any order of the threads is a legal CUDA schedule.
// The default runs them in index order; race-check mode alternates reversed
// and shuffled orders, so a result that depends on the order (a race) shows
// up as a difference.
void choose_order(Worker& w, std::uint64_t block_linear) {
  if (!w.launch->race_check) return;  // index order, set once per launch
  const int n = w.launch->threads_per_block;
  for (int i = 0; i < n; ++i) w.order[i] = i;
  if (w.phase % 2 == 0) {
    std::reverse(w.order.begin(), w.order.end());
  } else {
    std::mt19937_64 rng(mix(mix(w.launch->seed, block_linear), w.phase));
    std::shuffle(w.order.begin(), w.order.end(), rng);
  }
}

Fiber* take_fiber(Worker& w) {
  if (w.fibers_in_use == w.fibers.size()) w.fibers.push_back(std::make_unique<Fiber>(kStackBytes));
  return w.fibers[w.fibers_in_use++].get();
}

// Makes `t` the running thread: its fiber (a fresh one on first use), the
// built-in variables, the status.
void make_current(Worker& w, ThreadState& t) {
  if (t.fiber == nullptr) {
    t.fiber = take_fiber(w);
    t.fiber->reset(&thread_fiber_entry, &w);
  }
  tl_context.thread_idx = t.index;
  tl_context.thread = &t;
  w.current_fiber = t.fiber;
  t.status = ThreadStatus::kRunning;
}

// The next thread of the current pass that can run, or nullptr at the end of
// the pass. The scheduler and the fibers (switching directly from one thread
// to the next) advance the same cursor.
ThreadState* next_runnable(Worker& w) {
  const int n = w.launch->threads_per_block;
  while (w.pass_next < n) {
    ThreadState& t = w.threads[w.order[w.pass_next++]];
    if (t.status == ThreadStatus::kRunnable) return &t;
  }
  return nullptr;
}

// Called by a thread that has just reached a rendezvous (its status says
// which): hands the OS thread to the next runnable thread of the pass, or
// back to the scheduler when the pass is over. One switch per arrival
// instead of two.
void suspend_current(Worker& w) {
  Fiber* from = w.current_fiber;
  if constexpr (Fiber::can_switch_directly()) {
    if (!w.in_loop) {
      if (ThreadState* next = next_runnable(w)) {
        make_current(w, *next);
        from->switch_to(*next->fiber);
        return;
      }
    }
  }
  from->yield();
}

void compute_warp_results(Worker& w, int base, unsigned int mask) {
  const ThreadState& first = *w.thread_ptrs[base + __builtin_ctz(mask)];
  const WarpOp op = first.warp_op;
  if (op == WarpOp::kCompute) {
    void* lanes[32] = {};
    for (unsigned int m = mask; m != 0; m &= m - 1) {
      const int lane = __builtin_ctz(m);
      lanes[lane] = w.thread_ptrs[base + lane]->lane_data;
    }
    first.compute(lanes, mask);
    for (unsigned int m = mask; m != 0; m &= m - 1) {
      w.thread_ptrs[base + __builtin_ctz(m)]->status = ThreadStatus::kRunnable;
    }
    return;
  }
  const int width = first.width;
  if (op != WarpOp::kSync && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
    throw Error(where() + ": " + warp_op_name(op) + " width " + std::to_string(width) +
                " is not a power of two in [1, 32]");
  }
  std::uint32_t votes = 0;
  for (unsigned int m = mask; m != 0; m &= m - 1) {
    const int lane = __builtin_ctz(m);
    if (w.thread_ptrs[base + lane]->value != 0) votes |= 1u << lane;
  }
  for (unsigned int m = mask; m != 0; m &= m - 1) {
    const int lane = __builtin_ctz(m);
    ThreadState& t = *w.thread_ptrs[base + lane];
    std::uint64_t result = 0;
    const int segment = width > 0 ? lane / width * width : 0;
    int source = lane;
    switch (op) {
      case WarpOp::kSync: break;
      case WarpOp::kBallot: result = votes; break;
      case WarpOp::kAny: result = (votes & mask) != 0; break;
      case WarpOp::kAll: result = (votes & mask) == mask; break;
      case WarpOp::kShfl: source = segment + (t.arg & (width - 1)); break;
      case WarpOp::kShflUp:
        source = lane - t.arg;
        if (source < segment) source = lane;
        break;
      case WarpOp::kShflDown:
        source = lane + t.arg;
        if (source >= segment + width) source = lane;
        break;
      case WarpOp::kShflXor:
        source = lane ^ t.arg;
        // CUDA: a lane may read from earlier segments but not later ones.
        if (source >= segment + width) source = lane;
        break;
    }
    if (op == WarpOp::kShfl || op == WarpOp::kShflUp || op == WarpOp::kShflDown ||
        op == WarpOp::kShflXor) {
      // Reading a lane outside the mask is undefined on a GPU; the lane's
      // own value is what one would most plausibly see, and it is stable.
      const bool source_ok = source >= 0 && source < 32 && ((mask >> source) & 1u);
      result = source_ok ? w.thread_ptrs[base + source]->value : t.value;
    }
    t.warp_result = result;
  }
  for (unsigned int m = mask; m != 0; m &= m - 1) {
    w.thread_ptrs[base + __builtin_ctz(m)]->status = ThreadStatus::kRunnable;
  }
}

// Releases every warp whose collective is complete. Each lane named in a
// waiting lane's mask must wait at the same kind of collective with the
// same mask; anything else can never complete.
bool resolve_warps(Worker& w) {
  const int n = w.launch->threads_per_block;
  bool released = false;
  for (int i = 0; i < n; ++i) {
    ThreadState& t = *w.thread_ptrs[i];
    if (t.status != ThreadStatus::kAtWarp) continue;
    const int base = t.warp * 32;
    const int lanes = std::min(32, n - base);
    const unsigned int present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    if (t.warp_op == WarpOp::kCompute && (t.mask & present) != t.mask) {
      // .aligned instructions need every lane of a full warp.
      throw BarrierDivergence(where() + ": " + describe_wait(t) + ", but warp " +
                              std::to_string(t.warp) + " has only " + std::to_string(lanes) +
                              " threads");
    }
    if (((t.mask >> t.lane) & 1u) == 0) {
      throw Error(where() + ": " + describe_wait(t) + ", but its mask does not include its own lane " +
                  std::to_string(t.lane));
    }
    const unsigned int mask = t.mask & present;
    for (unsigned int m = mask; m != 0; m &= m - 1) {
      const ThreadState& u = *w.thread_ptrs[base + __builtin_ctz(m)];
      const bool matches = u.status == ThreadStatus::kAtWarp && u.warp_op == t.warp_op &&
                           u.mask == t.mask && u.compute == t.compute;
      if (!matches) {
        throw BarrierDivergence(where() + ": warp " + std::to_string(t.warp) +
                                " cannot complete a collective: " + describe_wait(t) + ", but " +
                                describe_wait(u));
      }
    }
    compute_warp_results(w, base, mask);
    released = true;
  }
  return released;
}

// Returns false once every thread has finished.
bool resolve_barrier(Worker& w, std::uint64_t block_linear) {
  const int n = w.launch->threads_per_block;
  const ThreadState* waiting = nullptr;
  const ThreadState* exited = nullptr;
  for (int i = 0; i < n; ++i) {
    const ThreadState& t = *w.thread_ptrs[i];
    if (t.status == ThreadStatus::kAtBarrier && waiting == nullptr) waiting = &t;
    if (t.status == ThreadStatus::kDone && exited == nullptr) exited = &t;
  }
  if (waiting == nullptr) return false;
  if (exited != nullptr) {
    throw BarrierDivergence(where() + ": barrier divergence: " + describe_wait(*waiting) +
                            ", but " + describe_wait(*exited) + " without reaching it");
  }
  int count = 0;
  for (int i = 0; i < n; ++i) {
    const ThreadState& t = *w.thread_ptrs[i];
    if (!same_site(t.site, waiting->site) || t.barrier_kind != waiting->barrier_kind) {
      throw BarrierDivergence(where() + ": barrier divergence: " + describe_wait(*waiting) +
                              ", but " + describe_wait(t));
    }
    count += t.predicate;
  }
  int result = count;
  if (waiting->barrier_kind == BarrierKind::kAnd) result = count == n;
  if (waiting->barrier_kind == BarrierKind::kOr) result = count != 0;
  for (int i = 0; i < n; ++i) {
    w.thread_ptrs[i]->barrier_result = result;
    w.thread_ptrs[i]->status = ThreadStatus::kRunnable;
  }
  if (w.async.used) async_barrier(w);
  ++w.phase;
  choose_order(w, block_linear);
  return true;
}

void run_block(Worker& w, std::uint64_t block_linear) {
  Launch& launch = *w.launch;
  const dim3 grid = launch.spec->grid;
  tl_context.block_idx = {static_cast<unsigned int>(block_linear % grid.x),
                          static_cast<unsigned int>(block_linear / grid.x % grid.y),
                          static_cast<unsigned int>(block_linear / (std::uint64_t{grid.x} * grid.y))};
  std::memset(w.arena, launch.race_check ? kPoisonByte : 0, w.arena_used);
  if (w.async.used) async_block_start(w);

  // The threads' states are set up only if the loop below breaks: a block
  // that never meets a rendezvous needs none of them.
  w.fibers_in_use = 0;
  w.phase = 0;
  choose_order(w, block_linear);

  // Step 1: the whole block as one loop on one fiber.
  w.loop_next = 0;
  w.loop_stop = false;
  w.loop_fiber->reset(&loop_fiber_entry, &w);
  w.current_fiber = w.loop_fiber.get();
  w.in_loop = true;
  w.loop_fiber->resume();
  w.in_loop = false;
  if (w.error) std::rethrow_exception(w.error);
  if (w.loop_fiber->finished()) return;

  // Step 2: a thread suspended inside the loop; it keeps the loop fiber.
  // (w.order is still the loop's: only a resolved barrier changes it.)
  const int n = launch.threads_per_block;
  ThreadState& suspended = w.threads[w.order[w.loop_next - 1]];
  for (int i = 0; i < n; ++i) {
    ThreadState& t = w.threads[i];
    t.index = launch.thread_index[i];
    t.lane = i % 32;
    t.warp = i / 32;
    t.fiber = nullptr;
    if (&t != &suspended) t.status = ThreadStatus::kRunnable;  // its rendezvous is recorded
  }
  for (int k = 0; k < w.loop_next - 1; ++k) w.threads[w.order[k]].status = ThreadStatus::kDone;
  suspended.fiber = w.loop_fiber.get();
  w.loop_stop = true;

  // Step 3: passes and rendezvous.
  for (;;) {
    w.pass_next = 0;
    while (ThreadState* t = next_runnable(w)) {
      make_current(w, *t);
      t->fiber->resume();  // returns when the pass is over, or a thread finished
      if (w.error) std::rethrow_exception(w.error);
    }
    if (resolve_warps(w)) continue;
    if (!resolve_barrier(w, block_linear)) return;
  }
}

void prepare_worker(Worker& w, Launch& launch) {
  w.launch = &launch;
  w.error = nullptr;
  w.site_cache.clear();
  w.arena_used = launch.static_base;
  const int n = launch.threads_per_block;
  if (static_cast<int>(w.threads.size()) < n) w.threads.resize(n);
  w.order.resize(n);
  for (int i = 0; i < n; ++i) w.order[i] = i;
  w.thread_ptrs.resize(n);
  for (int i = 0; i < n; ++i) w.thread_ptrs[i] = &w.threads[i];
  if (!w.loop_fiber) w.loop_fiber = std::make_unique<Fiber>(kStackBytes);
  tl_context.launch = &launch;
  tl_context.worker = &w;
  tl_context.kernel_name = launch.spec->name;
  const dim3 b = launch.spec->block;
  const dim3 g = launch.spec->grid;
  tl_context.block_dim = {b.x, b.y, b.z};
  tl_context.grid_dim = {g.x, g.y, g.z};
}

void finish_worker() {
  tl_context.async_active = false;
  tl_context.launch = nullptr;
  tl_context.worker = nullptr;
  tl_context.thread = nullptr;
  tl_context.kernel_name = nullptr;
}

// ---- the pool of OS threads ------------------------------------------------------------------
class Pool {
 public:
  void run(Launch& launch) {
    const int threads = configured_threads();
    if (static_cast<int>(workers_.size()) != threads - 1) resize(threads - 1);
    next_block_.store(0);
    abort_.store(false);
    error_ = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &launch;
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work(launch);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void resize(int count) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    quit_ = false;
    // A new worker must wait for the *next* launch: were it to start from
    // generation 0 it would take the current (finished, null) job.
    for (int i = 0; i < count; ++i) workers_.emplace_back([this, g = generation_] { serve(g); });
  }

  void serve(std::uint64_t seen) {
    for (;;) {
      Launch* launch = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        launch = job_;
      }
      work(*launch);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_all();
    }
  }

  void work(Launch& launch) {
    Worker& w = this_worker();
    prepare_worker(w, launch);
    try {
      for (;;) {
        if (abort_.load(std::memory_order_relaxed)) break;
        const std::uint64_t i = next_block_.fetch_add(1);
        if (i >= launch.total_blocks) break;
        run_block(w, launch.block_order.empty() ? i : launch.block_order[i]);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      abort_.store(true);
    }
    finish_worker();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Launch* job_ = nullptr;
  std::uint64_t generation_ = 0;
  int busy_ = 0;
  bool quit_ = false;
  std::atomic<std::uint64_t> next_block_{0};
  std::atomic<bool> abort_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Never destroyed: worker threads may still be parked in it when the
// interpreter exits, and joining them from a static destructor can hang.
Pool& pool() {
  static Pool* instance = new Pool();
  return *instance;
}

void validate(const LaunchSpec& spec) {
  auto fail = [&](const std::string& why) {
    throw LaunchConfigError(std::string("kernel '") + spec.name +
                            "': invalid launch configuration: " + why);
  };
  const dim3 g = spec.grid;
  const dim3 b = spec.block;
  auto text = [](dim3 d) {
    return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
  };
  if (g.x < 1 || g.y < 1 || g.z < 1) fail("grid " + text(g) + " has a zero dimension");
  if (g.x > 2147483647u || g.y > 65535u || g.z > 65535u) {
    fail("grid " + text(g) + " exceeds (2147483647, 65535, 65535)");
  }
  if (b.x < 1 || b.y < 1 || b.z < 1) fail("block " + text(b) + " has a zero dimension");
  if (b.x > 1024u || b.y > 1024u || b.z > 64u) fail("block " + text(b) + " exceeds (1024, 1024, 64)");
  if (std::uint64_t{b.x} * b.y * b.z > 1024u) {
    fail("block " + text(b) + " has more than 1024 threads");
  }
  if (spec.dynamic_shared_bytes > kMaxSharedBytes) {
    fail(std::to_string(spec.dynamic_shared_bytes) + " bytes of dynamic shared memory exceed " +
         std::to_string(kMaxSharedBytes));
  }
}

}  // namespace

void run_launch(const LaunchSpec& spec) {
  if (tl_context.launch != nullptr) {
    throw Error(std::string("kernel '") + spec.name + "' launched from inside kernel '" +
                tl_context.kernel_name + "': device-side launches are not supported");
  }
  validate(spec);
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  Launch launch;
  launch.spec = &spec;
  launch.race_check = g_race_check.load();
  launch.seed = g_seed.load();
  launch.dynamic_shared_bytes = spec.dynamic_shared_bytes;
  launch.static_base = (spec.dynamic_shared_bytes + 15) / 16 * 16;
  launch.static_end = launch.static_base;
  launch.threads_per_block = static_cast<int>(spec.block.x * spec.block.y * spec.block.z);
  launch.thread_index.resize(launch.threads_per_block);
  for (int i = 0; i < launch.threads_per_block; ++i) {
    const unsigned int u = static_cast<unsigned int>(i);
    launch.thread_index[i] = {u % spec.block.x, u / spec.block.x % spec.block.y,
                              u / (spec.block.x * spec.block.y)};
  }
  launch.total_blocks = std::uint64_t{spec.grid.x} * spec.grid.y * spec.grid.z;
  if (launch.race_check) {
    // Blocks may run in any order on a GPU; so they do here.
    launch.block_order.resize(launch.total_blocks);
    for (std::uint64_t i = 0; i < launch.total_blocks; ++i) launch.block_order[i] = i;
    // Keyed by the kernel's name, not a launch count, so that a failure
    // seen with a seed replays with that seed alone.
    std::mt19937_64 rng(mix(launch.seed, name_hash(spec.name)));
    std::shuffle(launch.block_order.begin(), launch.block_order.end(), rng);
  }
  pool().run(launch);
}

void set_num_threads(int threads) {
  if (threads < 0) throw std::invalid_argument("threads must be >= 0");
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  g_threads.store(threads == 0 ? threads_from_environment() : threads);
}

// ---- barriers and warp collectives, called from kernel code -------------------------------------
namespace {
ThreadState& calling_thread(const char* what) {
  if (tl_context.thread == nullptr || tl_context.worker == nullptr) {
    throw Error(std::string(what) + " called outside a kernel");
  }
  return *tl_context.thread;
}
}  // namespace

int sync_threads(const char* site, BarrierKind kind, int predicate) {
  ThreadState& t = calling_thread(barrier_name(kind));
  t.status = ThreadStatus::kAtBarrier;
  t.site = site;
  t.barrier_kind = kind;
  t.predicate = predicate;
  suspend_current(*tl_context.worker);
  return t.barrier_result;
}

std::uint64_t warp_collective(const char* site, WarpOp op, unsigned int mask, std::uint64_t value,
                              int arg, int width) {
  ThreadState& t = calling_thread(warp_op_name(op));
  t.status = ThreadStatus::kAtWarp;
  t.site = site;
  t.warp_op = op;
  t.mask = mask;
  t.value = value;
  t.arg = arg;
  t.width = width;
  t.compute = nullptr;
  suspend_current(*tl_context.worker);
  return t.warp_result;
}

void warp_compute(const char* what, unsigned int mask, void* lane_data, WarpComputeFn fn) {
  ThreadState& t = calling_thread(what);
  t.status = ThreadStatus::kAtWarp;
  t.site = what;
  t.warp_op = WarpOp::kCompute;
  t.mask = mask;
  t.lane_data = lane_data;
  t.compute = fn;
  suspend_current(*tl_context.worker);
}

unsigned int active_mask() {
  calling_thread("__activemask");
  Worker& w = *tl_context.worker;
  const int linear = static_cast<int>(tl_context.thread - w.threads.data());
  const int base = linear / 32 * 32;
  const int n = w.launch->threads_per_block;
  unsigned int mask = 0;
  for (int lane = 0; lane < 32 && base + lane < n; ++lane) {
    // In the loop no thread state is kept: count every lane as active.
    if (w.in_loop || w.thread_ptrs[base + lane]->status != ThreadStatus::kDone) mask |= 1u << lane;
  }
  return mask;
}

}  // namespace dc::emu
