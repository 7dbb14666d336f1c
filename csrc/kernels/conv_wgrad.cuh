// wgrad pass of the convolution (included by kernels/conv.cuh; the main loop
// and the conventions are described there), and the bias gradient.
//
//   GEMM row k      = filter within the group
//   GEMM column j   = (c, r, s) within the group, w's memory order
//   reduction       = output pixel (n, p, q), m = (n*P + p)*Q + q
// The reduction (N*P*Q) is long and the GEMM small (K/g x C/g*R*S), so the
// launcher splits the reduction into a fixed number of chunks (split-K);
// each chunk's partial dw goes to a workspace and conv_split_reduce_kernel
// adds the chunks in order (deterministic; no atomics).
//
// db[k] = sum over (n, p, q) of dy[n, k, p, q]: conv_bias_grad_kernel, one
// block per k; each thread sums a fixed strided subset in increasing order,
// then the block adds the threads' sums in a fixed tree.
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "kernels/conv_params.cuh"

namespace dc {

// dy[n, g*K/g + k, p, q] along the reduction (n, p, q) for row k.
template <typename T>
struct ConvWgradGradLoader : ConvWalkedLoads<ConvWgradGradLoader<T>, T> {
  static constexpr bool kRuns = false;  // one GEMM row per thread (ConvTileLoad)
  const T* row;  // dy at (0, g*K/g + k, 0, 0)
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t k) {
    const ConvParams& p = pass.params;
    valid = k < p.group_filters();
    row = pass.dy + (std::int64_t(group) * p.group_filters() + (valid ? k : 0)) * p.output_plane();
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.dy;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const ConvParams& p = pass.params;
    const int PQ = static_cast<int>(p.output_plane());
    int n = k / PQ;
    int pq = k - n * PQ;
    const T* plane = row + std::int64_t(n) * p.K * PQ;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      f(i, valid && k + i < k_end ? plane + pq : nullptr);
      if (++pq == PQ) {
        pq = 0;
        plane += std::int64_t(p.K) * PQ;
      }
    }
  }
};

// x[n, g*C/g + c, p*sh - ph + r, q*sw - pw + s] along the reduction (n, p, q)
// for column (c, r, s); zero in the padding.
template <typename T>
struct ConvWgradImageLoader : ConvWalkedLoads<ConvWgradImageLoader<T>, T> {
  const T* channel;  // x at (0, g*C/g + c, 0, 0)
  int r, s;
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t j) {
    const ConvParams& p = pass.params;
    valid = j < p.filter_size();
    const int jj = valid ? static_cast<int>(j) : 0;
    const int c = jj / p.filter_taps();
    const int rs = jj - c * p.filter_taps();
    r = rs / p.S;
    s = rs - r * p.S;
    channel = pass.x + (std::int64_t(group) * p.group_channels() + c) * p.input_plane();
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.x;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const ConvParams& p = pass.params;
    const int PQ = static_cast<int>(p.output_plane());
    const std::int64_t image_stride = std::int64_t(p.C) * p.input_plane();
    int n = k / PQ;
    int pq = k - n * PQ;
    int op = pq / p.Q;
    int oq = pq - op * p.Q;
    const T* image = channel + n * image_stride;
    const int dh = r - p.pad_h, dw = s - p.pad_w;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const int h = op * p.stride_h + dh, w = oq * p.stride_w + dw;
      const bool inside = valid && k + i < k_end && h >= 0 && h < p.H && w >= 0 && w < p.W;
      f(i, inside ? image + h * p.W + w : nullptr);
      if (++oq == p.Q) {
        oq = 0;
        if (++op == p.P) {
          op = 0;
          image += image_stride;
        }
      }
    }
  }
};

template <typename T>
struct ConvWgradPass {
  using Scalar = T;
  using ALoader = ConvWgradGradLoader<T>;
  using BLoader = ConvWgradImageLoader<T>;

  ConvParams params;
  const T* x;   // (N, C, H, W)
  const T* dy;  // (N, K, P, Q)
  T* out;       // dw (K, C/groups, R, S)

  __host__ __device__ __forceinline__ std::int64_t gemm_m() const { return params.group_filters(); }
  __host__ __device__ __forceinline__ int gemm_n() const {
    return static_cast<int>(params.filter_size());
  }
  __host__ __device__ __forceinline__ int gemm_k() const {
    return static_cast<int>(params.output_pixels());
  }
  __host__ __device__ __forceinline__ int groups() const { return params.groups; }

  // dw[g*K/g + k, j]: base + j.
  __device__ __forceinline__ std::int64_t out_offset(int group, std::int64_t k) const {
    return (std::int64_t(group) * params.group_filters() + k) * params.filter_size();
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return 1; }
  __device__ __forceinline__ T finish(int, int, T v) const { return v; }
};

// db[k] = sum_{n,p,q} dy[n, k, p, q]; grid (K), kThreads threads per block.
template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    conv_bias_grad_kernel(const T* dy,  // (N, K, P, Q)
                          T* db,        // (K,)
                          int N, int K, std::int64_t plane) {
  DC_SHARED(T[kThreads], partial);
  const int k = blockIdx.x;
  const int tid = threadIdx.x;
  T sum = T(0);
  for (int n = 0; n < N; ++n) {
    const T* row = dy + (std::int64_t(n) * K + k) * plane;
    for (std::int64_t i = tid; i < plane; i += kThreads) sum += row[i];
  }
  partial[tid] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (tid < half) partial[tid] += partial[tid + half];
    __syncthreads();
  }
  if (tid == 0) db[k] = partial[0];
}

// The same db as conv_bias_grad_kernel<T, kLanes>, to the bit, from one thread
// per block: lane t's partial sum takes the same elements in the same order
// (each image in turn, elements t, t + kLanes, ... of its plane), then the
// same pairwise tree. For the emulator, where the block version's
// log2(kLanes) + 1 barriers switch every one of its threads and cost more
// than the adds (vgg_small's bias gradients: 5-6 ms of a 256-filter layer's
// 15 ms wgrad); the GPU keeps the block version.
template <typename T, int kLanes>
__global__ void conv_bias_grad_serial_kernel(const T* dy,  // (N, K, P, Q)
                                             T* db,        // (K,)
                                             int N, int K, std::int64_t plane) {
  const int k = blockIdx.x;
  T partial[kLanes];
  for (int t = 0; t < kLanes; ++t) partial[t] = T(0);
  for (int n = 0; n < N; ++n) {
    const T* row = dy + (std::int64_t(n) * K + k) * plane;
    // Whole rounds of kLanes elements (one add per lane: the lanes are
    // independent, so the compiler may vectorise across them), then the rest.
    std::int64_t i = 0;
    for (; i + kLanes <= plane; i += kLanes) {
      for (int t = 0; t < kLanes; ++t) partial[t] += row[i + t];
    }
    for (int t = 0; i < plane; ++i, ++t) partial[t] += row[i];
  }
  for (int half = kLanes / 2; half > 0; half /= 2) {
    for (int t = 0; t < half; ++t) partial[t] += partial[t + half];
  }
  db[k] = partial[0];
}

}  // namespace dc
