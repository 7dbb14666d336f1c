// Local response normalisation across channels (Krizhevsky et al. 2012,
// section 3.3), forward and backward.
//
//   x, y, dy, dx: (N, C, H, W), NCHW contiguous. Both passes write their
//   output with `=`, never `+=`; outputs may not alias inputs (each thread
//   reads its neighbours' channels).
//
// Forward, with the window W(c) = [max(0, c - n/2), min(C - 1, c + n/2)]
// (n = size, odd; integer n/2; clipped at the first and last channel, so n >
// C simply covers every channel):
//
//   s_c = k + alpha_eff * sum_{j in W(c)} x_j^2        (the "scale")
//   y_c = x_c * s_c^(-beta)
//
// alpha conventions. The paper writes alpha_eff = alpha. Caffe (LRN layer,
// ACROSS_CHANNELS: local_size, alpha, beta, k), cuda-convnet and PyTorch
// (F.local_response_norm(x, size, alpha, beta, k), which averages x^2 over
// the window) all use alpha_eff = alpha / n. The kernels take alpha_eff; the
// Python op deepconv.ops.lrn(alpha_convention="paper" | "per_size") does the
// mapping:
//   paper:    lrn(size=n, alpha=a, beta=b, k=k)  ->  alpha_eff = a
//   per_size: lrn(size=n, alpha=a, beta=b, k=k)  ->  alpha_eff = a / n
//             == Caffe LRN(local_size=n, alpha=a, beta=b, k=k)
//             == torch local_response_norm(x, size=n, alpha=a, beta=b, k=k)
// AlexNet: n = 5, alpha = 1e-4, beta = 0.75, k = 2 under the paper's
// convention (Caffe's model zoo AlexNet writes alpha = 1e-4 per_size, which
// is 5x weaker).
//
// Backward. Let g = dy. With s_c depending on x_j for j in W(c):
//   d y_{c'} / d x_c = [c' == c] s_c^(-beta)
//                      - beta * x_{c'} * s_{c'}^(-beta - 1) * 2 alpha_eff x_c * [c in W(c')]
// so
//   dx_c = sum_{c'} g_{c'} d y_{c'} / d x_c
//        = g_c s_c^(-beta) - 2 alpha_eff beta x_c * sum_{c' : c in W(c')} g_{c'} y_{c'} / s_{c'}
// using y_{c'} = x_{c'} s_{c'}^(-beta). The window is symmetric (|c - c'| <=
// n/2, both clipped to [0, C)), so {c' : c in W(c')} = W(c): the second sum
// runs over the same channels as the forward one.
//
// Layout: one thread per element (n, c, h, w), grid-stride, 64-bit indices
// (a VGG-sized batch passes 2^31 elements). Consecutive threads take
// consecutive w, so every channel read of a warp is one contiguous row.
// Sums are direct, in ascending channel order, every multiply-add an explicit
// fma: deterministic, bitwise identical across runs, and NaN/Inf reach only
// the outputs whose windows hold them (a sliding sum would carry a NaN, or
// the cancellation of a huge value, down every later channel). bprop
// recomputes each s_{c'} of the window from x rather than storing the scale
// in fprop: n^2 multiply-adds per element (25 for AlexNet), all reads that
// neighbouring threads share through the caches, against an extra
// (N, C, H, W) buffer kept between the passes.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "ops/lrn.h"

namespace dc {

__device__ __forceinline__ float lrn_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double lrn_fma(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float lrn_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double lrn_pow(double a, double b) { return pow(a, b); }

// Where element i of an (N, C, H, W) array sits: its channel c, and the
// offset of channel 0 at the same (n, h, w); channel j is at base + j * hw.
struct LrnPosition {
  std::int64_t base;
  std::int64_t c;
};

__device__ __forceinline__ LrnPosition lrn_position(std::int64_t i, std::int64_t C,
                                                    std::int64_t hw) {
  const std::int64_t pixel = i % hw;
  const std::int64_t nc = i / hw;
  const std::int64_t c = nc % C;
  return LrnPosition{(nc - c) * hw + pixel, c};
}

// s_c = k + alpha * sum of x_j^2 over the channel window [j0, j1].
template <typename T>
__device__ __forceinline__ T lrn_scale(const T* x, std::int64_t base, std::int64_t hw,
                                       std::int64_t j0, std::int64_t j1, T alpha, T k) {
  T sum = T(0);
  for (std::int64_t j = j0; j <= j1; ++j) {
    const T a = x[base + j * hw];
    sum = lrn_fma(a, a, sum);
  }
  return lrn_fma(alpha, sum, k);
}

template <typename T>
__global__ void lrn_fprop_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                 T* __restrict__ y,        // (N, C, H, W)
                                 const ops::LrnParams lp) {
  const T alpha = T(lp.alpha);
  const T minus_beta = T(-lp.beta);
  const T k = T(lp.k);
  const std::int64_t hw = lp.H * lp.W;
  const std::int64_t half = lp.size / 2;
  const std::int64_t total = lp.N * lp.C * hw;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const LrnPosition at = lrn_position(i, lp.C, hw);
    const std::int64_t j0 = at.c - half < 0 ? 0 : at.c - half;
    const std::int64_t j1 = at.c + half < lp.C - 1 ? at.c + half : lp.C - 1;
    const T s = lrn_scale(x, at.base, hw, j0, j1, alpha, k);
    y[i] = x[i] * lrn_pow(s, minus_beta);
  }
}

template <typename T>
__global__ void lrn_bprop_kernel(const T* __restrict__ x,   // (N, C, H, W) fprop input
                                 const T* __restrict__ y,   // (N, C, H, W) fprop output
                                 const T* __restrict__ dy,  // (N, C, H, W)
                                 T* __restrict__ dx,        // (N, C, H, W)
                                 const ops::LrnParams lp) {
  const T alpha = T(lp.alpha);
  const T minus_beta = T(-lp.beta);
  const T k = T(lp.k);
  const T two_alpha_beta = T(2 * lp.alpha * lp.beta);
  const std::int64_t hw = lp.H * lp.W;
  const std::int64_t half = lp.size / 2;
  const std::int64_t last = lp.C - 1;
  const std::int64_t total = lp.N * lp.C * hw;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const LrnPosition at = lrn_position(i, lp.C, hw);
    const std::int64_t j0 = at.c - half < 0 ? 0 : at.c - half;
    const std::int64_t j1 = at.c + half < last ? at.c + half : last;
    T s_c = T(1);  // set when j reaches c, which every window holds
    T cross = T(0);  // sum over c' in W(c) of dy_{c'} y_{c'} / s_{c'}
    for (std::int64_t j = j0; j <= j1; ++j) {
      const T s_j = lrn_scale(x, at.base, hw, j - half < 0 ? 0 : j - half,
                              j + half < last ? j + half : last, alpha, k);
      if (j == at.c) s_c = s_j;
      const std::int64_t o = at.base + j * hw;
      cross += dy[o] * y[o] / s_j;
    }
    dx[i] = lrn_fma(-two_alpha_beta * x[i], cross, dy[i] * lrn_pow(s_c, minus_beta));
  }
}

}  // namespace dc
