// conv fprop v1: direct convolution, one thread per output element, operands
// straight from global memory (no shared memory, no register tiling). The
// baseline every later version must beat, and an independent check of them.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "kernels/conv_params.cuh"

namespace lab {

template <typename T>
__global__ void conv_fprop_direct_kernel(dc::ConvParams p, const T* x, const T* w, T* y) {
  const std::int64_t total = std::int64_t(p.N) * p.K * p.P * p.Q;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int q = int(i % p.Q), pp = int(i / p.Q % p.P), k = int(i / p.output_plane() % p.K);
    const int n = int(i / (std::int64_t(p.K) * p.output_plane()));
    const int cg = p.C / p.groups, group = k / (p.K / p.groups);
    T acc = 0;
    for (int c = 0; c < cg; ++c) {
      for (int r = 0; r < p.R; ++r) {
        const int h = pp * p.stride_h - p.pad_h + r;
        if (h < 0 || h >= p.H) continue;
        for (int s = 0; s < p.S; ++s) {
          const int wi = q * p.stride_w - p.pad_w + s;
          if (wi < 0 || wi >= p.W) continue;
          acc += x[((std::int64_t(n) * p.C + group * cg + c) * p.H + h) * p.W + wi] *
                 w[((std::int64_t(k) * cg + c) * p.R + r) * p.S + s];
        }
      }
    }
    y[i] = acc;
  }
}

template <typename T>
void conv_fprop_direct(const dc::ConvParams& p, const T* x, const T* w, T* y) {
  dc::LaunchConfig cfg{dim3(dc::blocks_for(std::int64_t(p.N) * p.K * p.P * p.Q, 256, 4096)),
                       dim3(256), 0, nullptr};
  dc::launch(conv_fprop_direct_kernel<T>, "conv_fprop_direct", cfg, p, x, w, y);
}

}  // namespace lab
