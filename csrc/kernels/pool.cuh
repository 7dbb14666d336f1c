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
// adds dy for each window that chose it (windows that cannot overlap take
// the one-writer shortcut described at max_pool2d_bprop_scatter_kernel).
// No atomics; overlapping windows (AlexNet's 3x3 stride 2) still sum in a
// fixed order, so dx is bitwise identical across runs.
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
// The kernels are barrier-free grid-stride loops over runs of one row: on a
// GPU one output (fprop) or input (bprop) element per thread, consecutive
// threads on consecutive q (or w), so warps read and write contiguous rows;
// on the emulator a whole row per thread (see PoolRowRun). Non-overlapping
// windows (VGG's 2x2 stride 2) take a cheaper backward, one thread per
// window writing the part of dx it owns (max_pool2d_bprop_scatter_kernel),
// with the gather's results bit for bit.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "ops/pool.h"

namespace dc {

// The window's running maximum after v: v if it is greater than best, or
// the first NaN (once best is NaN nothing replaces it). `v > best ? v :
// best` is x86's maxss exactly (ties and signed zeros keep best, the
// earlier element), so the host compiler needs no branch for it; the NaN
// test's branch is almost never taken, so it predicts well. (A plain `if (v
// > best || ...)` mispredicted on half the elements of random data: most of
// the emulator's max_pool2d_fprop time.)
template <typename T>
__device__ __forceinline__ T pool_running_max(T v, T best) {
  const T greater = v > best ? v : best;
  return (v != v && best == best) ? v : greater;
}

// Whether v is a maximum of a window whose maximum is m (as fprop left it).
template <typename T>
__device__ __forceinline__ bool pool_is_maximum(T v, T m) {
  return (v == m) | ((v != v) & (m != m));  // bitwise: no branches on the host
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

// The work of one thread per grid-stride step: `run` consecutive elements
// (outputs q, or inputs w) of one row of one plane. The launcher picks run:
// 1 on a GPU (consecutive threads take consecutive elements, so a warp's
// accesses coalesce), the whole row on the emulator (where a thread's fixed
// cost, the scheduler's call and the 64-bit index divisions, would otherwise
// dominate such light kernels). `rows` is the planes' height (P or H) and
// `length` the row's (Q or W).
struct PoolRowRun {
  std::int64_t row;    // plane * rows + row in the plane
  std::int64_t nc;     // plane: n * C + c
  std::int64_t index;  // row in the plane (p or h)
  std::int64_t begin;  // first element of the run
  std::int64_t end;    // one past its last
};
__device__ __forceinline__ PoolRowRun pool_row_run(std::int64_t item, std::int64_t rows,
                                                   std::int64_t length, int run) {
  const std::int64_t runs_per_row = (length + run - 1) / run;
  PoolRowRun r;
  r.row = item / runs_per_row;
  r.begin = (item - r.row * runs_per_row) * run;
  r.end = r.begin + run < length ? r.begin + run : length;
  r.nc = r.row / rows;
  r.index = r.row - r.nc * rows;
  return r;
}

// Grid-stride items of a kernel whose threads take runs of `run` along rows
// of `length` elements: planes * rows * ceil(length / run).
__host__ __device__ __forceinline__ std::int64_t pool_run_items(std::int64_t planes,
                                                                std::int64_t rows,
                                                                std::int64_t length, int run) {
  return planes * rows * ((length + run - 1) / run);
}

template <typename T>
__global__ void max_pool2d_fprop_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                        T* __restrict__ y,        // (N, C, P, Q)
                                        const ops::PoolParams pp, int run) {
  const std::int64_t total = pool_run_items(pp.N * pp.C, pp.P, pp.Q, run);
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const PoolRowRun r = pool_row_run(i, pp.P, pp.Q, run);
    const std::int64_t h_start = r.index * pp.stride_h - pp.pad_h;
    const std::int64_t h0 = pool_clip_begin(h_start);
    const std::int64_t h1 = pool_clip_end(h_start, pp.R, pp.H);
    const T* plane = x + r.nc * pp.H * pp.W;
    T* out = y + r.row * pp.Q;
    for (std::int64_t q = r.begin; q < r.end; ++q) {
      const std::int64_t w_start = q * pp.stride_w - pp.pad_w;
      const std::int64_t w0 = pool_clip_begin(w_start);
      const std::int64_t w1 = pool_clip_end(w_start, pp.S, pp.W);
      T best = plane[h0 * pp.W + w0];  // the window is never empty (see the note)
      for (std::int64_t h = h0; h < h1; ++h) {
        const T* in = plane + h * pp.W;
        for (std::int64_t w = w0; w < w1; ++w) best = pool_running_max(in[w], best);
      }
      out[q] = best;
    }
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
                                        const ops::PoolParams pp, int run) {
  const std::int64_t total = pool_run_items(pp.N * pp.C, pp.H, pp.W, run);
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const PoolRowRun r = pool_row_run(i, pp.H, pp.W, run);
    const std::int64_t h = r.index;
    // Windows containing (h, w): p*stride_h <= h + pad_h < p*stride_h + R.
    const std::int64_t hp = h + pp.pad_h;
    const std::int64_t p0 = hp < pp.R ? 0 : (hp - pp.R) / pp.stride_h + 1;
    const std::int64_t p1 = hp / pp.stride_h < pp.P - 1 ? hp / pp.stride_h : pp.P - 1;
    const T* plane = x + r.nc * pp.H * pp.W;
    const std::int64_t out_plane = r.nc * pp.P * pp.Q;
    for (std::int64_t w = r.begin; w < r.end; ++w) {
      const std::int64_t wp = w + pp.pad_w;
      const std::int64_t q0 = wp < pp.S ? 0 : (wp - pp.S) / pp.stride_w + 1;
      const std::int64_t q1 = wp / pp.stride_w < pp.Q - 1 ? wp / pp.stride_w : pp.Q - 1;
      T sum = T(0);
      for (std::int64_t p = p0; p <= p1; ++p) {
        for (std::int64_t q = q0; q <= q1; ++q) {
          const std::int64_t o = out_plane + p * pp.Q + q;
          if (pool_is_argmax(plane, pp, p * pp.stride_h - pp.pad_h, q * pp.stride_w - pp.pad_w,
                             h, w, y[o])) {
            sum += dy[o];
          }
        }
      }
      dx[r.row * pp.W + w] = sum;
    }
  }
}

// Windows that do not overlap (stride >= window, or a single window along a
// dimension), e.g. VGG's 2x2 stride 2: every input element lies in at most
// one window, so the gather above reduces to "dy where the element is its
// window's arg-max, else 0", and one thread per window can write it. Each
// window owns a cell of dx that holds it (rows shown; columns alike):
//
//   rows [cell_begin(p), cell_begin(p + 1)),  cell_begin(0) = 0,
//   cell_begin(p) = p*stride_h - pad_h,       cell_begin(P) = H,
//
// a partition of the rows (pad_h <= R/2 <= stride_h/2 keeps cell_begin(1)
// >= 0, and the launcher's check keeps the last window's start below H)
// that also covers the rows no window reaches (stride > window, or the rows
// floor mode leaves out), which get 0. The thread finds the arg-max with the
// gather's rule (first element of the window, in row-major order, that is a
// maximum of y's value) and writes every element of its cell, so the two
// kernels produce the same bits: the gather's one-term sum is 0 + dy, which
// the scatter writes too (it turns a -0.0 gradient into +0.0 alike).
__device__ __forceinline__ std::int64_t pool_cell_begin(std::int64_t p, std::int64_t outputs,
                                                        int stride, int pad, std::int64_t size) {
  if (p == 0) return 0;
  return p == outputs ? size : p * stride - pad;
}

template <typename T>
__global__ void max_pool2d_bprop_scatter_kernel(const T* __restrict__ x,   // (N, C, H, W)
                                                const T* __restrict__ y,   // (N, C, P, Q)
                                                const T* __restrict__ dy,  // (N, C, P, Q)
                                                T* __restrict__ dx,        // (N, C, H, W)
                                                const ops::PoolParams pp, int run) {
  const std::int64_t total = pool_run_items(pp.N * pp.C, pp.P, pp.Q, run);
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const PoolRowRun r = pool_row_run(i, pp.P, pp.Q, run);
    const std::int64_t p = r.index;
    const std::int64_t h_start = p * pp.stride_h - pp.pad_h;
    const std::int64_t h0 = pool_clip_begin(h_start);
    const std::int64_t h1 = pool_clip_end(h_start, pp.R, pp.H);
    const std::int64_t rows_begin = pool_cell_begin(p, pp.P, pp.stride_h, pp.pad_h, pp.H);
    const std::int64_t rows_end = pool_cell_begin(p + 1, pp.P, pp.stride_h, pp.pad_h, pp.H);
    const T* plane = x + r.nc * pp.H * pp.W;
    T* dx_plane = dx + r.nc * pp.H * pp.W;
    // The run's cells are contiguous along each row: zero them all first,
    // then store each window's gradient at its arg-max (a `? g : 0` per
    // element compiles to a branch that mispredicts on the host).
    const std::int64_t cols_begin = pool_cell_begin(r.begin, pp.Q, pp.stride_w, pp.pad_w, pp.W);
    const std::int64_t cols_end = pool_cell_begin(r.end, pp.Q, pp.stride_w, pp.pad_w, pp.W);
    for (std::int64_t h = rows_begin; h < rows_end; ++h) {
      for (std::int64_t w = cols_begin; w < cols_end; ++w) dx_plane[h * pp.W + w] = T(0);
    }
    for (std::int64_t q = r.begin; q < r.end; ++q) {
      const std::int64_t o = r.row * pp.Q + q;
      const T m = y[o];
      const std::int64_t w_start = q * pp.stride_w - pp.pad_w;
      const std::int64_t w0 = pool_clip_begin(w_start);
      const std::int64_t w1 = pool_clip_end(w_start, pp.S, pp.W);
      // h * W + w of the arg-max, -1 if no element matches y. The window is
      // walked backwards so the last match kept is the first in row-major
      // order, and a match moves arg by integer arithmetic: g++ turns an
      // early exit or a `? :` here into a branch that mispredicts on random
      // data (a quarter of a 2x2 window's elements match).
      std::int64_t arg = -1;
      for (std::int64_t h = h1 - 1; h >= h0; --h) {
        for (std::int64_t w = w1 - 1; w >= w0; --w) {
          const std::int64_t e = h * pp.W + w;
          const std::int64_t match = pool_is_maximum(plane[e], m);
          arg += (e - arg) & -match;
        }
      }
      // The gather's one-term sum, bit for bit (0 + dy: -0.0 becomes +0.0).
      if (arg >= 0) dx_plane[arg] = T(0) + dy[o];
    }
  }
}

}  // namespace dc
