// The emulator runtime's own state: what one launch, one OS worker and one
// emulated thread carry. Only runtime.cpp uses this; kernels see emu.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "emu/emu.h"
#include "emu/fiber.h"

namespace dc::emu {

// The largest shared memory a block may have: sm_90's opt-in maximum.
constexpr std::size_t kMaxSharedBytes = 227 * 1024;
// Race-check mode fills shared memory with this at block start: 0xFF bytes
// read as NaN in floating point and -1 in integers, so a read of memory no
// thread wrote stands out.
constexpr unsigned char kPoisonByte = 0xFF;
// Per emulated thread. Committed only as touched; AddressSanitizer's
// instrumented frames are several times larger.
#if defined(DC_EMU_ASAN)
constexpr std::size_t kStackBytes = 1024 * 1024;
#else
constexpr std::size_t kStackBytes = 256 * 1024;
#endif

enum class ThreadStatus : std::uint8_t { kRunnable, kRunning, kAtBarrier, kAtWarp, kDone };

struct ThreadState {
  uint3 index{};
  int lane = 0;
  int warp = 0;
  ThreadStatus status = ThreadStatus::kRunnable;
  Fiber* fiber = nullptr;
  const char* site = "";
  // At a block barrier.
  BarrierKind barrier_kind = BarrierKind::kPlain;
  int predicate = 0;
  int barrier_result = 0;
  // At a warp collective.
  WarpOp warp_op = WarpOp::kSync;
  unsigned int mask = 0;
  std::uint64_t value = 0;
  int arg = 0;
  int width = 32;
  std::uint64_t warp_result = 0;
  // At a warp-wide instruction (WarpOp::kCompute).
  void* lane_data = nullptr;
  WarpComputeFn compute = nullptr;
};

// cp.async bookkeeping of one emulated thread (async_copy.cpp). Groups are
// numbered from 1 in commit order; copies not yet committed carry group
// committed + 1.
struct AsyncCopy {
  char* dst;
  const char* src;
  int cp_bytes;
  int src_bytes;
  int group;
};
struct AsyncThread {
  std::vector<AsyncCopy> pending;
  int committed = 0;
};

// What a block's cp.async copies have done to its shared memory, per 4-byte
// word: 0 = visible to every thread; owner + 1 = a copy by thread `owner`
// is in flight; kAsyncLanded | (owner + 1) = landed, visible to the owner
// only until the next __syncthreads. Kept only for blocks that issue a
// cp.async, and cleared through `touched`, so other blocks pay nothing.
constexpr std::uint16_t kAsyncLanded = 0x8000;
struct AsyncState {
  bool used = false;
  std::vector<AsyncThread> threads;
  std::vector<std::uint16_t> words;    // kMaxSharedBytes / 4 entries once used
  std::vector<std::uint32_t> touched;  // words set since the block started
  std::vector<std::uint32_t> landed;   // words landed since the last barrier
};
// "kernel 'name', block (x,y,z), thread (x,y,z)" for error messages.
std::string where_thread();

// Start of a block, and a resolved barrier: what async_copy.cpp must do then.
void async_block_start(struct Worker& w);
void async_barrier(struct Worker& w);

struct Launch {
  const LaunchSpec* spec = nullptr;
  bool race_check = false;
  std::uint64_t seed = 0;
  int threads_per_block = 0;
  std::uint64_t total_blocks = 0;
  std::vector<uint3> thread_index;          // linear thread id -> threadIdx
  std::vector<std::uint64_t> block_order;   // empty: in order
  // Shared memory: dynamic at offset 0, static variables after it, each at
  // an offset fixed for the whole launch when a block first declares it.
  std::size_t dynamic_shared_bytes = 0;
  std::size_t static_base = 0;
  std::size_t static_end = 0;
  std::mutex sites_mutex;
  std::vector<std::pair<const SharedSite*, std::size_t>> sites;
};

// One per OS thread that runs blocks (pool workers and the launching thread).
struct Worker {
  Worker() : arena(static_cast<char*>(::operator new(kMaxSharedBytes, std::align_val_t{64}))) {}
  ~Worker() { ::operator delete(arena, std::align_val_t{64}); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  Launch* launch = nullptr;
  std::exception_ptr error;

  // Shared memory of the block being run.
  char* arena;
  std::size_t arena_used = 0;  // bytes to clear (or poison) at block start
  std::vector<std::pair<const SharedSite*, std::size_t>> site_cache;

  // Emulated threads of the block being run.
  std::vector<ThreadState> threads;
  std::vector<ThreadState*> thread_ptrs;
  std::vector<int> order;      // schedule for the current phase
  std::uint64_t phase = 0;     // barriers crossed so far
  int pass_next = 0;           // cursor into `order` for the current pass
  std::unique_ptr<Fiber> loop_fiber;
  int loop_next = 0;
  bool loop_stop = false;
  bool in_loop = false;        // the loop fiber is running the block
  std::vector<std::unique_ptr<Fiber>> fibers;
  std::size_t fibers_in_use = 0;
  Fiber* current_fiber = nullptr;

  AsyncState async;  // cp.async copies of the block being run
};

}  // namespace dc::emu
