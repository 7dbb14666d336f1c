// Launchers for kernels/relu.cuh.
#include <cstdint>
#include <stdexcept>

#include "common/launch.cuh"
#include "kernels/relu.cuh"
#include "ops/relu.h"

namespace dc::ops {
namespace {

constexpr int kReluThreadsPerBlock = 256;
// Grid-stride loops need no more than a few waves of blocks: 4096 blocks of
// 256 threads is ~4 full waves on an H100 (132 SMs x 8 resident blocks).
constexpr std::int64_t kReluMaxBlocks = 4096;

// float4s per thread per step of the vector kernels. On a GPU one: a warp's
// 16-byte accesses then cover 512 contiguous bytes, fully coalesced. On the
// emulator, where a thread's cost is mostly the scheduler's per-thread
// overhead, a thread takes 32 consecutive float4s (512 bytes) instead, a
// straight-line loop that g++ compiles to packed loads, selects and stores
// (4x the throughput of one float4 per thread; 32 beat 8 and 16 by 20-40%,
// measured with benchmarks/emulator.py on a 2-core EPYC).
#if DC_GPU_CONFIG
constexpr int kReluVecsPerThread = 1;
#else
constexpr int kReluVecsPerThread = 32;
#endif
static_assert(4 * kReluVecsPerThread < kReluThreadsPerBlock,
              "the vector kernels' tail needs 4 * kVecs threads");

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

void check_size(std::int64_t n) {
  if (n < 0) throw std::invalid_argument("relu: n must be >= 0");
}

LaunchConfig relu_config(std::int64_t work_items, Stream s) {
  return LaunchConfig{dim3(blocks_for(work_items, kReluThreadsPerBlock, kReluMaxBlocks)),
                      dim3(kReluThreadsPerBlock), 0, s};
}

}  // namespace

template <typename T>
void relu_fprop(const T* x, T* y, std::int64_t n, Stream s) {
  check_size(n);
  if (n == 0) return;
  launch(relu_fprop_kernel<T>, "relu_fprop", relu_config(n, s), x, y, n);
}

template <>
void relu_fprop<float>(const float* x, float* y, std::int64_t n, Stream s) {
  check_size(n);
  if (n == 0) return;
  if (aligned16(x) && aligned16(y)) {
    launch(relu_fprop_vec4_kernel<kReluVecsPerThread>, "relu_fprop",
           relu_config(n / (4 * kReluVecsPerThread), s), x, y, n);
  } else {
    launch(relu_fprop_kernel<float>, "relu_fprop", relu_config(n, s), x, y, n);
  }
}

template <typename T>
void relu_bprop(const T* y, const T* dy, T* dx, std::int64_t n, Stream s) {
  check_size(n);
  if (n == 0) return;
  launch(relu_bprop_kernel<T>, "relu_bprop", relu_config(n, s), y, dy, dx, n);
}

template <>
void relu_bprop<float>(const float* y, const float* dy, float* dx, std::int64_t n, Stream s) {
  check_size(n);
  if (n == 0) return;
  if (aligned16(y) && aligned16(dy) && aligned16(dx)) {
    launch(relu_bprop_vec4_kernel<kReluVecsPerThread>, "relu_bprop",
           relu_config(n / (4 * kReluVecsPerThread), s), y, dy, dx, n);
  } else {
    launch(relu_bprop_kernel<float>, "relu_bprop", relu_config(n, s), y, dy, dx, n);
  }
}

template void relu_fprop<double>(const double*, double*, std::int64_t, Stream);
template void relu_bprop<double>(const double*, const double*, double*, std::int64_t, Stream);

}  // namespace dc::ops
