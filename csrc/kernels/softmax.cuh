// Softmax and fused softmax + cross-entropy, forward and backward.
//
//   fprop:  m_r        = max_j x[r, j]                    x: (n, k) logits, row-major
//           s_r        = sum_j exp(x[r, j] - m_r)
//           p[r, j]    = exp(x[r, j] - m_r) / s_r         p: (n, k)
//           losses[r]  = log(s_r) - (x[r, l_r] - m_r)     losses: (n,), l: (n,) labels
//           loss       = (sum_r losses[r]) / n            loss: (1,)
//   bprop:  dx[r, j]   = (p[r, j] - [j == l_r]) * scale   (scale = 1/n for the mean loss)
//
// Every output is written with `=`. A (N, K, 1, 1) classifier output is the
// same memory as (N, K).
//
// Stability: subtracting the row max makes every exponent <= 0, so exp never
// overflows and s_r is in [1, k]; logits of +-1e4 give finite results. The
// loss is log(s) - (x_l - m) rather than (log(s) + m) - x_l, which keeps its
// precision when |m| is large. NaN anywhere in a row makes s_r, every p of
// the row and the row's loss NaN (the max skips NaN, but exp(NaN - m) does
// not), and so the mean loss: divergence is never hidden.
//
// Layout and determinism: one block per row (a grid-stride loop over rows),
// its threads striding over the row's k entries. Reductions (max, sum) go
// through a fixed tree: each thread's strided partial in index order, a warp
// butterfly (__shfl_xor_sync), then the warps' results read from shared
// memory in warp order by every thread. The batch mean is one block doing
// the same over the n per-row losses. No atomics, so results are bitwise
// repeatable for a given block size (the launcher fixes it per build).
//
// Labels: thread 0 reads x[r, l_r] only when 0 <= l_r < k; otherwise the
// row's loss is NaN. The backward kernel compares j == l_r, never indexes.
// Indices are 64-bit (n * k passes 2^31 for large batches of many classes).
#pragma once

#include <cstdint>
#include <limits>

#include "common/portable.cuh"

namespace dc {

constexpr int kSoftmaxMaxWarps = 32;  // 1024 threads

__device__ __forceinline__ float softmax_exp(float x) { return expf(x); }
__device__ __forceinline__ double softmax_exp(double x) { return exp(x); }
__device__ __forceinline__ float softmax_log(float x) { return logf(x); }
__device__ __forceinline__ double softmax_log(double x) { return log(x); }

struct SoftmaxMax {
  // NaN never wins, so a NaN row still has a finite max when it has any
  // number; the NaN then poisons the sum.
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return b > a ? b : a;
  }
};

struct SoftmaxSum {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

// The reduction of every thread's v over the block, returned to every thread.
// Fixed order: butterfly within each warp, then the warps' values in warp
// order. blockDim.x: a multiple of 32. `partial` is reused by the next call,
// hence the barrier at the end.
template <typename T, typename Op>
__device__ __forceinline__ T softmax_block_reduce(T v, T* partial, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  T r = partial[0];
  for (int w = 1; w < warps; ++w) r = op(r, partial[w]);
  __syncthreads();
  return r;
}

// labels == nullptr: plain softmax (losses unused). Otherwise losses[r] too.
template <typename T, typename L>
__global__ void softmax_xent_fprop_kernel(const T* __restrict__ logits,  // (n, k)
                                          const L* __restrict__ labels,  // (n,) or null
                                          T* __restrict__ probs,         // (n, k)
                                          T* __restrict__ losses,        // (n,) or null
                                          std::int64_t n, std::int64_t k) {
  DC_SHARED(T[kSoftmaxMaxWarps], partial);
  for (std::int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* x = logits + r * k;
    T* p = probs + r * k;

    T m = -std::numeric_limits<T>::infinity();
    for (std::int64_t j = threadIdx.x; j < k; j += blockDim.x) m = SoftmaxMax()(m, x[j]);
    m = softmax_block_reduce(m, partial, SoftmaxMax());

    T s = T(0);
    for (std::int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      const T e = softmax_exp(x[j] - m);
      p[j] = e;  // rescaled below by the same thread
      s += e;
    }
    s = softmax_block_reduce(s, partial, SoftmaxSum());

    for (std::int64_t j = threadIdx.x; j < k; j += blockDim.x) p[j] = p[j] / s;

    if (labels != nullptr && threadIdx.x == 0) {
      const L label = labels[r];
      losses[r] = (label >= 0 && std::int64_t(label) < k)
                      ? softmax_log(s) - (x[label] - m)
                      : std::numeric_limits<T>::quiet_NaN();
    }
  }
}

// loss[0] = sum(losses) / n, in one block, in a fixed order.
template <typename T>
__global__ void softmax_xent_mean_kernel(const T* __restrict__ losses,  // (n,)
                                         T* __restrict__ loss,          // (1,)
                                         std::int64_t n) {
  DC_SHARED(T[kSoftmaxMaxWarps], partial);
  T s = T(0);
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) s += losses[i];
  s = softmax_block_reduce(s, partial, SoftmaxSum());
  if (threadIdx.x == 0) loss[0] = s / T(n);
}

template <typename T, typename L>
__global__ void softmax_xent_bprop_kernel(const T* probs,              // (n, k)
                                          const L* __restrict__ labels,  // (n,)
                                          T* dlogits,                  // (n, k) may alias probs
                                          std::int64_t n, std::int64_t k, T scale) {
  for (std::int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const std::int64_t label = std::int64_t(labels[r]);
    const T* p = probs + r * k;
    T* dx = dlogits + r * k;
    for (std::int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      dx[j] = (p[j] - (j == label ? T(1) : T(0))) * scale;
    }
  }
}

}  // namespace dc
