// Launchers for kernels/pool.cuh.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/pool.cuh"
#include "ops/pool.h"

namespace dc::ops {
namespace {

constexpr int kPoolThreadsPerBlock = 256;
// Grid-stride loops: a few waves of blocks are enough (as for ReLU).
constexpr std::int64_t kPoolMaxBlocks = 4096;

// Elements of a row one thread takes (kernels/pool.cuh, PoolRowRun): one on
// a GPU, so warps coalesce; the whole row on the emulator, where the
// per-thread cost (the scheduler's call, 64-bit index divisions) was most of
// these kernels' time. With the branch-free running max and the per-window
// backward, vgg_small's pool1 (16, 32, 32, 32) went from 2.6 to 0.7 ms
// forward and from 7.6 to 1.3 ms backward (2-core EPYC, old and new builds
// alternated, medians of 15).
int pool_run(std::int64_t row_length) {
#if DC_GPU_CONFIG
  (void)row_length;
  return 1;
#else
  return static_cast<int>(row_length < (1 << 30) ? row_length : (1 << 30));
#endif
}

// Whether no input element lies in two windows (each dimension: stride >=
// window, or a single window), so the backward can scatter per window.
bool windows_disjoint(const PoolParams& pp) {
  return (pp.stride_h >= pp.R || pp.P == 1) && (pp.stride_w >= pp.S || pp.Q == 1);
}

// One dimension: window `extent`, `stride`, `pad`, input `size`, output
// `out`. Every output window must hold at least one input element, or the
// kernels would read outside x.
std::string check_dimension(const char* name, std::int64_t size, std::int64_t out, int extent,
                            int stride, int pad) {
  const std::string n(name);
  if (extent < 1) return n + ": window must be >= 1";
  if (stride < 1) return n + ": stride must be >= 1";
  if (pad < 0) return n + ": padding must be >= 0";
  if (2 * std::int64_t(pad) > extent) return n + ": padding must be at most half the window";
  if (size < 1) return n + ": input size must be >= 1";
  if (out < 1) return n + ": output size must be >= 1";
  if ((out - 1) * stride - pad >= size) return n + ": the last window starts past the input";
  return "";
}

void check(const PoolParams& pp) {
  const std::string why = pool_can_implement(pp);
  if (!why.empty()) throw std::invalid_argument("max_pool2d: " + why);
}

LaunchConfig pool_config(std::int64_t work_items, Stream s) {
  return LaunchConfig{dim3(blocks_for(work_items, kPoolThreadsPerBlock, kPoolMaxBlocks)),
                      dim3(kPoolThreadsPerBlock), 0, s};
}

}  // namespace

std::string pool_can_implement(const PoolParams& pp) {
  if (pp.N < 0 || pp.C < 0) return "N and C must be >= 0";
  std::string why = check_dimension("height", pp.H, pp.P, pp.R, pp.stride_h, pp.pad_h);
  if (why.empty()) why = check_dimension("width", pp.W, pp.Q, pp.S, pp.stride_w, pp.pad_w);
  return why;
}

template <typename T>
void max_pool2d_fprop(const T* x, T* y, const PoolParams& pp, Stream s) {
  check(pp);
  const std::int64_t outputs = pp.N * pp.C * pp.P * pp.Q;
  if (outputs == 0) return;
  const int run = pool_run(pp.Q);
  const std::int64_t items = pool_run_items(pp.N * pp.C, pp.P, pp.Q, run);
  launch(max_pool2d_fprop_kernel<T>, "max_pool2d_fprop", pool_config(items, s), x, y, pp, run);
}

template <typename T>
void max_pool2d_bprop(const T* x, const T* y, const T* dy, T* dx, const PoolParams& pp,
                      Stream s) {
  check(pp);
  const std::int64_t inputs = pp.N * pp.C * pp.H * pp.W;
  if (inputs == 0) return;
  if (windows_disjoint(pp)) {
    const int run = pool_run(pp.Q);
    const std::int64_t items = pool_run_items(pp.N * pp.C, pp.P, pp.Q, run);
    launch(max_pool2d_bprop_scatter_kernel<T>, "max_pool2d_bprop", pool_config(items, s), x, y,
           dy, dx, pp, run);
    return;
  }
  const int run = pool_run(pp.W);
  const std::int64_t items = pool_run_items(pp.N * pp.C, pp.H, pp.W, run);
  launch(max_pool2d_bprop_kernel<T>, "max_pool2d_bprop", pool_config(items, s), x, y, dy, dx, pp,
         run);
}

template void max_pool2d_fprop<float>(const float*, float*, const PoolParams&, Stream);
template void max_pool2d_fprop<double>(const double*, double*, const PoolParams&, Stream);
template void max_pool2d_bprop<float>(const float*, const float*, const float*, float*,
                                      const PoolParams&, Stream);
template void max_pool2d_bprop<double>(const double*, const double*, const double*, double*,
                                       const PoolParams&, Stream);

}  // namespace dc::ops
