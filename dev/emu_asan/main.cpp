// The emulator's fibers under AddressSanitizer, without Python: run by
// dev/emu_asan/run.sh at -O0, -O1 and -O3 (CI's ASan job runs it at -O1).
// Any ASan report, wrong result or broken invariant fails it.
//
//  1. Fiber level: a fiber stack that is reused (reset()) carries no stale
//     poison, whether its previous run finished or was abandoned mid-run
//     deep in instrumented frames (a launch that failed at a barrier).
//  2. Kernel level: barriers, warp collectives, errors that abandon fibers
//     (barrier divergence) or throw on a fiber (a misaligned float4 load),
//     then clean launches on the reused fibers. Before the fix in fiber.cpp,
//     -O1 reported a stack-buffer-overflow in dc_emu_fiber_main here.
#include <sanitizer/asan_interface.h>

#include <cstdio>
#include <vector>

#include "common/launch.cuh"
#include "emu/fiber.h"

#if !defined(DC_EMU_ASAN)
#error "build with -fsanitize=address: dev/emu_asan/run.sh"
#endif

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

// ---- 1. fiber stacks ------------------------------------------------------------

constexpr std::size_t kFiberStack = 256 * 1024;
constexpr int kDepth = 24;

struct DeepRun {
  dc::emu::Fiber* fiber;
  bool suspend_at_bottom;  // true: yield there and never be resumed again
};

// Frames with an addressable array each: ASan surrounds every one with
// poisoned redzones, which stay in the shadow if the frame never returns.
int descend(DeepRun& run, int depth) {
  volatile char scratch[200];
  scratch[depth % 200] = char(depth);
  if (depth == kDepth) {
    if (run.suspend_at_bottom) run.fiber->yield();
    return scratch[depth % 200];
  }
  return descend(run, depth + 1) + scratch[depth % 200];
}

void deep_entry(void* arg) { descend(*static_cast<DeepRun*>(arg), 0); }

// Runs on the reused stack: below this frame (where the previous run's deep
// frames were) nothing may be poisoned. A 1 KiB margin leaves this frame's
// own redzones and the call into the ASan runtime out of the range.
void probe_entry(void* arg) {
  char here;
  char* top = &here - 1024;
  char* bottom = top - kDepth * 256;
  *static_cast<void**>(arg) = __asan_region_is_poisoned(bottom, top - bottom);
}

void check_stack_reuse(bool abandon) {
  dc::emu::Fiber fiber(kFiberStack);
  DeepRun run{&fiber, abandon};
  fiber.reset(&deep_entry, &run);
  fiber.resume();
  expect(fiber.finished() != abandon, "deep run suspended / finished as intended");
  void* poisoned = nullptr;
  fiber.reset(&probe_entry, &poisoned);
  fiber.resume();
  expect(fiber.finished(), "probe run finished");
  if (poisoned) std::printf("stale poison at %p after a reused fiber stack\n", poisoned);
  expect(poisoned == nullptr,
         abandon ? "no stale poison after an abandoned run" : "no stale poison after a finished run");
}

// ---- 2. kernels -----------------------------------------------------------------

// Block-wide tree sum in shared memory: log2(blockDim.x) barriers.
__global__ void block_sum(const float* x, float* out) {  // x: (gridDim.x * blockDim.x,), out: (gridDim.x,)
  DC_SHARED(float[256], partial);
  const unsigned int t = threadIdx.x;
  partial[t] = x[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) partial[t] += partial[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// Warp sums by shuffles, then a block-wide count of positive inputs.
__global__ void warp_sum(const float* x, float* out, int* positives) {  // out: one per warp
  const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float own = x[i];
  float v = own;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) out[i / 32] = v;
  const int count = __syncthreads_count(own > 0.0f);
  if (threadIdx.x == 0) positives[blockIdx.x] = count;
}

// Thread 0 skips the barrier: the emulator raises, and the fibers waiting
// at the barrier are abandoned mid-run.
__global__ void divergent(float* out) {
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// A misaligned float4 load throws from inside the kernel: on the loop fiber
// (no barrier first) or on a thread's own fiber (after one).
__global__ void misaligned_load(const float* x, float* out, int barrier_first) {
  if (barrier_first) __syncthreads();
  const float4 v = dc::vload<float4>(x + 1 + 4 * threadIdx.x);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

constexpr int kBlocks = 8, kThreads = 256;

dc::LaunchConfig config(int blocks, int threads) {
  return dc::LaunchConfig{dim3(blocks), dim3(threads), 0, nullptr};
}

void check_block_sum(const std::vector<float>& x, const char* what) {
  std::vector<float> sums(kBlocks);
  dc::launch(block_sum, "block_sum", config(kBlocks, kThreads), x.data(), sums.data());
  for (int b = 0; b < kBlocks; ++b) {
    double want = 0;  // small integers: every order of summation is exact
    for (int t = 0; t < kThreads; ++t) want += x[b * kThreads + t];
    expect(sums[b] == float(want), what);
  }
}

void check_warp_sum(const std::vector<float>& x) {
  std::vector<float> warps(kBlocks * kThreads / 32);
  std::vector<int> positives(kBlocks);
  dc::launch(warp_sum, "warp_sum", config(kBlocks, kThreads), x.data(), warps.data(),
             positives.data());
  for (std::size_t w = 0; w < warps.size(); ++w) {
    double want = 0;
    for (int l = 0; l < 32; ++l) want += x[w * 32 + l];
    expect(warps[w] == float(want), "warp_sum");
  }
  for (int b = 0; b < kBlocks; ++b) {
    int want = 0;
    for (int t = 0; t < kThreads; ++t) want += x[b * kThreads + t] > 0.0f;
    expect(positives[b] == want, "__syncthreads_count");
  }
}

template <typename Launch>
void expect_raises(Launch launch, const char* what) {
  bool raised = false;
  try {
    launch();
  } catch (const dc::emu::Error&) {
    raised = true;
  }
  expect(raised, what);
}

void check_kernels() {
  std::vector<float> x(kBlocks * kThreads);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 7) - 2.0f;
  std::vector<float> out(kThreads);

  for (int round = 0; round < 2; ++round) check_block_sum(x, "block_sum");
  check_warp_sum(x);
  for (int round = 0; round < 2; ++round) {
    expect_raises([&] { dc::launch(divergent, "divergent", config(1, 64), out.data()); },
                  "barrier divergence raises");
    for (int barrier_first : {0, 1}) {
      expect_raises([&] {
        dc::launch(misaligned_load, "misaligned_load", config(2, 64), x.data(), out.data(),
                   barrier_first);
      }, "misaligned float4 load raises");
    }
  }
  // The fibers abandoned above run again, in race-check order too.
  check_block_sum(x, "block_sum after failed launches");
  dc::emu::set_race_check(true, 7);
  check_block_sum(x, "block_sum after failed launches, race check");
  dc::emu::set_race_check(false, 0);
  check_warp_sum(x);
}

}  // namespace

int main() {
  check_stack_reuse(/*abandon=*/false);
  check_stack_reuse(/*abandon=*/true);
  for (int threads : {1, 2}) {  // one worker, then blocks spread over two
    dc::emu::set_num_threads(threads);
    check_kernels();
  }
  if (failures) return 1;
  std::printf("emu_asan: ok (%s switch)\n", dc::emu::Fiber::switch_kind());
  return 0;
}
