// Launchers of kernels/lrn.cuh (defined in ops/lrn.cu).
//
// Plain C++ (no CUDA or emulator header), so the pybind11 bindings can
// include it. Pointers are device pointers under CUDA and host pointers under
// the emulator. deepconv.ops validates shapes, dtypes, devices and the
// hyperparameters before calling. Instantiated for float and double.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// One local-response-normalisation problem across channels, NCHW contiguous:
//   s_c = k + alpha * sum_{c' = max(0, c - size/2)}^{min(C - 1, c + size/2)} x_{c'}^2
//   y_c = x_c * s_c^(-beta)
// `alpha` is the coefficient of the sum as the kernel applies it: the paper's
// alpha, or Caffe's / PyTorch's alpha divided by size (deepconv.ops.lrn maps
// its alpha_convention argument onto this).
struct LrnParams {
  std::int64_t N = 0, C = 0, H = 0, W = 0;
  int size = 5;  // odd, >= 1
  double alpha = 1e-4;
  double beta = 0.75;
  double k = 2.0;
};

// y = x * s^-beta. x, y: (N, C, H, W), disjoint.
template <typename T>
void lrn_fprop(const T* x, T* y, const LrnParams& params, Stream s);

// dx_c = dy_c * s_c^-beta - 2 * alpha * beta * x_c * sum_{c' window of c} dy_{c'} y_{c'} / s_{c'}.
// x: the forward input, y: the forward output lrn_fprop(x), dy: like x; dx
// like x and disjoint from x, y and dy.
template <typename T>
void lrn_bprop(const T* x, const T* y, const T* dy, T* dx, const LrnParams& params, Stream s);

}  // namespace dc::ops
