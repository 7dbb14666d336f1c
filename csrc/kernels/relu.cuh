// ReLU, forward and backward.
//
//   fprop:  y[i]  = x[i] < 0 ? 0 : x[i]        x: (n,)  y: (n,)
//   bprop:  dx[i] = y[i] > 0 ? dy[i] : 0       y: (n,) the forward *output*, dy/dx: (n,)
//
// Elementwise over a flat, contiguous buffer, so any layout (NCHW included)
// is just n elements. Both passes write their output with `=`, never `+=`.
//
// In place is allowed (x == y in fprop, dy == dx in bprop): each element is
// read before it is written by the same thread, and no thread touches another
// thread's element, so the pointers carry no __restrict__.
//
// fprop spells the comparison as `x < 0 ? 0 : x` rather than fmaxf(x, 0):
// fmaxf returns 0 for a NaN input, this returns the NaN, so a diverging
// network shows NaN losses instead of silently training on zeros. -0.0 passes
// through as -0.0.
//
// bprop keys on the forward output y rather than the input x (y > 0 exactly
// where x > 0), so a layer can run fprop in place and keep only y. At the kink
// (x == 0) the gradient is 0, as in Caffe and PyTorch.
//
// Two kernels per pass:
//   *_kernel       scalar grid-stride loop, any T, any alignment;
//   *_vec4_kernel  float only: 16-byte float4 loads/stores through
//                  dc::vload/dc::vstore, for when every pointer is 16-byte
//                  aligned (the launcher checks). Each thread handles kVecs
//                  consecutive float4s per grid-stride step (1 under nvcc, so
//                  a warp's accesses coalesce; 32 on the emulator, where
//                  per-thread overhead dominates: see ops/relu.cu). The
//                  < 4 * kVecs elements after the last whole chunk are done,
//                  one each, by the grid's first threads after the loop, so
//                  one launch covers everything.
// Indices are 64-bit: a VGG activation batch passes 2^31 elements.
// The per-thread body is straight-line selects over a small fixed-size
// array, which g++ turns into packed compares/blends for the emulator.
#pragma once

#include <cstdint>

#include "common/portable.cuh"

namespace dc {

template <typename T>
__device__ __forceinline__ T relu_forward_value(T x) {
  return x < T(0) ? T(0) : x;
}

template <typename T>
__device__ __forceinline__ T relu_backward_value(T y, T dy) {
  return y > T(0) ? dy : T(0);
}

template <typename T>
__global__ void relu_fprop_kernel(const T* x,  // (n,)
                                  T* y,        // (n,) may alias x
                                  std::int64_t n) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    y[i] = relu_forward_value(x[i]);
  }
}

template <typename T>
__global__ void relu_bprop_kernel(const T* y,   // (n,) forward output
                                  const T* dy,  // (n,)
                                  T* dx,        // (n,) may alias dy
                                  std::int64_t n) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dx[i] = relu_backward_value(y[i], dy[i]);
  }
}

// x, y: 16-byte aligned. Each thread takes chunks of kVecs consecutive
// float4s (4 * kVecs floats); the < 4 * kVecs floats after the last whole
// chunk go one each to the grid's first threads (the launcher's grid always
// has more than 4 * kVecs threads).
template <int kVecs>
__global__ void relu_fprop_vec4_kernel(const float* x,  // (n,)
                                       float* y,        // (n,) may alias x
                                       std::int64_t n) {
  constexpr std::int64_t kChunk = 4 * kVecs;
  const std::int64_t chunks = n / kChunk;
  const std::int64_t first = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t c = first; c < chunks; c += stride) {
    float4 v[kVecs];
    for (int k = 0; k < kVecs; ++k) v[k] = dc::vload<float4>(x + kChunk * c + 4 * k);
    for (int k = 0; k < kVecs; ++k) {
      v[k].x = relu_forward_value(v[k].x);
      v[k].y = relu_forward_value(v[k].y);
      v[k].z = relu_forward_value(v[k].z);
      v[k].w = relu_forward_value(v[k].w);
    }
    for (int k = 0; k < kVecs; ++k) dc::vstore(y + kChunk * c + 4 * k, v[k]);
  }
  const std::int64_t tail = kChunk * chunks + first;
  if (tail < n) y[tail] = relu_forward_value(x[tail]);
}

// y, dy, dx: 16-byte aligned; chunks and tail as in relu_fprop_vec4_kernel.
template <int kVecs>
__global__ void relu_bprop_vec4_kernel(const float* y,   // (n,) forward output
                                       const float* dy,  // (n,)
                                       float* dx,        // (n,) may alias dy
                                       std::int64_t n) {
  constexpr std::int64_t kChunk = 4 * kVecs;
  const std::int64_t chunks = n / kChunk;
  const std::int64_t first = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t c = first; c < chunks; c += stride) {
    float4 yv[kVecs];
    float4 g[kVecs];
    for (int k = 0; k < kVecs; ++k) {
      yv[k] = dc::vload<float4>(y + kChunk * c + 4 * k);
      g[k] = dc::vload<float4>(dy + kChunk * c + 4 * k);
    }
    for (int k = 0; k < kVecs; ++k) {
      g[k].x = relu_backward_value(yv[k].x, g[k].x);
      g[k].y = relu_backward_value(yv[k].y, g[k].y);
      g[k].z = relu_backward_value(yv[k].z, g[k].z);
      g[k].w = relu_backward_value(yv[k].w, g[k].w);
    }
    for (int k = 0; k < kVecs; ++k) dc::vstore(dx + kChunk * c + 4 * k, g[k]);
  }
  const std::int64_t tail = kChunk * chunks + first;
  if (tail < n) dx[tail] = relu_backward_value(y[tail], dy[tail]);
}

}  // namespace dc
