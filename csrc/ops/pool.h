// Launchers of kernels/pool.cuh (defined in ops/pool.cu).
//
// Plain C++ (no CUDA or emulator header), so the pybind11 bindings can
// include it. Pointers are device pointers under CUDA and host pointers under
// the emulator. deepconv.ops validates shapes, dtypes and devices and computes
// the output size (P, Q) before calling; the launchers only refuse problems
// that would make a kernel read out of bounds. Instantiated for float and
// double.
#pragma once

#include <cstdint>
#include <string>

#include "common/stream.h"

namespace dc::ops {

// One 2-D pooling problem: input (N, C, H, W), output (N, C, P, Q), window
// R x S, NCHW contiguous. Padding counts as -inf (never the maximum).
struct PoolParams {
  std::int64_t N = 0, C = 0, H = 0, W = 0;  // input
  std::int64_t P = 0, Q = 0;                // output height, width
  int R = 1, S = 1;                         // window height, width
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
};

// Why the kernels cannot run `params` (empty when they can): non-positive
// window or stride, negative sizes or padding, padding above half the window,
// or an output window holding no input element (so it would read out of
// bounds).
std::string pool_can_implement(const PoolParams& params);

// y = max over each window (first maximum in row-major window order; a window
// holding NaN gives NaN). x: (N, C, H, W), y: (N, C, P, Q); x and y disjoint.
template <typename T>
void max_pool2d_fprop(const T* x, T* y, const PoolParams& params, Stream s);

// dx = for each input element, the sum of dy over the windows whose arg-max
// it is (0 elsewhere). x: the forward input, y: the forward output
// max_pool2d_fprop(x), dy: like y, dx: like x; dx disjoint from x, y and dy.
template <typename T>
void max_pool2d_bprop(const T* x, const T* y, const T* dy, T* dx, const PoolParams& params,
                      Stream s);

}  // namespace dc::ops
