// fprop pass of the convolution (included by kernels/conv.cuh; the main loop
// and the conventions are described there).
//
//   GEMM row m    = output pixel (n, p, q), m = (n*P + p)*Q + q
//   GEMM column k = output channel within the group
//   reduction     = (c, r, s) within the group, in w's memory order
// Epilogue: y = acc + b[k] (b may be null), then ReLU if `relu`.
//
// Operand loaders (each thread owns one GEMM row / column and walks the
// reduction index consecutively, so (c, r, s) advance incrementally: one
// division per stage, none per element):
//   ConvFpropImageLoader<kR, kS, kStride>  x gathered through the filter
//       window, zero outside the image. kR, kS, kStride are 0 for "read from
//       the problem" (implicit_gemm) or compile-time (implicit_gemm_3x3: 3, 3,
//       1), which turns the window walk into constant arithmetic.
//   ConvFpropImageRunLoader<kR, kS, kStride>  the same values, but a thread
//       owns one reduction step and a run of consecutive pixels (the
//       emulator's choice: row copies instead of scattered reads).
//   ConvRowLoader  a contiguous run per row: the filters (w is (K, C/g*R*S)),
//       and x itself when the filter covers the whole image (fully
//       connected: x is then an (N, C*H*W) matrix; implicit_gemm_fc).
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/portable.cuh"
#include "kernels/conv_params.cuh"

namespace dc {

// Which GEMM operand a loader gathers; a pass's rows<kOperand>() says where
// a ConvRowLoader for that operand reads.
constexpr int kConvOperandA = 0;
constexpr int kConvOperandB = 1;

// `rows` rows of `row_stride` elements from `data` (+ `group_stride` per
// group): what a ConvRowLoader reads.
template <typename T>
struct ConvRowMatrix {
  const T* data;
  std::int64_t rows;
  std::int64_t row_stride;
  std::int64_t group_stride;
};

// One row of a row-major matrix (pass.rows<kOperand>()); rows past the end,
// and steps past k_end, read as zeros.
template <typename T, int kOperand>
struct ConvRowLoader {
  static constexpr bool kRuns = false;  // one GEMM row per thread (ConvTileLoad)
  const T* row_ptr;
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t row) {
    const ConvRowMatrix<T> mat = pass.template rows<kOperand>();
    valid = row < mat.rows;
    row_ptr = mat.data + group * mat.group_stride + (valid ? row : 0) * mat.row_stride;
  }

  template <typename Pass, int kCount>
  __device__ __forceinline__ void load(const Pass&, int k, int k_end, T (&out)[kCount]) const {
    const T* src = row_ptr + k;
    if constexpr (std::is_same<T, float>::value && kCount % 4 == 0) {
      // 16-byte loads when the run is whole and aligned (rows of a multiple
      // of 4 elements from an aligned base: VGG's filters and fc layers).
      if (valid && k + kCount <= k_end && reinterpret_cast<std::uintptr_t>(src) % 16 == 0) {
#pragma unroll
        for (int v = 0; v < kCount / 4; ++v) {
          const float4 q = dc::vload<float4>(src + 4 * v);
          out[4 * v] = q.x;
          out[4 * v + 1] = q.y;
          out[4 * v + 2] = q.z;
          out[4 * v + 3] = q.w;
        }
        return;
      }
    }
    if (valid && k + kCount <= k_end) {
#pragma unroll
      for (int i = 0; i < kCount; ++i) out[i] = src[i];
    } else {
#pragma unroll
      for (int i = 0; i < kCount; ++i) out[i] = valid && k + i < k_end ? row_ptr[k + i] : T(0);
    }
  }

  static constexpr bool kAsync = true;  // copy_async: load()'s values by cp.async
  template <int kCount, typename Pass>
  __device__ __forceinline__ void copy_async(const Pass&, int k, int k_end, T* dst,
                                             int dst_stride) const {
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const bool inside = valid && k + i < k_end;
      conv_copy_element_async(dst + i * dst_stride, inside ? row_ptr + k + i : nullptr, row_ptr);
    }
  }
};

template <typename T, int kR, int kS, int kStride>
struct ConvFpropImageLoader : ConvWalkedLoads<ConvFpropImageLoader<T, kR, kS, kStride>, T> {
  static constexpr bool kRuns = false;  // one GEMM row per thread (ConvTileLoad)
  const T* image;  // x at (n, first channel of the group, 0, 0)
  int h0, w0;      // top-left corner of the window (may be negative: padding)
  bool valid;

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t m) {
    const ConvParams& p = pass.params;
    valid = m < p.output_pixels();
    const ConvPixel px = conv_pixel(m, p.output_pixels(), p.output_plane(), p.Q);
    const int sh = kStride ? kStride : p.stride_h;
    const int sw = kStride ? kStride : p.stride_w;
    h0 = px.row * sh - p.pad_h;
    w0 = px.col * sw - p.pad_w;
    image = pass.x + (px.n * p.C + std::int64_t(group) * p.group_channels()) * p.input_plane();
  }

  template <typename Pass>  // the tensor walk() reads (ConvWalkedLoads)
  __device__ __forceinline__ static const T* source(const Pass& pass) {
    return pass.x;
  }

  // Calls f(i, address of element i, or null for a zero) for i < kCount.
  template <int kCount, typename Pass, typename F>
  __device__ __forceinline__ void walk(const Pass& pass, int k, int k_end, F&& f) const {
    const ConvParams& p = pass.params;
    const int R = kR ? kR : p.R;
    const int S = kS ? kS : p.S;
    const int H = p.H, W = p.W;
    const ConvTap tap = conv_tap(k, R, S);
    const T* plane = image + tap.c * p.input_plane();
    int r = tap.r;
    int s = tap.s;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const int h = h0 + r, w = w0 + s;
      const bool inside = valid && k + i < k_end && h >= 0 && h < H && w >= 0 && w < W;
      f(i, inside ? plane + h * W + w : nullptr);
      if (++s == S) {
        s = 0;
        if (++r == R) {
          r = 0;
          plane += p.input_plane();
        }
      }
    }
  }
};

// x gathered in runs: for one reduction step (c, r, s), kCount consecutive
// output pixels from m_first on (ConvTileLoadRuns; the walk is
// conv_gather_run's). The launcher uses it on the emulator, where row copies
// are 2x cheaper than kCount scattered reads, and keeps the per-pixel
// ConvFpropImageLoader on a GPU, where a warp's pixels coalesce instead.
template <typename T, int kR, int kS, int kStride>
struct ConvFpropImageRunLoader {
  static constexpr bool kRuns = true;

  const T* image;  // x at (n of m_first, first channel of the group, 0, 0)
  std::int64_t m_first;
  int op0, oq0;    // output row and column of m_first

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t m) {
    const ConvParams& p = pass.params;
    m_first = m;
    const ConvPixel px = conv_pixel(m, p.output_pixels(), p.output_plane(), p.Q);
    op0 = px.row;
    oq0 = px.col;
    image = pass.x + (px.n * p.C + std::int64_t(group) * p.group_channels()) * p.input_plane();
  }

  template <typename Pass, int kCount>
  __device__ __forceinline__ void load(const Pass& pass, int k, int k_end, T (&out)[kCount]) const {
    const ConvParams& p = pass.params;
    const ConvTap tap = conv_tap(k, kR ? kR : p.R, kS ? kS : p.S);
    // Output pixel (op, oq) reads x (op*sh - pad_h + r, oq*sw - pad_w + s).
    ConvRunWalk walk;
    walk.rows = p.P, walk.cols = p.Q;
    walk.src_rows = p.H, walk.src_cols = p.W;
    walk.row_step = kStride ? kStride : p.stride_h;
    walk.col_step = kStride ? kStride : p.stride_w;
    walk.row_shift = tap.r - p.pad_h, walk.col_shift = tap.s - p.pad_w;
    walk.image_stride = std::int64_t(p.C) * p.input_plane();
    conv_gather_run(walk, image + tap.c * p.input_plane(), op0, oq0,
                    conv_run_count<kCount>(m_first, p.output_pixels(), k, k_end), out);
  }
};

template <typename T, typename ALoaderT>
struct ConvFpropPass {
  using Scalar = T;
  using ALoader = ALoaderT;
  using BLoader = ConvRowLoader<T, kConvOperandB>;

  ConvParams params;
  const T* x;  // (N, C, H, W)
  const T* w;  // (K, C/groups, R, S)
  const T* b;  // (K,) or null
  T* out;      // y (N, K, P, Q)
  bool relu;

  __host__ __device__ __forceinline__ std::int64_t gemm_m() const { return params.output_pixels(); }
  __host__ __device__ __forceinline__ int gemm_n() const { return params.group_filters(); }
  __host__ __device__ __forceinline__ int gemm_k() const {
    return static_cast<int>(params.filter_size());
  }
  __host__ __device__ __forceinline__ int groups() const { return params.groups; }

  // Row operands: A = x as an (N, C*H*W) matrix (fully connected only),
  // B = the filters; row k of group g is filter g*K/g + k.
  template <int kOperand>
  __device__ __forceinline__ ConvRowMatrix<T> rows() const {
    const ConvParams& p = params;
    if constexpr (kOperand == kConvOperandA) {
      return ConvRowMatrix<T>{x, p.N, p.C * p.input_plane(), p.group_channels() * p.input_plane()};
    } else {
      return ConvRowMatrix<T>{w, p.group_filters(), p.filter_size(),
                              p.group_filters() * p.filter_size()};
    }
  }

  // y[n, g*K/g + k, p, q] for m = (n, p, q): base + k * P*Q.
  __device__ __forceinline__ std::int64_t out_offset(int group, std::int64_t m) const {
    const std::int64_t n = m / params.output_plane();
    return (n * params.K + std::int64_t(group) * params.group_filters()) * params.output_plane() +
           (m - n * params.output_plane());
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return params.output_plane(); }
  __device__ __forceinline__ T finish(int group, int k, T v) const {
    if (b != nullptr) v += b[group * params.group_filters() + k];
    return relu && v < T(0) ? T(0) : v;
  }
};

}  // namespace dc
