// Dropout (Hinton et al. 2012; Krizhevsky et al. 2012), forward and
// backward, with a counter-based generator.
//
//   y[i] = x[i] * m[i]      x, y: (n,) any layout, flat and contiguous
//   m[i] = keep(i) ? keep_scale : 0    (masked launch: training)
//   m[i] = keep_scale                  (unmasked launch: evaluation)
//
// The backward pass is the same kernel on the gradient, with the same
// (seed, step): dx = dy * m. The mask is never stored; it is regenerated.
// The output is written with `=`; x == y is allowed (each element is read
// and then written by one thread).
//
// Random numbers: element i takes 32-bit word (i % 4) of
//   Philox4x32-10(counter = (g_lo, g_hi, step_lo, step_hi), key = (seed_lo, seed_hi))
// with g = i / 4 (kernels/philox.cuh). keep(i) is word >= threshold, the
// threshold fixed by the host from p (ops/dropout.h), so the decision uses
// no floating point. The word depends only on (seed, step, i): the mask is
// the same on every GPU and on the emulator, and for every grid and block
// size. A new step (iteration) gives an unrelated mask.
//
// Multiplying (rather than selecting 0) keeps NaN and inf visible: a dropped
// NaN gives NaN (NaN * 0), as in PyTorch and Caffe, so a diverging network
// is not hidden by the mask.
//
// Each thread handles kGroups consecutive groups of 4 elements (one Philox
// call per group) per grid-stride step: 1 under nvcc, more on the emulator,
// where per-thread overhead dominates (the launcher chooses). Indices are
// 64-bit.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "kernels/philox.cuh"
#include "ops/dropout.h"

namespace dc {

__device__ __forceinline__ PhiloxKey dropout_key(std::uint64_t seed) {
  PhiloxKey k;
  k.v[0] = std::uint32_t(seed);
  k.v[1] = std::uint32_t(seed >> 32);
  return k;
}

__device__ __forceinline__ PhiloxCounter dropout_counter(std::uint64_t group, std::uint64_t step) {
  PhiloxCounter c;
  c.v[0] = std::uint32_t(group);
  c.v[1] = std::uint32_t(group >> 32);
  c.v[2] = std::uint32_t(step);
  c.v[3] = std::uint32_t(step >> 32);
  return c;
}

template <typename T, int kGroups>
__global__ void dropout_kernel(const T* x,  // (n,)
                               T* y,        // (n,) may alias x
                               std::int64_t n, const ops::DropoutParams<T> params) {
  const std::int64_t groups = (n + 3) / 4;
  const std::int64_t chunks = (groups + kGroups - 1) / kGroups;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  const PhiloxKey key = dropout_key(params.seed);
  const T zero = T(0);
  for (std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    for (int k = 0; k < kGroups; ++k) {
      const std::int64_t g = c * kGroups + k;
      if (g >= groups) break;
      std::uint32_t words[4] = {0u, 0u, 0u, 0u};
      if (params.masked) {
        const PhiloxCounter r =
            philox4x32(dropout_counter(std::uint64_t(g), params.step), key);
        for (int w = 0; w < 4; ++w) words[w] = r.v[w];
      }
      for (int w = 0; w < 4; ++w) {
        const std::int64_t i = 4 * g + w;
        if (i >= n) break;
        const bool keep = !params.masked || words[w] >= params.threshold;
        y[i] = x[i] * (keep ? params.keep_scale : zero);
      }
    }
  }
}

}  // namespace dc
