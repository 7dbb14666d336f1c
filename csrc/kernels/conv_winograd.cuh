// Winograd minimal filtering for 3x3 stride-1 convolutions (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", 2016): F(4x4,3x3)
// (6x6 tiles, 36 transformed positions) and F(2x2,3x3) (4x4 tiles, 16).
//
// For one output tile Y (m x m) of one channel pair,
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// where g is the 3x3 filter, d the (m+2)x(m+2) input tile around Y and (.)
// the elementwise product. Summed over input channels c, the product at each
// of the alpha^2 positions is a matrix product:
//   M[pos][tile][k] = sum_c V[pos][tile][c] U[pos][k][c]
// so a convolution becomes three transforms around alpha^2 independent GEMMs,
// and those GEMMs run on the implicit-GEMM main loop of kernels/conv.cuh
// (ConvWinogradGemmPass below: both operands are row matrices, read by its
// ConvRowLoader; blockIdx.z covers position x group). Per output tile of one
// channel pair F(4x4) multiplies 36 times where direct convolution does 144.
//
// The passes (launchers: ops/conv_winograd.cu):
//   fprop  U = filter transform of w, V = input transform of x,
//          M = V U^T per position, y = output transform of M (+ bias, ReLU).
//   dgrad  the fprop of dy with the filters rotated 180 degrees and C / K
//          swapped (padding 2 - pad): the filter transform reads w that way.
//   wgrad  the gradient of the fprop formula with respect to g:
//            dw[k][c] = G^T [ sum_tiles (A dY A^T) (.) (B^T d B) ] G
//          so dy tiles go through A (conv_winograd_grad_kernel), x tiles
//          through the same input transform, the GEMM reduces over tiles,
//          and G^T . G (conv_winograd_filter_grad_kernel) gives the 3x3 dw.
// Every reduction runs in a fixed order (the main loop's, or a fixed
// sequence in a transform), with no atomics: bitwise reproducible.
//
// Layouts (workspace, all row-major; "group" is the convolution's channel
// group g, "z" = pos * groups + g is the GEMM batch index):
//   U  [pos][g][K/g rows][C/g]     filter transform (fprop, dgrad swaps C, K)
//   V  [pos][g][T][C/g]            input transform, T = N * tiles_h * tiles_w
//      [pos][g][C/g][T]            (wgrad's layout: reduction over T)
//   M  [pos][g][T][K/g]            GEMM result (fprop / dgrad)
//   dY [pos][g][K/g][T]            wgrad's transformed dy
//   dW [pos][g][K/g][C/g]          wgrad's GEMM result
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "kernels/conv.cuh"

namespace dc {

// The 1-D transforms of F(m x m, 3x3); the 2-D ones apply them to columns,
// then rows (winograd_2d). Coefficients: Lavin & Gray's points 0, +-1, +-2
// (F4) and 0, +-1 (F2), plus infinity.
template <int kM>
struct WinogradF;

template <>
struct WinogradF<4> {
  static constexpr int kTile = 4;   // outputs per tile side
  static constexpr int kAlpha = 6;  // transformed tile side

  // B^T d
  template <typename T>
  __device__ __forceinline__ static void input(const T (&d)[6], T (&t)[6]) {
    t[0] = T(4) * d[0] - T(5) * d[2] + d[4];
    t[1] = -T(4) * (d[1] + d[2]) + d[3] + d[4];
    t[2] = T(4) * (d[1] - d[2]) - d[3] + d[4];
    t[3] = T(2) * (d[3] - d[1]) - d[2] + d[4];
    t[4] = T(2) * (d[1] - d[3]) - d[2] + d[4];
    t[5] = T(4) * d[1] - T(5) * d[3] + d[5];
  }
  // G g
  template <typename T>
  __device__ __forceinline__ static void filter(const T (&g)[3], T (&u)[6]) {
    u[0] = g[0] / T(4);
    u[1] = -(g[0] + g[1] + g[2]) / T(6);
    u[2] = -(g[0] - g[1] + g[2]) / T(6);
    u[3] = g[0] / T(24) + g[1] / T(12) + g[2] / T(6);
    u[4] = g[0] / T(24) - g[1] / T(12) + g[2] / T(6);
    u[5] = g[2];
  }
  // A^T m
  template <typename T>
  __device__ __forceinline__ static void output(const T (&m)[6], T (&o)[4]) {
    const T a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + T(2) * d;
    o[2] = a + T(4) * c;
    o[3] = b + T(8) * d + m[5];
  }
  // A y (wgrad: the adjoint of the output transform)
  template <typename T>
  __device__ __forceinline__ static void grad_output(const T (&y)[4], T (&t)[6]) {
    const T even = y[0] + y[2], odd = y[1] + y[3];
    t[0] = y[0];
    t[1] = even + odd;
    t[2] = even - odd;
    const T even2 = y[0] + T(4) * y[2], odd2 = T(2) * y[1] + T(8) * y[3];
    t[3] = even2 + odd2;
    t[4] = even2 - odd2;
    t[5] = y[3];
  }
  // G^T x (wgrad: the adjoint of the filter transform)
  template <typename T>
  __device__ __forceinline__ static void filter_grad(const T (&x)[6], T (&g)[3]) {
    const T s12 = x[1] + x[2], d12 = x[1] - x[2], s34 = x[3] + x[4], d34 = x[3] - x[4];
    g[0] = x[0] / T(4) - s12 / T(6) + s34 / T(24);
    g[1] = -d12 / T(6) + d34 / T(12);
    g[2] = -s12 / T(6) + s34 / T(6) + x[5];
  }
};

template <>
struct WinogradF<2> {
  static constexpr int kTile = 2;
  static constexpr int kAlpha = 4;

  template <typename T>
  __device__ __forceinline__ static void input(const T (&d)[4], T (&t)[4]) {
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
  }
  template <typename T>
  __device__ __forceinline__ static void filter(const T (&g)[3], T (&u)[4]) {
    u[0] = g[0];
    u[1] = (g[0] + g[1] + g[2]) / T(2);
    u[2] = (g[0] - g[1] + g[2]) / T(2);
    u[3] = g[2];
  }
  template <typename T>
  __device__ __forceinline__ static void output(const T (&m)[4], T (&o)[2]) {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] - m[3];
  }
  template <typename T>
  __device__ __forceinline__ static void grad_output(const T (&y)[2], T (&t)[4]) {
    t[0] = y[0];
    t[1] = y[0] + y[1];
    t[2] = y[0] - y[1];
    t[3] = -y[1];
  }
  template <typename T>
  __device__ __forceinline__ static void filter_grad(const T (&x)[4], T (&g)[3]) {
    g[0] = x[0] + (x[1] + x[2]) / T(2);
    g[1] = (x[1] - x[2]) / T(2);
    g[2] = (x[1] + x[2]) / T(2) + x[3];
  }
};

// out = f(f(in) along columns) along rows: the 2-D form X^T in X of a 1-D
// transform f: T[kIn] -> T[kOut] (the matrix X^T).
template <int kIn, int kOut, typename T, typename F1>
__device__ __forceinline__ void winograd_2d(const T (&in)[kIn][kIn], T (&out)[kOut][kOut], F1 f) {
  T mid[kOut][kIn];
#pragma unroll
  for (int j = 0; j < kIn; ++j) {
    T col[kIn], t[kOut];
#pragma unroll
    for (int i = 0; i < kIn; ++i) col[i] = in[i][j];
    f(col, t);
#pragma unroll
    for (int i = 0; i < kOut; ++i) mid[i][j] = t[i];
  }
#pragma unroll
  for (int i = 0; i < kOut; ++i) f(mid[i], out[i]);
}

// The tile grid of one (pseudo-)fprop: tiles of kM x kM outputs over the
// P x Q output, each reading an alpha x alpha input window at
// (th * kM - pad_h, tw * kM - pad_w), zero outside the H x W image.
struct WinogradGeometry {
  int N = 0, C = 0, H = 0, W = 0;  // the input (dgrad: dy, C = K)
  int K = 0, P = 0, Q = 0;         // the output (dgrad: dx, K = C)
  int pad_h = 0, pad_w = 0;
  int groups = 1;
  int tiles_h = 0, tiles_w = 0;

  __host__ __device__ __forceinline__ int group_channels() const { return C / groups; }
  __host__ __device__ __forceinline__ int group_filters() const { return K / groups; }
  __host__ __device__ __forceinline__ std::int64_t image_tiles() const {
    return std::int64_t(tiles_h) * tiles_w;
  }
  __host__ __device__ __forceinline__ std::int64_t tiles() const { return N * image_tiles(); }
};

// Where a transform writes element (pos, g, row, col) of a workspace matrix:
// pos * pos_stride + g * group_stride + row * row_stride + col * col_stride.
struct WinogradLayout {
  std::int64_t pos_stride, group_stride, row_stride, col_stride;

  __device__ __forceinline__ std::int64_t at(int pos, int g, std::int64_t row,
                                             std::int64_t col) const {
    return pos * pos_stride + g * group_stride + row * row_stride + col * col_stride;
  }
};

// Filter transform: U[pos][g][row][col] = (G w G^T)[pos] for every filter.
// fprop: row = k, col = c within the group, the filter w[g K/g + k][c].
// dgrad (rotate): row = c, col = k, the filter w[g K/g + k][c] rotated 180
// degrees (the dgrad problem's filter (c, k)).
template <typename T, int kM>
__global__ void conv_winograd_filter_kernel(const T* __restrict__ w,  // (K, C/g, 3, 3)
                                            T* __restrict__ u, int K, int Cg, int groups,
                                            bool rotate, WinogradLayout layout) {
  using F = WinogradF<kM>;
  constexpr int kA = F::kAlpha;
  const int Kg = K / groups;
  const std::int64_t total = std::int64_t(K) * Cg;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const int filt = static_cast<int>(idx / Cg);  // global filter index g K/g + k
    const int c = static_cast<int>(idx - std::int64_t(filt) * Cg);
    const int g = filt / Kg;
    const int k = filt - g * Kg;
    const T* src = w + idx * 9;
    T g3[3][3];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int s = 0; s < 3; ++s) g3[r][s] = rotate ? src[(2 - r) * 3 + (2 - s)] : src[r * 3 + s];
    T out[kA][kA];
    winograd_2d(g3, out, [](const T(&a)[3], T(&b)[kA]) { F::filter(a, b); });
    const int row = rotate ? c : k;
    const int col = rotate ? k : c;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j) u[layout.at(i * kA + j, g, row, col)] = out[i][j];
  }
}

// Input transform: (B^T d B) of every (image n, channel, tile) to
// V[pos][g][row = n * tiles + t][col = c] (transpose: row = c, col = tile).
// One thread per tile; consecutive threads take consecutive tiles of one
// channel (the windows overlap, so their reads share cache lines).
template <typename T, int kM>
__global__ void conv_winograd_input_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                           T* __restrict__ v, WinogradGeometry geo,
                                           bool transpose, WinogradLayout layout) {
  using F = WinogradF<kM>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t total = std::int64_t(geo.N) * geo.C * image_tiles;
  const int Cg = geo.group_channels();
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t plane_index = idx / image_tiles;  // n * C + channel
    const int t = static_cast<int>(idx - plane_index * image_tiles);
    const int n = static_cast<int>(plane_index / geo.C);
    const int channel = static_cast<int>(plane_index - std::int64_t(n) * geo.C);
    const int g = channel / Cg;
    const int c = channel - g * Cg;
    const int th = t / geo.tiles_w;
    const int tw = t - th * geo.tiles_w;
    const int h0 = th * kM - geo.pad_h, w0 = tw * kM - geo.pad_w;
    const T* plane = x + plane_index * geo.H * geo.W;
    T d[kA][kA];
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      const int h = h0 + i;
      const bool row_in = h >= 0 && h < geo.H;
#pragma unroll
      for (int j = 0; j < kA; ++j) {
        const int ww = w0 + j;
        d[i][j] = row_in && ww >= 0 && ww < geo.W ? plane[std::int64_t(h) * geo.W + ww] : T(0);
      }
    }
    T out[kA][kA];
    winograd_2d(d, out, [](const T(&a)[kA], T(&b)[kA]) { F::input(a, b); });
    const std::int64_t tile = n * image_tiles + t;
    const std::int64_t row = transpose ? c : tile;
    const std::int64_t col = transpose ? tile : c;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j) v[layout.at(i * kA + j, g, row, col)] = out[i][j];
  }
}

// Output transform: y[n][g K/g + k] tile = A^T M A, + bias[k], ReLU if
// asked; M[pos][g][n * tiles + t][k]. Outputs past P, Q are dropped.
template <typename T, int kM>
__global__ void conv_winograd_output_kernel(const T* __restrict__ m, T* __restrict__ y,
                                            const T* __restrict__ bias,  // (K,) or null
                                            bool relu, WinogradGeometry geo) {
  using F = WinogradF<kM>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t total = std::int64_t(geo.N) * geo.K * image_tiles;
  const int Kg = geo.group_filters();
  const std::int64_t pos_stride = geo.tiles() * geo.K;  // [pos][g][T][Kg]: G * T * Kg
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t plane_index = idx / image_tiles;  // n * K + filter
    const int t = static_cast<int>(idx - plane_index * image_tiles);
    const int n = static_cast<int>(plane_index / geo.K);
    const int filt = static_cast<int>(plane_index - std::int64_t(n) * geo.K);
    const int g = filt / Kg;
    const int k = filt - g * Kg;
    const T* src = m + (std::int64_t(g) * geo.tiles() + n * image_tiles + t) * Kg + k;
    T acc[kA][kA];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j) acc[i][j] = src[(i * kA + j) * pos_stride];
    T out[kM][kM];
    winograd_2d(acc, out, [](const T(&a)[kA], T(&b)[kM]) { F::output(a, b); });
    const T b = bias != nullptr ? bias[filt] : T(0);
    const int th = t / geo.tiles_w;
    const int tw = t - th * geo.tiles_w;
    T* dst = y + plane_index * geo.P * geo.Q;
#pragma unroll
    for (int i = 0; i < kM; ++i) {
      const int p = th * kM + i;
      if (p >= geo.P) break;
#pragma unroll
      for (int j = 0; j < kM; ++j) {
        const int q = tw * kM + j;
        if (q >= geo.Q) break;
        T v = out[i][j] + b;
        if (relu && v < T(0)) v = T(0);
        dst[std::int64_t(p) * geo.Q + q] = v;
      }
    }
  }
}

// wgrad: (A dY A^T) of every (image n, filter, tile) of dy (N, K, P, Q) to
// dY[pos][g][k][n * tiles + t]; dy outside P, Q reads as zero.
template <typename T, int kM>
__global__ void conv_winograd_grad_kernel(const T* __restrict__ dy, T* __restrict__ out,
                                          WinogradGeometry geo, WinogradLayout layout) {
  using F = WinogradF<kM>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t total = std::int64_t(geo.N) * geo.K * image_tiles;
  const int Kg = geo.group_filters();
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t plane_index = idx / image_tiles;
    const int t = static_cast<int>(idx - plane_index * image_tiles);
    const int n = static_cast<int>(plane_index / geo.K);
    const int filt = static_cast<int>(plane_index - std::int64_t(n) * geo.K);
    const int g = filt / Kg;
    const int k = filt - g * Kg;
    const int th = t / geo.tiles_w;
    const int tw = t - th * geo.tiles_w;
    const T* plane = dy + plane_index * geo.P * geo.Q;
    T d[kM][kM];
#pragma unroll
    for (int i = 0; i < kM; ++i) {
      const int p = th * kM + i;
#pragma unroll
      for (int j = 0; j < kM; ++j) {
        const int q = tw * kM + j;
        d[i][j] = p < geo.P && q < geo.Q ? plane[std::int64_t(p) * geo.Q + q] : T(0);
      }
    }
    T tr[kA][kA];
    winograd_2d(d, tr, [](const T(&a)[kM], T(&b)[kA]) { F::grad_output(a, b); });
    const std::int64_t tile = n * image_tiles + t;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j) out[layout.at(i * kA + j, g, k, tile)] = tr[i][j];
  }
}

// wgrad: dw[g K/g + k][c] = G^T dW G, dW[pos][g][k][c].
template <typename T, int kM>
__global__ void conv_winograd_filter_grad_kernel(const T* __restrict__ m,
                                                 T* __restrict__ dw,  // (K, C/g, 3, 3)
                                                 int K, int Cg) {
  using F = WinogradF<kM>;
  constexpr int kA = F::kAlpha;
  const std::int64_t total = std::int64_t(K) * Cg;  // [g][k][c] is [filter][c]
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    T acc[kA][kA];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j) acc[i][j] = m[(i * kA + j) * total + idx];
    T out[3][3];
    winograd_2d(acc, out, [](const T(&a)[kA], T(&b)[3]) { F::filter_grad(a, b); });
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int s = 0; s < 3; ++s) dw[idx * 9 + r * 3 + s] = out[r][s];
  }
}

// The alpha^2 x groups GEMMs on the implicit-GEMM main loop: batch z = pos *
// groups + g; out[z][m][n] = sum_k a[z][m][k] b[z][n][k]; both operands rows
// of a row-major matrix (ConvRowLoader), the result written row-major.
template <typename T>
struct ConvWinogradGemmPass {
  using Scalar = T;
  using ALoader = ConvRowLoader<T, kConvOperandA>;
  using BLoader = ConvRowLoader<T, kConvOperandB>;

  ConvRowMatrix<T> a;  // rows m, group_stride = one batch's matrix
  ConvRowMatrix<T> b;  // rows n
  T* out;
  std::int64_t m;  // GEMM rows, columns and reduction per batch
  int n;
  int k;
  int batches;  // alpha^2 * groups

  __host__ __device__ __forceinline__ std::int64_t gemm_m() const { return m; }
  __host__ __device__ __forceinline__ int gemm_n() const { return n; }
  __host__ __device__ __forceinline__ int gemm_k() const { return k; }
  __host__ __device__ __forceinline__ int groups() const { return batches; }

  template <int kOperand>
  __device__ __forceinline__ ConvRowMatrix<T> rows() const {
    if constexpr (kOperand == kConvOperandA) {
      return a;
    } else {
      return b;
    }
  }
  __device__ __forceinline__ std::int64_t out_offset(int z, std::int64_t row) const {
    return (z * m + row) * n;
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return 1; }
  __device__ __forceinline__ T finish(int, int, T v) const { return v; }
};

}  // namespace dc
