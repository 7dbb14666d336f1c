// Max pooling over 2-D windows, forward and backward.
//
//   fprop:  y[n,c,p,q]  = max over the window of (p, q) of x[n,c,:,:]
//   bprop:  dx[n,c,h,w] = sum of dy[n,c,p,q] over the windows (p, q) whose
//                         arg-max is (h, w)
//
//   x, dx: (N, C, H, W)   y, dy: (N, C, P, Q)   window R x S, NCHW contiguous.
//
// Both passes write their output with `=`, never `+=`; every output element
// is written (dx is 0 where no window chose the element).
//
// Windows. Window (p, q) covers rows  p*stride_h - pad_h ... + R - 1  and
// columns  q*stride_w - pad_w ... + S - 1  of the input; positions outside
// the input are padding and count as -inf, so they are never chosen: the
// kernels simply clip the window to the input. Output size, per dimension
// (H shown; W alike):
//
//   floor mode:  P = floor((H + 2*pad_h - R) / stride_h) + 1
//   ceil mode:   P = ceil((H + 2*pad_h - R) / stride_h) + 1, then P -= 1 if
//                (P - 1) * stride_h >= H + pad_h, i.e. the last window must
//                start inside the input or the left padding (Caffe's ceil
//                rounding with PyTorch's correction; plain Caffe could emit a
//                window made only of right padding).
//
// With pad <= R/2 (checked by the launcher, as PyTorch does) every window of
// either mode holds at least one input element, so the clipped window is
// never empty and y is always a value taken from x.
//
// Tie rule, shared by both passes: the arg-max of a window is the FIRST
// maximum in row-major window order (rows top to bottom, each row left to
// right). NaN: a window holding NaN has the first NaN as its arg-max and
// outputs that NaN (`v > best` alone would skip NaN: every comparison with
// NaN is false). -0.0 and +0.0 compare equal, so the first of them wins.
// PyTorch's CPU kernel picks the first maximum too (strict `>`), and the
// last NaN rather than the first.
//
// Backward is a GATHER, not a scatter: one thread per input element visits
// the windows that contain it, in order (p ascending, then q ascending), and
// adds dy for each window that chose it. No atomics; overlapping windows
// (AlexNet's 3x3 stride 2) still sum in a fixed order, so dx is bitwise
// identical across runs.
//
// Arg-max without stored indices: bprop recomputes it from x and y, where y
// must be fprop's output for this x. Element (h, w) is the arg-max of window
// (p, q) iff x[h, w] "equals" y[p, q] (==, or both NaN) and no earlier
// element of the window in row-major order does. y is a copy of one x
// element, so these comparisons are exact, and they reproduce fprop's rule:
// the elements equal to the maximum are exactly the maxima. The cheap test
// (x == y) rejects almost every window at once; only a candidate scans the
// part of its window that precedes it. Storing indices instead would cost an
// extra (N, C, P, Q) int buffer, kept by the layer across fprop and bprop,
// for a saving only in bprop; recomputing keeps the API at (x, y, dy).
//
// Indices are 64-bit: N*C*H*W passes 2^31 for a VGG activation batch.
// Both kernels are barrier-free grid-stride loops, one thread per output
// (fprop) or per input (bprop) element; consecutive threads take consecutive
// w (or q), so warps read and write contiguous rows.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "ops/pool.h"

namespace dc {

// Whether v replaces best as the window's running maximum: greater, or the
// first NaN (once best is NaN nothing replaces it).
template <typename T>
__device__ __forceinline__ bool pool_replaces(T v, T best) {
  return v > best || (v != v && best == best);
}

// Whether v is a maximum of a window whose maximum is m (as fprop left it).
template <typename T>
__device__ __forceinline__ bool pool_is_maximum(T v, T m) {
  return v == m || (v != v && m != m);
}

// A window along one dimension starts at input index `start` (negative in the
// left padding) and spans `extent`; these clip it to the input [0, size):
// first index, and one past the last.
__device__ __forceinline__ std::int64_t pool_clip_begin(std::int64_t start) {
  return start < 0 ? 0 : start;
}
__device__ __forceinline__ std::int64_t pool_clip_end(std::int64_t start, int extent,
                                                      std::int64_t size) {
  return start + extent < size ? start + extent : size;
}

template <typename T>
__global__ void max_pool2d_fprop_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                        T* __restrict__ y,        // (N, C, P, Q)
                                        const ops::PoolParams pp) {
  const std::int64_t total = pp.N * pp.C * pp.P * pp.Q;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const std::int64_t q = i % pp.Q;
    const std::int64_t p = (i / pp.Q) % pp.P;
    const std::int64_t nc = i / (pp.Q * pp.P);
    const std::int64_t h_start = p * pp.stride_h - pp.pad_h;
    const std::int64_t w_start = q * pp.stride_w - pp.pad_w;
    const std::int64_t h0 = pool_clip_begin(h_start);
    const std::int64_t h1 = pool_clip_end(h_start, pp.R, pp.H);
    const std::int64_t w0 = pool_clip_begin(w_start);
    const std::int64_t w1 = pool_clip_end(w_start, pp.S, pp.W);
    const T* plane = x + nc * pp.H * pp.W;
    T best = plane[h0 * pp.W + w0];  // the window is never empty (see the note)
    for (std::int64_t h = h0; h < h1; ++h) {
      const T* row = plane + h * pp.W;
      for (std::int64_t w = w0; w < w1; ++w) {
        const T v = row[w];
        if (pool_replaces(v, best)) best = v;
      }
    }
    y[i] = best;
  }
}

// Whether input element (h, w) is the arg-max of the window starting at
// (h_start, w_start), whose maximum is m: it must equal m and no element
// before it in row-major window order may.
template <typename T>
__device__ __forceinline__ bool pool_is_argmax(const T* plane, const ops::PoolParams& pp,
                                               std::int64_t h_start, std::int64_t w_start,
                                               std::int64_t h, std::int64_t w, T m) {
  if (!pool_is_maximum(plane[h * pp.W + w], m)) return false;
  const std::int64_t h0 = pool_clip_begin(h_start);
  const std::int64_t w0 = pool_clip_begin(w_start);
  const std::int64_t w1 = pool_clip_end(w_start, pp.S, pp.W);
  for (std::int64_t i = h0; i <= h; ++i) {
    const std::int64_t end = i < h ? w1 : w;  // row h: only the elements before w
    for (std::int64_t j = w0; j < end; ++j) {
      if (pool_is_maximum(plane[i * pp.W + j], m)) return false;
    }
  }
  return true;
}

template <typename T>
__global__ void max_pool2d_bprop_kernel(const T* __restrict__ x,   // (N, C, H, W) fprop input
                                        const T* __restrict__ y,   // (N, C, P, Q) fprop output
                                        const T* __restrict__ dy,  // (N, C, P, Q)
                                        T* __restrict__ dx,        // (N, C, H, W)
                                        const ops::PoolParams pp) {
  const std::int64_t total = pp.N * pp.C * pp.H * pp.W;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const std::int64_t w = i % pp.W;
    const std::int64_t h = (i / pp.W) % pp.H;
    const std::int64_t nc = i / (pp.W * pp.H);
    // Windows containing (h, w): p*stride_h <= h + pad_h < p*stride_h + R.
    const std::int64_t hp = h + pp.pad_h;
    const std::int64_t wp = w + pp.pad_w;
    const std::int64_t p0 = hp < pp.R ? 0 : (hp - pp.R) / pp.stride_h + 1;
    const std::int64_t q0 = wp < pp.S ? 0 : (wp - pp.S) / pp.stride_w + 1;
    const std::int64_t p1 = hp / pp.stride_h < pp.P - 1 ? hp / pp.stride_h : pp.P - 1;
    const std::int64_t q1 = wp / pp.stride_w < pp.Q - 1 ? wp / pp.stride_w : pp.Q - 1;
    const T* plane = x + nc * pp.H * pp.W;
    const std::int64_t out_plane = nc * pp.P * pp.Q;
    T sum = T(0);
    for (std::int64_t p = p0; p <= p1; ++p) {
      for (std::int64_t q = q0; q <= q1; ++q) {
        const std::int64_t o = out_plane + p * pp.Q + q;
        if (pool_is_argmax(plane, pp, p * pp.stride_h - pp.pad_h, q * pp.stride_w - pp.pad_w, h,
                           w, y[o])) {
          sum += dy[o];
        }
      }
    }
    dx[i] = sum;
  }
}

}  // namespace dc
