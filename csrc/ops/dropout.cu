// Launchers for kernels/dropout.cuh and kernels/philox.cuh.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/dropout.cuh"
#include "kernels/philox.cuh"
#include "ops/dropout.h"

namespace dc::ops {
namespace {

constexpr int kDropoutThreadsPerBlock = 256;
// A grid-stride loop needs only a few waves (as in ops/relu.cu).
constexpr std::int64_t kDropoutMaxBlocks = 4096;

// Groups of 4 elements (one Philox call) per thread per grid-stride step. On
// a GPU one, so that a warp's accesses stay close together; on the emulator
// 16 (64 elements), to spread the scheduler's per-thread cost over more work.
// The mask does not depend on this choice (the tests check it by launching
// with other block sizes).
#if DC_GPU_CONFIG
constexpr int kDropoutGroupsPerThread = 1;
#else
constexpr int kDropoutGroupsPerThread = 16;
#endif

void check_threads(int threads) {
  if (threads < 32 || threads > 1024 || threads % 32 != 0) {
    throw std::invalid_argument("dropout: threads_per_block must be a multiple of 32 in [32, 1024], got " +
                                std::to_string(threads));
  }
}

}  // namespace

std::uint32_t dropout_threshold(double p) {
  if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument("dropout: p must be in [0, 1)");
  const double scaled = std::nearbyint(p * 4294967296.0);  // 2^32
  if (scaled >= 4294967295.0) return 0xFFFFFFFFu;
  return static_cast<std::uint32_t>(scaled);
}

template <typename T>
void dropout_apply(const T* x, T* y, std::int64_t n, const DropoutParams<T>& params,
                   int threads_per_block, Stream s) {
  if (n < 0) throw std::invalid_argument("dropout: n must be >= 0");
  const int threads = threads_per_block == 0 ? kDropoutThreadsPerBlock : threads_per_block;
  check_threads(threads);
  if (n == 0) return;
  const std::int64_t chunks = ((n + 3) / 4 + kDropoutGroupsPerThread - 1) / kDropoutGroupsPerThread;
  LaunchConfig cfg{dim3(blocks_for(chunks, threads, kDropoutMaxBlocks)), dim3(threads), 0, s};
  launch(dropout_kernel<T, kDropoutGroupsPerThread>, "dropout", cfg, x, y, n, params);
}

void philox4x32_10(const std::uint32_t* counters, const std::uint32_t* keys, std::uint32_t* out,
                   std::int64_t n, Stream s) {
  if (n < 0) throw std::invalid_argument("philox4x32_10: n must be >= 0");
  if (n == 0) return;
  LaunchConfig cfg{dim3(blocks_for(n, 128, kDropoutMaxBlocks)), dim3(128), 0, s};
  launch(philox4x32_kernel<kPhiloxRounds>, "philox4x32_10", cfg, counters, keys, out, n);
}

template void dropout_apply<float>(const float*, float*, std::int64_t, const DropoutParams<float>&,
                                   int, Stream);
template void dropout_apply<double>(const double*, double*, std::int64_t,
                                    const DropoutParams<double>&, int, Stream);

}  // namespace dc::ops
