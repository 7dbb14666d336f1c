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
// unchanged (ConvWinogradGemmPass below, a Pass like fprop's: blockIdx.z
// covers position x group, operand A is read in runs from a reduction-major
// matrix by ConvRunRowLoader, operand B by rows by ConvRowLoader). Per output
// tile of one channel pair F(4x4) multiplies 36 times where direct
// convolution does 144.
//
// The transforms are separate kernels: inside the GEMM's loaders each input
// tile would be transformed once per position and column block, and the
// output transform needs all alpha^2 positions of a (tile, filter), which
// the GEMM computes in alpha^2 different blocks.
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
// Layouts (workspace, all row-major; g is the convolution's channel group,
// z = pos * groups + g the GEMM batch index, T = N * tiles_h * tiles_w):
//   U  [pos][g][K/g][C/g]   filter transform (dgrad: C and K swapped); the
//                           emulator's builds: [pos][g][C/g][K/g padded]
//   V  [pos][g][C/g][T]     input transform: reduction-major for fprop /
//                           dgrad (ConvRunRowLoader), rows for wgrad
//   M  [pos][g][T][K/g]     GEMM result (fprop / dgrad)
//   dY [pos][g][T][K/g]     wgrad's transformed dy, reduction-major (the
//                           emulator's builds: rows padded)
//   dW [pos][g][K/g][C/g]   wgrad's GEMM result (the emulator's builds:
//                           [pos][g][C/g][K/g], rows = channels)
// The emulator's builds read U, V and dY in place (ConvWinogradGemmPass
// kDirect, conv_mainloop_direct): reduction-major operands with rows padded
// to whole 16-wide thread tiles; a GPU stages them (ops/conv_winograd.cu).
#pragma once

#include <cstdint>

#include "common/portable.cuh"
#include "kernels/conv.cuh"

namespace dc {

// kLanes values of one type, operated on together. A transform thread
// handles kLanes neighbours along its output's contiguous dimension (channels
// or tiles): the arithmetic below is then one loop over lanes per operation,
// which g++ turns into packed instructions on the emulator (16 float lanes:
// one AVX-512 operation), and the stores are contiguous runs. The launcher
// uses 1 lane on a GPU, where neighbouring threads play that role.
template <typename T, int kLanes>
struct WinogradLanes {
  using Scalar = T;
  T v[kLanes];

  __device__ __forceinline__ friend WinogradLanes operator+(const WinogradLanes& a,
                                                            const WinogradLanes& b) {
    WinogradLanes r;
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) r.v[l] = a.v[l] + b.v[l];
    return r;
  }
  __device__ __forceinline__ friend WinogradLanes operator-(const WinogradLanes& a,
                                                            const WinogradLanes& b) {
    WinogradLanes r;
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) r.v[l] = a.v[l] - b.v[l];
    return r;
  }
  __device__ __forceinline__ friend WinogradLanes operator-(const WinogradLanes& a) {
    WinogradLanes r;
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) r.v[l] = -a.v[l];
    return r;
  }
  __device__ __forceinline__ friend WinogradLanes operator*(T c, const WinogradLanes& a) {
    WinogradLanes r;
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) r.v[l] = c * a.v[l];
    return r;
  }
};

// The 1-D transforms of F(m x m, 3x3) on V = WinogradLanes; the 2-D ones
// apply them to columns, then rows (winograd_2d). Coefficients: Lavin &
// Gray's points 0, +-1, +-2 (F4) and 0, +-1 (F2), plus infinity. Fractions
// are multiplications by rounded reciprocals (a division costs ~10x).
template <int kM>
struct WinogradF;

template <>
struct WinogradF<4> {
  static constexpr int kTile = 4;   // outputs per tile side
  static constexpr int kAlpha = 6;  // transformed tile side

  // B^T d
  template <typename V>
  __device__ __forceinline__ static void input(const V (&d)[6], V (&t)[6]) {
    using S = typename V::Scalar;
    const V d4_2 = d[4] - d[2], d3_1 = d[3] - d[1];
    t[0] = S(4) * d[0] - S(5) * d[2] + d[4];
    t[1] = d[3] + d[4] - S(4) * (d[1] + d[2]);
    t[2] = S(4) * (d[1] - d[2]) + d[4] - d[3];
    t[3] = S(2) * d3_1 + d4_2;
    t[4] = d4_2 - S(2) * d3_1;
    t[5] = S(4) * d[1] - S(5) * d[3] + d[5];
  }
  // G g
  template <typename V>
  __device__ __forceinline__ static void filter(const V (&g)[3], V (&u)[6]) {
    using S = typename V::Scalar;
    const V s02 = g[0] + g[2];
    u[0] = S(0.25) * g[0];
    u[1] = S(-1.0 / 6.0) * (s02 + g[1]);
    u[2] = S(-1.0 / 6.0) * (s02 - g[1]);
    const V a = S(1.0 / 24.0) * g[0] + S(1.0 / 6.0) * g[2];
    const V b = S(1.0 / 12.0) * g[1];
    u[3] = a + b;
    u[4] = a - b;
    u[5] = g[2];
  }
  // A^T m
  template <typename V>
  __device__ __forceinline__ static void output(const V (&m)[6], V (&o)[4]) {
    using S = typename V::Scalar;
    const V a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + S(2) * d;
    o[2] = a + S(4) * c;
    o[3] = b + S(8) * d + m[5];
  }
  // A y (wgrad: the adjoint of the output transform)
  template <typename V>
  __device__ __forceinline__ static void grad_output(const V (&y)[4], V (&t)[6]) {
    using S = typename V::Scalar;
    const V even = y[0] + y[2], odd = y[1] + y[3];
    const V even2 = y[0] + S(4) * y[2], odd2 = S(2) * y[1] + S(8) * y[3];
    t[0] = y[0];
    t[1] = even + odd;
    t[2] = even - odd;
    t[3] = even2 + odd2;
    t[4] = even2 - odd2;
    t[5] = y[3];
  }
  // G^T x (wgrad: the adjoint of the filter transform)
  template <typename V>
  __device__ __forceinline__ static void filter_grad(const V (&x)[6], V (&g)[3]) {
    using S = typename V::Scalar;
    const V s12 = x[1] + x[2], d12 = x[1] - x[2], s34 = x[3] + x[4], d34 = x[3] - x[4];
    g[0] = S(0.25) * x[0] - S(1.0 / 6.0) * s12 + S(1.0 / 24.0) * s34;
    g[1] = S(1.0 / 12.0) * d34 - S(1.0 / 6.0) * d12;
    g[2] = S(1.0 / 6.0) * (s34 - s12) + x[5];
  }
};

template <>
struct WinogradF<2> {
  static constexpr int kTile = 2;
  static constexpr int kAlpha = 4;

  template <typename V>
  __device__ __forceinline__ static void input(const V (&d)[4], V (&t)[4]) {
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
  }
  template <typename V>
  __device__ __forceinline__ static void filter(const V (&g)[3], V (&u)[4]) {
    using S = typename V::Scalar;
    const V s02 = g[0] + g[2];
    u[0] = g[0];
    u[1] = S(0.5) * (s02 + g[1]);
    u[2] = S(0.5) * (s02 - g[1]);
    u[3] = g[2];
  }
  template <typename V>
  __device__ __forceinline__ static void output(const V (&m)[4], V (&o)[2]) {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] - m[3];
  }
  template <typename V>
  __device__ __forceinline__ static void grad_output(const V (&y)[2], V (&t)[4]) {
    t[0] = y[0];
    t[1] = y[0] + y[1];
    t[2] = y[0] - y[1];
    t[3] = -y[1];
  }
  template <typename V>
  __device__ __forceinline__ static void filter_grad(const V (&x)[4], V (&g)[3]) {
    using S = typename V::Scalar;
    const V half_sum = S(0.5) * (x[1] + x[2]);
    g[0] = x[0] + half_sum;
    g[1] = S(0.5) * (x[1] - x[2]);
    g[2] = half_sum + x[3];
  }
};

// out = f(f(in) along columns) along rows: the 2-D form X^T in X of a 1-D
// transform f: V[kIn] -> V[kOut] (the matrix X^T).
template <int kIn, int kOut, typename V, typename F1>
__device__ __forceinline__ void winograd_2d(const V (&in)[kIn][kIn], V (&out)[kOut][kOut], F1 f) {
  V mid[kOut][kIn];
#pragma unroll
  for (int j = 0; j < kIn; ++j) {
    V col[kIn], t[kOut];
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

// Stores kLanes values of lane vector `val` at dst[0 .. count): contiguous,
// unmasked when the run is whole.
template <typename T, int kLanes>
__device__ __forceinline__ void winograd_store_run(T* dst, const WinogradLanes<T, kLanes>& val,
                                                   int count) {
  if (count == kLanes) {
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) dst[l] = val.v[l];
  } else {
    // unrolled too: a lane index the compiler cannot fold would put the
    // whole transformed tile in local memory under nvcc
#pragma unroll
    for (int l = 0; l < kLanes; ++l)
      if (l < count) dst[l] = val.v[l];
  }
}

template <typename T, int kLanes>
__device__ __forceinline__ void winograd_load_run(const T* src, WinogradLanes<T, kLanes>& val,
                                                  int count) {
  if (count == kLanes) {
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) val.v[l] = src[l];
  } else {
#pragma unroll
DC_HOST_UNROLL(16)
    for (int l = 0; l < kLanes; ++l) val.v[l] = l < count ? src[l] : T(0);
  }
}

// Filter transform: U = G w G^T for every (filter, channel) pair, to the
// batched GEMM's operand b: U[pos][g] is a rows x ld matrix (ld >= cols),
// a thread takes kLanes consecutive columns of one row.
//   fprop (rotate false): the filter w[g K/g + k][c]; dgrad (rotate true):
//     w[g K/g + k][c] rotated 180 degrees (the dgrad problem's filter (c, k)).
//   reduction_major false: a row per GEMM column n, U[pos][g][n][r] (the
//     staged loop's ConvRowLoader); true: a row per reduction step,
//     U[pos][g][r][n] (the emulator's direct loop; ld pads n).
// (n, r) is (k, c) for fprop and (c, k) for dgrad.
template <typename T, int kM, int kLanes>
__global__ void conv_winograd_filter_kernel(const T* __restrict__ w,  // (K, C/g, 3, 3)
                                            T* __restrict__ u, int K, int Cg, int groups,
                                            bool rotate, bool reduction_major, int ld) {
  using F = WinogradF<kM>;
  using V = WinogradLanes<T, kLanes>;
  constexpr int kA = F::kAlpha;
  const int Kg = K / groups;
  const bool k_is_col = rotate != reduction_major;  // which index of U is w's filter k
  const int rows = k_is_col ? Cg : Kg, cols = k_is_col ? Kg : Cg;
  const int col_blocks = (cols + kLanes - 1) / kLanes;
  const std::int64_t batch = std::int64_t(rows) * ld;
  const std::int64_t pos_stride = batch * groups;
  const std::int64_t total = std::int64_t(groups) * rows * col_blocks;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t grow = idx / col_blocks;  // g * rows + row
    const int col0 = static_cast<int>(idx - grow * col_blocks) * kLanes;
    const int g = static_cast<int>(grow / rows);
    const int row = static_cast<int>(grow - std::int64_t(g) * rows);
    const int count = min(kLanes, cols - col0);
    V g3[3][3];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const int col = col0 + (l < count ? l : 0);
      const int k = k_is_col ? col : row, c = k_is_col ? row : col;
      const T* src = w + ((std::int64_t(g) * Kg + k) * Cg + c) * 9;
#pragma unroll
      for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s)
          g3[r][s].v[l] = rotate ? src[(2 - r) * 3 + (2 - s)] : src[r * 3 + s];
    }
    V out[kA][kA];
    winograd_2d(g3, out, [](const V(&a)[3], V(&b)[kA]) { F::filter(a, b); });
    T* dst = u + g * batch + std::int64_t(row) * ld + col0;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j)
        winograd_store_run(dst + (i * kA + j) * pos_stride, out[i][j], count);
  }
}

// Reads the alpha x alpha window at (h0, w0) of `plane` into lane l of d.
template <int kA, typename T, int kLanes>
__device__ __forceinline__ void winograd_load_window(const T* plane, int h0, int w0, int H, int W,
                                                     int l, WinogradLanes<T, kLanes> (&d)[kA][kA]) {
#pragma unroll
  for (int i = 0; i < kA; ++i) {
    const int h = h0 + i;
    const bool row_in = h >= 0 && h < H;
    const T* src = plane + std::int64_t(h) * W;
#pragma unroll
    for (int j = 0; j < kA; ++j) {
      const int ww = w0 + j;
      d[i][j].v[l] = row_in && ww >= 0 && ww < W ? src[ww] : T(0);
    }
  }
}

// Input transform B^T d B of every (image, channel, tile) window of x (zero
// outside the image) to V[pos][g][c][n * tiles + t]: reduction-major for the
// GEMM (ConvRunRowLoader). A thread takes one channel and kLanes
// consecutive tiles.
template <typename T, int kM, int kLanes>
__global__ void conv_winograd_input_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                           T* __restrict__ v, WinogradGeometry geo) {
  using F = WinogradF<kM>;
  using V = WinogradLanes<T, kLanes>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t T_ = geo.tiles();
  const int Cg = geo.group_channels();
  const std::int64_t plane_size = std::int64_t(geo.H) * geo.W;
  const std::int64_t pos_stride = T_ * geo.C;  // [pos][g][Cg][T]
  const std::int64_t tile_blocks = (T_ + kLanes - 1) / kLanes;
  const std::int64_t total = geo.C * tile_blocks;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const int channel = static_cast<int>(idx / tile_blocks);  // g * Cg + c
    const std::int64_t tile0 = (idx - std::int64_t(channel) * tile_blocks) * kLanes;
    const int count = static_cast<int>(T_ - tile0 < kLanes ? T_ - tile0 : kLanes);
    V d[kA][kA];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const std::int64_t tile = tile0 + (l < count ? l : 0);
      const int n = static_cast<int>(tile / image_tiles);
      const int t = static_cast<int>(tile - n * image_tiles);
      const int th = t / geo.tiles_w;
      const int tw = t - th * geo.tiles_w;
      const T* plane = x + (std::int64_t(n) * geo.C + channel) * plane_size;
      winograd_load_window<kA>(plane, th * kM - geo.pad_h, tw * kM - geo.pad_w, geo.H, geo.W, l,
                               d);
    }
    V out[kA][kA];
    winograd_2d(d, out, [](const V(&a)[kA], V(&b)[kA]) { F::input(a, b); });
    T* dst = v + std::int64_t(channel) * T_ + tile0;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j)
        winograd_store_run(dst + (i * kA + j) * pos_stride, out[i][j], count);
  }
}

// Output transform: y[n][g K/g + k] tile = A^T M A (+ bias[k], ReLU if
// asked) from M[pos][g][n * tiles + t][k]; a thread takes one tile and
// kLanes consecutive k. Outputs past P, Q are dropped.
template <typename T, int kM, int kLanes>
__global__ void conv_winograd_output_kernel(const T* __restrict__ m, T* __restrict__ y,
                                            const T* __restrict__ bias,  // (K,) or null
                                            bool relu, WinogradGeometry geo) {
  using F = WinogradF<kM>;
  using V = WinogradLanes<T, kLanes>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t T_ = geo.tiles();
  const int Kg = geo.group_filters();
  const int k_blocks = (Kg + kLanes - 1) / kLanes;
  const std::int64_t pos_stride = T_ * geo.K;  // [pos][g][T][Kg]
  const std::int64_t total = geo.groups * T_ * k_blocks;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t gtile = idx / k_blocks;  // g * T + tile
    const int k0 = static_cast<int>(idx - gtile * k_blocks) * kLanes;
    const int g = static_cast<int>(gtile / T_);
    const std::int64_t tile = gtile - g * T_;
    const int count = min(kLanes, Kg - k0);
    const T* src = m + gtile * Kg + k0;
    V acc[kA][kA];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j)
        winograd_load_run(src + (i * kA + j) * pos_stride, acc[i][j], count);
    V out[kM][kM];
    winograd_2d(acc, out, [](const V(&a)[kA], V(&b)[kM]) { F::output(a, b); });
    const int n = static_cast<int>(tile / image_tiles);
    const int t = static_cast<int>(tile - n * image_tiles);
    const int th = t / geo.tiles_w;
    const int tw = t - th * geo.tiles_w;
    const int rows = min(kM, geo.P - th * kM), cols = min(kM, geo.Q - tw * kM);
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      if (l >= count) break;
      const int filt = g * Kg + k0 + l;
      const T b = bias != nullptr ? bias[filt] : T(0);
      T* dst = y + ((std::int64_t(n) * geo.K + filt) * geo.P + th * kM) * geo.Q + tw * kM;
#pragma unroll
      for (int i = 0; i < kM; ++i) {
        if (i >= rows) break;
#pragma unroll
        for (int j = 0; j < kM; ++j) {
          if (j >= cols) break;
          T val = out[i][j].v[l] + b;
          if (relu && val < T(0)) val = T(0);
          dst[std::int64_t(i) * geo.Q + j] = val;
        }
      }
    }
  }
}

// wgrad: A dY A^T of every (image, filter, tile) of dy (N, K, P, Q), zero
// past P, Q, to dY[pos][g][n * tiles + t][k], rows ld >= K/g long:
// reduction-major for the GEMM. A thread takes one tile and kLanes
// consecutive k.
template <typename T, int kM, int kLanes>
__global__ void conv_winograd_grad_kernel(const T* __restrict__ dy, T* __restrict__ out,
                                          WinogradGeometry geo, int ld) {
  using F = WinogradF<kM>;
  using V = WinogradLanes<T, kLanes>;
  constexpr int kA = F::kAlpha;
  const std::int64_t image_tiles = geo.image_tiles();
  const std::int64_t T_ = geo.tiles();
  const int Kg = geo.group_filters();
  const int k_blocks = (Kg + kLanes - 1) / kLanes;
  const std::int64_t pos_stride = T_ * geo.groups * ld;  // [pos][g][T][ld]
  const std::int64_t plane_size = std::int64_t(geo.P) * geo.Q;
  const std::int64_t total = geo.groups * T_ * k_blocks;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t gtile = idx / k_blocks;  // g * T + tile
    const int k0 = static_cast<int>(idx - gtile * k_blocks) * kLanes;
    const int g = static_cast<int>(gtile / T_);
    const std::int64_t tile = gtile - g * T_;
    const int count = min(kLanes, Kg - k0);
    const int n = static_cast<int>(tile / image_tiles);
    const int t = static_cast<int>(tile - n * image_tiles);
    const int th = t / geo.tiles_w;
    const int tw = t - th * geo.tiles_w;
    const int rows = min(kM, geo.P - th * kM), cols = min(kM, geo.Q - tw * kM);
    V d[kM][kM];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const int filt = g * Kg + k0 + (l < count ? l : 0);
      const T* src = dy + (std::int64_t(n) * geo.K + filt) * plane_size +
                     std::int64_t(th * kM) * geo.Q + tw * kM;
#pragma unroll
      for (int i = 0; i < kM; ++i)
#pragma unroll
        for (int j = 0; j < kM; ++j)
          d[i][j].v[l] = i < rows && j < cols ? src[std::int64_t(i) * geo.Q + j] : T(0);
    }
    V tr[kA][kA];
    winograd_2d(d, tr, [](const V(&a)[kM], V(&b)[kA]) { F::grad_output(a, b); });
    T* dst = out + gtile * ld + k0;
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j)
        winograd_store_run(dst + (i * kA + j) * pos_stride, tr[i][j], count);
  }
}

// wgrad: dw[g K/g + k][c] = G^T dW G from the GEMM's result dW, per
// position either [pos][g][k][c] (channel_major false: a thread takes one
// filter and kLanes consecutive c) or [pos][g][c][k] (true: one channel and
// kLanes consecutive k), so a thread always reads contiguous runs.
template <typename T, int kM, int kLanes>
__global__ void conv_winograd_filter_grad_kernel(const T* __restrict__ m,
                                                 T* __restrict__ dw,  // (K, C/g, 3, 3)
                                                 int K, int Cg, int groups, bool channel_major) {
  using F = WinogradF<kM>;
  using V = WinogradLanes<T, kLanes>;
  constexpr int kA = F::kAlpha;
  const int Kg = K / groups;
  const int rows = channel_major ? Cg : Kg, cols = channel_major ? Kg : Cg;  // per group
  const int col_blocks = (cols + kLanes - 1) / kLanes;
  const std::int64_t pos_stride = std::int64_t(K) * Cg;
  const std::int64_t total = std::int64_t(groups) * rows * col_blocks;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += std::int64_t(blockDim.x) * gridDim.x) {
    const std::int64_t grow = idx / col_blocks;  // g * rows + row
    const int col0 = static_cast<int>(idx - grow * col_blocks) * kLanes;
    const int g = static_cast<int>(grow / rows);
    const int row = static_cast<int>(grow - std::int64_t(g) * rows);
    const int count = min(kLanes, cols - col0);
    const T* src = m + grow * cols + col0;
    V acc[kA][kA];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kA; ++j)
        winograd_load_run(src + (i * kA + j) * pos_stride, acc[i][j], count);
    V out[3][3];
    winograd_2d(acc, out, [](const V(&a)[kA], V(&b)[3]) { F::filter_grad(a, b); });
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      if (l >= count) break;
      const int k = channel_major ? col0 + l : row, c = channel_major ? row : col0 + l;
      T* dst = dw + ((std::int64_t(g) * Kg + k) * Cg + c) * 9;
#pragma unroll
      for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s) dst[r * 3 + s] = out[r][s].v[l];
    }
  }
}

// Operand A of a GEMM stored reduction-major (a ConvRowMatrix whose rows
// are reduction steps and whose columns are the GEMM rows m): a thread
// copies a run of kCount consecutive m of one reduction step
// (ConvTileLoadRuns), contiguous on both sides, where a row-per-thread
// loader would scatter kCount values across the shared tile.
template <typename T>
struct ConvRunRowLoader {
  static constexpr bool kRuns = true;
  const T* run;  // the batch's matrix at column m_first
  std::int64_t count;  // columns left from m_first (<= 0: none)
  std::int64_t step;   // elements between reduction steps

  template <typename Pass>
  __device__ __forceinline__ void init(const Pass& pass, int group, std::int64_t m) {
    const ConvRowMatrix<T> mat = pass.template rows<kConvOperandA>();
    count = mat.rows - m;
    step = mat.row_stride;
    run = mat.data + group * mat.group_stride + (count > 0 ? m : 0);
  }

  template <typename Pass, int kCount>
  __device__ __forceinline__ void load(const Pass&, int k, int k_end, T (&out)[kCount]) const {
    const T* src = run + k * step;
    if (k < k_end && count >= kCount) {
#pragma unroll
DC_HOST_UNROLL(16)
      for (int i = 0; i < kCount; ++i) out[i] = src[i];
    } else {
#pragma unroll
      for (int i = 0; i < kCount; ++i) out[i] = k < k_end && i < count ? src[i] : T(0);
    }
  }

  // The same run by cp.async (the sm_80+ ring), element i to
  // dst[i * dst_stride], zeros where load() gives them.
  static constexpr bool kAsync = true;
  template <int kCount, typename Pass>
  __device__ __forceinline__ void copy_async(const Pass&, int k, int k_end, T* dst,
                                             int dst_stride) const {
    const T* src = run + k * step;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      conv_copy_element_async(dst + i * dst_stride, k < k_end && i < count ? src + i : nullptr,
                              run);
    }
  }
};

// The alpha^2 x groups GEMMs on the implicit-GEMM main loop: batch z = pos *
// groups + g; out[z][m][n] = sum_k a(z, m, k) b[z][n][k], written row-major.
// b is read by rows (ConvRowLoader); a either by rows too (a[z][m][k]:
// ConvRowLoader) or reduction-major (a[z][k][m]: ConvRunRowLoader).
template <typename T, typename ALoaderT, bool kInPlace = false>
struct ConvWinogradGemmPass {
  using Scalar = T;
  // Always fp32 FMAs, even under set_conv_precision("tf32"): the transformed
  // operands rounded to TF32 gave 8e-3 of the largest output for F(4x4) (the
  // implicit GEMM's TF32: 3e-4), more than TF32's users expect.
  static constexpr bool kAllowTf32 = false;
  using ALoader = ALoaderT;
  using BLoader = ConvRowLoader<T, kConvOperandB>;

  ConvRowMatrix<T> a;  // group_stride = one batch's matrix
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
  // kInPlace: on the emulator's own builds the GEMM reads both operands in
  // place (conv_mainloop_direct): a as its loader would (reduction-major
  // runs, or rows), and b reduction-major, b(k, n) = b.data[k * b.row_stride
  // + n], its rows padded to a multiple of 16 columns (the launcher lays the
  // operand out so: ops/conv_winograd.cu).
  static constexpr bool kDirect = kInPlace && !DC_GPU_CONFIG;
  __device__ __forceinline__ ConvDirectOperand<T> direct_a(int z) const {
    const T* data = a.data + z * a.group_stride;
    if constexpr (ALoaderT::kRuns) return {data, a.rows, 1, a.row_stride};
    return {data, a.rows, a.row_stride, 1};
  }
  __device__ __forceinline__ ConvDirectOperand<T> direct_b(int z) const {
    return {b.data + z * b.group_stride, b.row_stride, 1, b.row_stride};
  }
  __device__ __forceinline__ std::int64_t out_offset(int z, std::int64_t row) const {
    return (z * m + row) * n;
  }
  __device__ __forceinline__ std::int64_t out_stride() const { return 1; }
  __device__ __forceinline__ T finish(int, int, T v) const { return v; }
};

}  // namespace dc
