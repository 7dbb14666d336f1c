// dgrad pass of the convolution (included by kernels/conv.cuh; the main loop
// and the conventions are described there).
//
//   GEMM row m    = input pixel (n, h, w), m = (n*H + h)*W + w
//   GEMM column c = input channel within the group
//   reduction     = (k, r, s): filter k of the group, tap (r, s)
// Tap (r, s) of output (p, q) reads input (p*sh - ph + r, q*sw - pw + s), so
// input (h, w) receives from p = (h + ph - r) / sh where that divides exactly
// and lands in [0, P) (likewise q); every other tap is skipped (reads 0).
// kStride = 1 (implicit_gemm_3x3 and every stride-1 problem) drops the
// divisibility tests. On the emulator, stride-1 problems gather dy in runs of
// input pixels instead (ConvDgradGradRunLoader, as in fprop).
//
// Fully connected (the filter covers the image, P = Q = 1): only one tap per
// input pixel lands, so the pixel-major GEMM above would multiply mostly
// zeros. ConvDgradFcPass uses the dense GEMM instead:
//   GEMM row n = image, column j = (c, h, w) within the group, reduction k:
//   dx[n, g, j] = sum_k dy[n, g*K/g + k] w[g*K/g + k, j].
#pragma once

#include <cstdint>

#include "kernels/conv_params.cuh"

namespace dc {

// dy gathered through the (flipped) filter window of one input pixel.
template <typename T, int kR, int kS, int kStride>
struct ConvDgradGradLoader : ConvWalkedLoads<ConvDgradGradLoader<T, kR, kS, kStride>, T> {
  static constexpr bool kRuns = false;  // one GEMM row per thread (ConvTileLoad)
  static constexpr int kTaps = kR * kS;  // 0: read from the problem (ConvDgradPass)
  const T* grad;  // dy at (n, first filter of the group, 0, 0)
  int hp, wp;     // h + pad_h, w + pad_w
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t m) {
    const ConvParams& p = pass.params;
    valid = m < p.input_pixels();
    const ConvPixel px = conv_pixel(m, p.input_pixels(), p.input_plane(), p.W);
    hp = px.row + p.pad_h;
    wp = px.col + p.pad_w;
    grad = pass.dy + (px.n * p.K + std::int64_t(group) * p.group_filters()) * p.output_plane();
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.dy;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  // Strides are 32-bit (a 64-bit one costs two registers for the whole main
  // loop): with the filter loader's, that keeps the 3x3 variant's cp.async
  // ring within 128 registers on sm_80 .. sm_90 (72 bytes of spills before).
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const ConvParams& p = pass.params;
    const int R = kR ? kR : p.R;
    const int S = kS ? kS : p.S;
    const int sh = kStride ? kStride : p.stride_h;
    const int sw = kStride ? kStride : p.stride_w;
    const int P = p.P, Q = p.Q;
    const int plane_size = P * Q;  // below N*P*Q < 2^31 (conv_check_params)
    const ConvTap tap = conv_tap(k, R, S);  // tap.c: the filter
    int r = tap.r;
    int s = tap.s;
    const T* plane = grad + std::int64_t(tap.c) * plane_size;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const int hs = hp - r, ws = wp - s;  // p*sh, q*sw if this tap lands
      bool lands = valid && k + i < k_end && hs >= 0 && ws >= 0;
      int op = hs, oq = ws;
      if (kStride != 1) {
        op = lands ? hs / sh : 0;
        oq = lands ? ws / sw : 0;
        lands = lands && op * sh == hs && oq * sw == ws;
      }
      lands = lands && op < P && oq < Q;
      f(i, lands ? plane + op * Q + oq : nullptr);
      if (++s == S) {
        s = 0;
        if (++r == R) {
          r = 0;
          plane += plane_size;
        }
      }
    }
  }
};

// Stride 1 only: dy gathered in runs, for one reduction step (f, r, s),
// kCount consecutive input pixels from m_first on (ConvTileLoadRuns; the
// walk is conv_gather_run's, as for ConvFpropImageRunLoader).
template <typename T, int kR, int kS>
struct ConvDgradGradRunLoader {
  static constexpr bool kRuns = true;
  static constexpr int kTaps = kR * kS;  // 0: read from the problem (ConvDgradPass)

  const T* grad;  // dy at (n of m_first, first filter of the group, 0, 0)
  std::int64_t m_first;
  int h0, w0;     // input row and column of m_first

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t m) {
    const ConvParams& p = pass.params;
    m_first = m;
    const ConvPixel px = conv_pixel(m, p.input_pixels(), p.input_plane(), p.W);
    h0 = px.row;
    w0 = px.col;
    grad = pass.dy + (px.n * p.K + std::int64_t(group) * p.group_filters()) * p.output_plane();
  }

  template <typename Pass, int kCount>
  __device__ __forceinline__ void load(const Pass& pass, int k, int k_end, T (&out)[kCount]) const {
    const ConvParams& p = pass.params;
    const ConvTap tap = conv_tap(k, kR ? kR : p.R, kS ? kS : p.S);  // tap.c: the filter
    // Input pixel (h, w) reads dy (h + pad_h - r, w + pad_w - s).
    ConvRunWalk walk;
    walk.rows = p.H, walk.cols = p.W;
    walk.src_rows = p.P, walk.src_cols = p.Q;
    walk.row_step = 1, walk.col_step = 1;
    walk.row_shift = p.pad_h - tap.r, walk.col_shift = p.pad_w - tap.s;
    walk.image_stride = std::int64_t(p.K) * p.output_plane();
    conv_gather_run(walk, grad + tap.c * p.output_plane(), h0, w0,
                    conv_run_count<kCount>(m_first, p.input_pixels(), k, k_end), out);
  }
};

// w[g*K/g + f, c, r, s] for reduction index (f, r, s) and column c. kTaps:
// R*S when the variant fixes it (9 for the 3x3 one: the division of k by it
// becomes a multiply), 0 to read it from the problem.
template <typename T, int kTaps>
struct ConvDgradFilterLoader : ConvWalkedLoads<ConvDgradFilterLoader<T, kTaps>, T> {
  const T* column;  // w at (first filter of the group, c, 0, 0)
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t c) {
    const ConvParams& p = pass.params;
    valid = c < p.group_channels();
    column = pass.w + std::int64_t(group) * p.group_filters() * p.filter_size() +
             (valid ? c : 0) * p.filter_taps();
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.w;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const ConvParams& p = pass.params;
    const int taps = kTaps ? kTaps : p.filter_taps();
    const int size = static_cast<int>(p.filter_size());  // below 2^31 (conv_check_params)
    const int first = k / taps;  // the filter of step k
    int rs = k - first * taps;
    const T* filter = column + std::int64_t(first) * size;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      f(i, valid && k + i < k_end ? filter + rs : nullptr);
      if (++rs == taps) {
        rs = 0;
        filter += size;
      }
    }
  }
};

template <typename T, typename ALoaderT>
struct ConvDgradPass {
  using Scalar = T;
  using ALoader = ALoaderT;
  using BLoader = ConvDgradFilterLoader<T, ALoaderT::kTaps>;

  ConvParams params;
  const T* dy;  // (N, K, P, Q)
  const T* w;   // (K, C/groups, R, S)
  T* out;       // dx (N, C, H, W)

  __host__ __device__ __forceinline__ std::int64_t gemm_m() const { return params.input_pixels(); }
  __host__ __device__ __forceinline__ int gemm_n() const { return params.group_channels(); }
  __host__ __device__ __forceinline__ int gemm_k() const {
    return params.group_filters() * params.filter_taps();
  }
  __host__ __device__ __forceinline__ int groups() const { return params.groups; }

  // dx[n, g*C/g + c, h, w] for m = (n, h, w): base + c * H*W.
  __device__ __forceinline__ std::int64_t out_offset(int group, std::int64_t m) const {
    const std::int64_t n = m / params.input_plane();
    return (n * params.C + std::int64_t(group) * params.group_channels()) * params.input_plane() +
           (m - n * params.input_plane());
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return params.input_plane(); }
  __device__ __forceinline__ T finish(int, int, T v) const { return v; }
};

// Column j of w seen as a (K/g, C/g*R*S) matrix per group: element k is
// w[g*K/g + k, j], one filter apart per step.
template <typename T>
struct ConvFilterColumnLoader : ConvWalkedLoads<ConvFilterColumnLoader<T>, T> {
  const T* column;
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t j) {
    const ConvParams& p = pass.params;
    valid = j < p.filter_size();
    column = pass.w + std::int64_t(group) * p.group_filters() * p.filter_size() + (valid ? j : 0);
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.w;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const int step = static_cast<int>(pass.params.filter_size());  // below 2^31
    const T* filter = column + std::int64_t(k) * step;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      f(i, valid && k + i < k_end ? filter : nullptr);
      filter += step;
    }
  }
};

template <typename T>
struct ConvDgradFcPass {
  using Scalar = T;
  using ALoader = ConvRowLoader<T, kConvOperandA>;
  using BLoader = ConvFilterColumnLoader<T>;

  ConvParams params;
  const T* dy;  // (N, K, 1, 1)
  const T* w;   // (K, C/groups, H, W)
  T* out;       // dx (N, C, H, W)

  __host__ __device__ __forceinline__ std::int64_t gemm_m() const { return params.N; }
  __host__ __device__ __forceinline__ int gemm_n() const {
    return static_cast<int>(params.filter_size());
  }
  __host__ __device__ __forceinline__ int gemm_k() const { return params.group_filters(); }
  __host__ __device__ __forceinline__ int groups() const { return params.groups; }

  // dy as an (N, K) matrix, K/g columns per group.
  template <int kOperand>
  __device__ __forceinline__ ConvRowMatrix<T> rows() const {
    return ConvRowMatrix<T>{dy, params.N, params.K, params.group_filters()};
  }

  // dx[n, g*C/g*H*W + j]: base + j.
  __device__ __forceinline__ std::int64_t out_offset(int group, std::int64_t n) const {
    return n * params.C * params.input_plane() + group * params.filter_size();
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return 1; }
  __device__ __forceinline__ T finish(int, int, T v) const { return v; }
};

}  // namespace dc
