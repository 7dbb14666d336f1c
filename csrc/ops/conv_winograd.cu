// Launchers of the Winograd convolutions (kernels/conv_winograd.cuh): three
// transform kernels around one batched GEMM on the implicit-GEMM main loop
// (conv_launch_implicit_gemm with ConvWinogradGemmPass, the 3x3 variant's
// tiles from ops/conv_tiles.cuh), and the rule that picks them.
//
// Transforms run as separate kernels (why: kernels/conv_winograd.cuh). Each
// transform thread handles kLanes neighbours (16 floats on the emulator).
//
// Numerics, float32 against float64 (x, w, dy standard normal; VGG-like
// layers of 32-128 channels): max |error| of an output relative to the
// Cauchy-Schwarz bound of that output, ||x window|| * ||w filter|| (fprop;
// dgrad: ||dy window|| * ||w column||; wgrad: ||x channel|| * ||dy channel||):
//                   fprop    dgrad    wgrad
//   implicit GEMM   1.9e-7   1.9e-7   1.7e-7
//   F(2x2,3x3)      6.1e-8   6.6e-8   1.1e-7
//   F(4x4,3x3)      1.3e-6   1.3e-6   8.0e-7
// F(4x4) loses about 3 bits to its transforms (the 1/6, 1/24 filter
// coefficients, the output weights up to 8): ~20 float32 ulps of the bound,
// far below SGD's noise (deepconv train --data digits reaches the same
// accuracy with it). float64 (gradient checks) stays at ~1e-15.
//
// The auto rule (conv_winograd_tile), measured on the emulator (2-core
// Zen 4 shared with other jobs, +-30% between runs) with the GEMMs in place
// (conv_mainloop_direct), ms per call fprop / dgrad / wgrad, batch N, C->K
// at H x H; T2 / T4 = tiles of F(2x2) / F(4x4) over the batch:
//   - RGB input (C < 16): fprop keeps the implicit GEMM (3->64 at 32,
//     N 16: 3.06 against F(4x4)'s 3.38; VGG's conv1_1 at 224: 19 against
//     14 GFLOP/s), but dgrad and wgrad go Winograd (wgrad 6.07 -> 2.77,
//     dgrad 12.2 -> 5.5). dgrad needs 16+ filters (its reduction).
//   - F(4x4) with >= 16 of its tiles, outputs >= 8 on a side, and either
//     >= 48 tiles or K*C <= 128*128 per group (below that, writing its
//     36 K*C transformed filters outweighs the GEMM it saves): 64->128 at 8,
//     N 4 (T4 16): implicit 0.55 / 0.89 / 1.18, F(2x2) 0.61 / 0.64 / 0.63,
//     F(4x4) 0.48 / 0.48 / 0.60; every layer of 16x16 and up at N 16 the
//     same way (64->64 at 32: 12.6 / 13.7 / 52.8 -> 7.8 / 7.1 / 5.9);
//     VGG-16's 224..28 layers at N 1 (conv3x3.py: 1.2-1.7x PyTorch CPU).
//   - else F(2x2) with >= 16 of its tiles: 512->512 at 4, N 16 (T2 64):
//     implicit 17.5 / 20.5 / 26.3, F(2x2) 7.4 / 8.8 / 9.2, F(4x4) 13.4 /
//     12.2 / 13.9; 256->256 at 2, N 16 (T2 16): 1.72 / 2.18 / 2.44 ->
//     1.14 / 1.09 / 1.43; 128->128 at 8, N 1 (T2 16): 0.61 / 0.88 / 0.76
//     -> 0.46 / 0.52 / 0.55.
//   - else the implicit GEMM: 256->256 at 4, N 1 (T2 4): 0.61 / 0.85 / 1.28
//     against F(2x2)'s 0.96 / 1.02 / 0.97 (the filter transform, 16 K*C,
//     is most of it).
// On a GPU build no measurement exists yet, so auto keeps the implicit GEMM
// there (winograd runs when asked for).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "kernels/conv_winograd.cuh"
#include "ops/conv.h"
#include "ops/conv_tiles.cuh"
#include "ops/conv_winograd.h"

namespace dc::ops {
namespace {

constexpr int kTransformThreads = 256;
constexpr std::int64_t kTransformMaxBlocks = 4096;
constexpr std::size_t kAlign = 256;  // every workspace buffer starts on this

// Tiles that fill F(4x4)'s GEMMs (the auto rule, conv_winograd_tile; also
// what "winograd" without a tile size goes by).
constexpr std::int64_t kAutoMinTiles = 48;

// Output tiles of F(m x m, 3x3) over the whole batch.
std::int64_t winograd_tiles(const ConvParams& p, int m) {
  return std::int64_t(p.N) * ((p.P + m - 1) / m) * ((p.Q + m - 1) / m);
}

std::size_t align_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

int alpha_of(int tile) { return tile + 2; }

// The tile grid of the (pseudo-)fprop that a pass runs: fprop itself; dgrad
// as the fprop of dy (C and K swapped, H x W <-> P x Q, padding 2 - pad);
// wgrad over fprop's tiles.
WinogradGeometry geometry(const ConvParams& p, ConvPassKind pass, int tile) {
  WinogradGeometry g;
  g.N = p.N;
  g.groups = p.groups;
  if (pass == ConvPassKind::kDgrad) {
    g.C = p.K, g.H = p.P, g.W = p.Q;
    g.K = p.C, g.P = p.H, g.Q = p.W;
    g.pad_h = 2 - p.pad_h, g.pad_w = 2 - p.pad_w;
  } else {
    g.C = p.C, g.H = p.H, g.W = p.W;
    g.K = p.K, g.P = p.P, g.Q = p.Q;
    g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  }
  g.tiles_h = (g.P + tile - 1) / tile;
  g.tiles_w = (g.Q + tile - 1) / tile;
  return g;
}

// fprop and dgrad's GEMM operand U (the transformed filters), per position
// and group: rows x ld. The emulator's builds read it in place
// (ConvWinogradGemmPass::kDirect), reduction-major, rows padded to whole
// 16-column thread tiles (kernels/conv.cuh ConvDirectOperand); a GPU stages
// it through its loaders, a row per GEMM column n.
constexpr bool kFiltersInPlace =
    ConvWinogradGemmPass<float, ConvRunRowLoader<float>, true>::kDirect;
// The kThreadN of run_gemm's in-place tiles (16 floats: one AVX-512 FMA
// per row and step).
constexpr int kInPlaceColumns = 16;
struct FilterLayout {
  int rows, ld;
};
FilterLayout filter_layout(const WinogradGeometry& g) {
  const int Kg = g.group_filters(), Cg = g.group_channels();  // GEMM n, reduction
  if (kFiltersInPlace) {
    return {Cg, (Kg + kInPlaceColumns - 1) / kInPlaceColumns * kInPlaceColumns};
  }
  return {Kg, Cg};
}

// wgrad's transformed dy, per position, group and tile: a row of ld >= K/g
// filters; padded like U when its GEMM runs in place.
constexpr bool kWgradInPlace =
    ConvWinogradGemmPass<float, ConvRowLoader<float, kConvOperandA>, true>::kDirect;
int grad_row_length(const WinogradGeometry& g) {
  const int Kg = g.group_filters();
  return kWgradInPlace ? (Kg + kInPlaceColumns - 1) / kInPlaceColumns * kInPlaceColumns : Kg;
}

// The element counts of the three workspace buffers (operand A, operand B,
// GEMM result) of a pass, in GEMM order.
struct WinogradBuffers {
  std::int64_t a, b, out;
};

WinogradBuffers buffer_elements(const WinogradGeometry& g, ConvPassKind pass, int tile) {
  const std::int64_t positions = std::int64_t(alpha_of(tile)) * alpha_of(tile);
  const std::int64_t T = g.tiles();
  const std::int64_t filters = std::int64_t(g.K) * g.group_channels();  // K * C/g
  if (pass == ConvPassKind::kWgrad) {
    return {positions * g.groups * T * grad_row_length(g), positions * g.C * T,
            positions * filters};
  }
  const FilterLayout u = filter_layout(g);
  return {positions * T * g.C, positions * g.groups * u.rows * u.ld, positions * T * g.K};
}

template <typename T>
std::size_t workspace_bytes_for(const WinogradGeometry& g, ConvPassKind pass, int tile) {
  const WinogradBuffers e = buffer_elements(g, pass, tile);
  return align_up(e.a * sizeof(T)) + align_up(e.b * sizeof(T)) + align_up(e.out * sizeof(T));
}

template <typename T>
struct Workspace {
  T* a;
  T* b;
  T* out;
};

template <typename T>
Workspace<T> carve(const WinogradGeometry& g, ConvPassKind pass, int tile, void* workspace,
                   std::size_t bytes, const char* op) {
  if (bytes < workspace_bytes_for<T>(g, pass, tile)) {
    throw std::invalid_argument(std::string(op) + ": workspace too small");
  }
  const WinogradBuffers e = buffer_elements(g, pass, tile);
  char* base = static_cast<char*>(workspace);
  Workspace<T> ws;
  ws.a = reinterpret_cast<T*>(base);
  base += align_up(e.a * sizeof(T));
  ws.b = reinterpret_cast<T*>(base);
  base += align_up(e.b * sizeof(T));
  ws.out = reinterpret_cast<T*>(base);
  return ws;
}

LaunchConfig transform_config(std::int64_t threads, Stream s) {
  return LaunchConfig{dim3(blocks_for(threads, kTransformThreads, kTransformMaxBlocks)),
                      dim3(kTransformThreads), 0, s};
}

// GEMM rows a tile of `block` rows computes for m of them (the rest is padding).
inline std::int64_t rows_padded(std::int64_t m, std::int64_t block) {
  return (m + block - 1) / block * block;
}

// The batched GEMMs; never split (alpha^2 x groups batches already give
// 16-36x the blocks of one GEMM). A GPU stages them on the 3x3 variant's
// tiles. The emulator's builds run them in place (conv_mainloop_direct):
// 64 columns, and rows in 7- or 8-row thread tiles, whichever pads fewer
// rows (VGG's tile counts are 49 * 4^j), measured in dev/winograd (the
// in-place GEMM alone, rounds interleaved, 2 cores under load): F(4x4) at
// 28x28 (49 rows) 56x64 blocks 58-62 GFLOP/s against 49-52 for 64x128; at
// 56x56 (196 rows) 112x64 and 128x64 within noise (54-81); 8x32 and 14x16
// thread tiles 20-60% slower than 7x16 / 8x16 everywhere. (The staged
// GEMM's emulator tiles, measured before, are the lab's v1.)
template <typename T, typename Loader, bool kInPlace>
void run_gemm(const ConvWinogradGemmPass<T, Loader, kInPlace>& pass, const char* name, Stream s) {
  constexpr ConvSplitTarget kNoSplit{1, 1 << 30};
  const auto launch_tile = [&](auto tile) {
    conv_launch_implicit_gemm<decltype(tile)>(name, "conv2d_winograd_split_reduce", pass,
                                              kNoSplit, nullptr, 0, s);
  };
  if constexpr (ConvWinogradGemmPass<T, Loader, kInPlace>::kDirect) {
    const std::int64_t m = pass.gemm_m();
    if (m > 64) {
      if (rows_padded(m, 112) < rows_padded(m, 128)) {
        return launch_tile(ConvTile<112, 64, 64, 7, kInPlaceColumns>{});
      }
      return launch_tile(ConvTile<128, 64, 64, 8, kInPlaceColumns>{});
    }
    if (m > 32) {
      if (rows_padded(m, 56) < rows_padded(m, 64)) {
        return launch_tile(ConvTile<56, 64, 64, 7, kInPlaceColumns>{});
      }
      return launch_tile(ConvTile<64, 64, 64, 8, kInPlaceColumns>{});
    }
    return launch_tile(ConvTile<32, 64, 64, 8, kInPlaceColumns>{});
  } else {
    visit_conv_3x3_tile<T>(pass, name, [&](auto gemm, auto tile, const char* kernel) {
      conv_launch_implicit_gemm<decltype(tile)>(kernel, "conv2d_winograd_split_reduce", gemm,
                                                kNoSplit, nullptr, 0, s);
    });
  }
}

// Lanes per transform thread (kernels/conv_winograd.cuh): one 512-bit
// vector on the emulator, 1 on a GPU (neighbouring threads coalesce there).
#if DC_GPU_CONFIG
template <typename T>
constexpr int kLanes = 1;
#else
template <typename T>
constexpr int kLanes = 64 / sizeof(T);
#endif

std::int64_t lane_blocks(std::int64_t n, int lanes) { return (n + lanes - 1) / lanes; }

// fprop and dgrad: y = conv(x, w) over geometry g (dgrad: x = dy, y = dx,
// the filters read rotated); w is always the layer's (K, C/g, 3, 3).
template <typename T, int kM>
void run_fprop(const ConvParams& p, const WinogradGeometry& g, ConvPassKind pass, const T* x,
               const T* w, const T* bias, T* y, bool relu, void* workspace, std::size_t bytes,
               Stream s, const char* op) {
  constexpr int kA = kM + 2;
  constexpr int L = kLanes<T>;
  const Workspace<T> ws = carve<T>(g, pass, kM, workspace, bytes, op);
  const std::int64_t T_ = g.tiles();
  const int Cg = g.group_channels(), Kg = g.group_filters();
  const FilterLayout u = filter_layout(g);
  const int u_cols = kFiltersInPlace ? Kg : Cg;
  launch(conv_winograd_filter_kernel<T, kM, L>, "conv2d_winograd_filter_transform",
         transform_config(std::int64_t(g.groups) * u.rows * lane_blocks(u_cols, L), s), w, ws.b,
         p.K, p.group_channels(), p.groups, pass == ConvPassKind::kDgrad, kFiltersInPlace, u.ld);
  launch(conv_winograd_input_kernel<T, kM, L>, "conv2d_winograd_input_transform",
         transform_config(std::int64_t(g.C) * lane_blocks(T_, L), s), x, ws.a, g);
  ConvWinogradGemmPass<T, ConvRunRowLoader<T>, kFiltersInPlace> gemm;  // one GPU kernel with wgrad
  gemm.a = ConvRowMatrix<T>{ws.a, T_, T_, T_ * Cg};  // V[pos][g][c][tile]: runs of tiles
  gemm.b = ConvRowMatrix<T>{ws.b, u.rows, u.ld, std::int64_t(u.rows) * u.ld};
  gemm.out = ws.out;
  gemm.m = T_;
  gemm.n = Kg;
  gemm.k = Cg;
  gemm.batches = kA * kA * g.groups;
  run_gemm(gemm, "conv2d_winograd_gemm", s);
  launch(conv_winograd_output_kernel<T, kM, L>, "conv2d_winograd_output_transform",
         transform_config(std::int64_t(g.groups) * T_ * lane_blocks(Kg, L), s), ws.out, y, bias,
         relu, g);
}

// wgrad's GEMM reduces over tiles. On a GPU (staged): rows m = filters,
// a = dY (runs of filters), b = V by rows (channels), result dW[k][c]. In
// place (the emulator's builds): rows m = channels, a = V by rows, b = dY
// reduction-major with rows padded to whole thread tiles, result dW[c][k];
// the filter-grad transform reads either.
template <typename T, int kM>
void run_wgrad(const ConvParams& p, const T* x, const T* dy, T* dw, void* workspace,
               std::size_t bytes, Stream s) {
  constexpr int kA = kM + 2;
  constexpr int L = kLanes<T>;
  const WinogradGeometry g = geometry(p, ConvPassKind::kWgrad, kM);
  const Workspace<T> ws = carve<T>(g, ConvPassKind::kWgrad, kM, workspace, bytes,
                                   "conv2d_wgrad");
  const std::int64_t T_ = g.tiles();
  const int Cg = g.group_channels(), Kg = g.group_filters();
  const int dy_ld = grad_row_length(g);
  launch(conv_winograd_grad_kernel<T, kM, L>, "conv2d_winograd_grad_transform",
         transform_config(std::int64_t(g.groups) * T_ * lane_blocks(Kg, L), s), dy, ws.a, g,
         dy_ld);
  launch(conv_winograd_input_kernel<T, kM, L>, "conv2d_winograd_input_transform",
         transform_config(std::int64_t(g.C) * lane_blocks(T_, L), s), x, ws.b, g);
  // dY[pos][g][tile][k]: runs of Kg filters (rows of dy_ld) per tile
  const ConvRowMatrix<T> dy_t{ws.a, Kg, dy_ld, T_ * dy_ld};
  const ConvRowMatrix<T> v_t{ws.b, Cg, T_, T_ * Cg};         // V[pos][g][c][tile]
  const auto run = [&](auto gemm, bool channel_major) {
    gemm.out = ws.out;
    gemm.k = static_cast<int>(T_);
    gemm.batches = kA * kA * g.groups;
    run_gemm(gemm, "conv2d_winograd_wgrad_gemm", s);
    launch(conv_winograd_filter_grad_kernel<T, kM, L>, "conv2d_winograd_filter_grad_transform",
           transform_config(std::int64_t(g.groups) * (channel_major ? Cg * lane_blocks(Kg, L)
                                                                    : Kg * lane_blocks(Cg, L)),
                            s),
           ws.out, dw, p.K, Cg, p.groups, channel_major);
  };
  if constexpr (kWgradInPlace) {
    ConvWinogradGemmPass<T, ConvRowLoader<T, kConvOperandA>, true> gemm;
    gemm.a = v_t;
    gemm.b = dy_t;
    gemm.m = Cg;
    gemm.n = Kg;
    run(gemm, true);
  } else {
    ConvWinogradGemmPass<T, ConvRunRowLoader<T>> gemm;
    gemm.a = dy_t;  // runs of filters
    gemm.b = v_t;
    gemm.m = Kg;
    gemm.n = Cg;
    run(gemm, false);
  }
}

void require_tile(int tile, const char* op) {
  if (tile != 2 && tile != 4) {
    throw std::invalid_argument(std::string(op) + ": Winograd tile must be 2 or 4");
  }
}

}  // namespace

std::string conv_winograd_unsupported(const ConvParams& p) {
  if (p.R != 3 || p.S != 3) return "the filter is not 3x3";
  if (p.stride_h != 1 || p.stride_w != 1) return "the stride is not 1";
  if (p.pad_h > 2 || p.pad_w > 2) return "the padding is larger than 2";
  return "";
}

int conv_winograd_tile(const ConvParams& p, ConvPassKind pass, ConvAlgorithm algo, const char* op) {
  if (algo == ConvAlgorithm::kImplicitGemm) return 0;
  const std::string why = conv_winograd_unsupported(p);
  if (algo != ConvAlgorithm::kAuto) {  // winograd, named
    if (!why.empty()) {
      throw std::invalid_argument(std::string(op) + ": algorithm 'winograd' cannot run this "
                                  "problem: " + why + " (it needs a 3x3 filter, stride 1, "
                                  "padding <= 2)");
    }
    if (algo == ConvAlgorithm::kWinograd4x4) return 4;
    if (algo == ConvAlgorithm::kWinograd2x2) return 2;
    return winograd_tiles(p, 4) >= kAutoMinTiles ? 4 : 2;
  }
  if (!why.empty()) return 0;
  // Under TF32 (set_conv_precision) `auto` keeps the implicit GEMM, whose
  // tensor-core path is what a GPU runs: Winograd's GEMMs stay in fp32
  // (ConvWinogradGemmPass::kAllowTf32), since its transforms amplify TF32's
  // operand rounding (F(4x4): 8e-3 of the largest output against 3e-4 for the
  // implicit GEMM, measured on a 32->24 channel 12x12 layer).
  if (conv_precision() == ConvPrecision::kTf32) return 0;
#if DC_GPU_CONFIG
  (void)pass;
  return 0;  // no GPU measurement yet: the implicit GEMM stays the default there
#else
  // The emulator's rule (measured, see the top of this file).
  constexpr int kAutoMinChannels = 16;
  constexpr int kAutoMinSide4 = 8;  // outputs per image side for F(4x4)
  constexpr std::int64_t kAutoMinTilesEach = 16;
  constexpr std::int64_t kAutoSmallFilters = 128 * 128;  // K * C per group
  if (pass == ConvPassKind::kFprop && p.group_channels() < kAutoMinChannels) return 0;
  if (p.group_filters() < kAutoMinChannels) return 0;
  const std::int64_t tiles4 = winograd_tiles(p, 4);
  const bool few_filters =
      std::int64_t(p.group_filters()) * p.group_channels() <= kAutoSmallFilters;
  if (p.P >= kAutoMinSide4 && p.Q >= kAutoMinSide4 && tiles4 >= kAutoMinTilesEach &&
      (tiles4 >= kAutoMinTiles || few_filters)) {
    return 4;
  }
  if (winograd_tiles(p, 2) >= kAutoMinTilesEach) return 2;
  return 0;
#endif
}

std::string conv2d_winograd_variant(int tile) {
  return tile == 2 ? "winograd_2x2" : "winograd_4x4";
}

template <typename T>
std::size_t conv2d_winograd_workspace_bytes(const ConvParams& p, ConvPassKind pass, int tile) {
  require_tile(tile, "conv2d_winograd");
  return workspace_bytes_for<T>(geometry(p, pass, tile), pass, tile);
}

template <typename T>
void conv2d_fprop_winograd(const ConvParams& p, int tile, const T* x, const T* w, const T* b,
                           T* y, bool relu, void* workspace, std::size_t workspace_bytes,
                           Stream s) {
  require_tile(tile, "conv2d_fprop");
  const WinogradGeometry g = geometry(p, ConvPassKind::kFprop, tile);
  if (tile == 4) {
    run_fprop<T, 4>(p, g, ConvPassKind::kFprop, x, w, b, y, relu, workspace, workspace_bytes,
                    s, "conv2d_fprop");
  } else {
    run_fprop<T, 2>(p, g, ConvPassKind::kFprop, x, w, b, y, relu, workspace, workspace_bytes,
                    s, "conv2d_fprop");
  }
}

template <typename T>
void conv2d_dgrad_winograd(const ConvParams& p, int tile, const T* dy, const T* w, T* dx,
                           void* workspace, std::size_t workspace_bytes, Stream s) {
  require_tile(tile, "conv2d_dgrad");
  const WinogradGeometry g = geometry(p, ConvPassKind::kDgrad, tile);
  if (tile == 4) {
    run_fprop<T, 4>(p, g, ConvPassKind::kDgrad, dy, w, static_cast<const T*>(nullptr), dx,
                    false, workspace, workspace_bytes, s, "conv2d_dgrad");
  } else {
    run_fprop<T, 2>(p, g, ConvPassKind::kDgrad, dy, w, static_cast<const T*>(nullptr), dx,
                    false, workspace, workspace_bytes, s, "conv2d_dgrad");
  }
}

template <typename T>
void conv2d_wgrad_winograd(const ConvParams& p, int tile, const T* x, const T* dy, T* dw,
                           void* workspace, std::size_t workspace_bytes, Stream s) {
  require_tile(tile, "conv2d_wgrad");
  if (tile == 4) {
    run_wgrad<T, 4>(p, x, dy, dw, workspace, workspace_bytes, s);
  } else {
    run_wgrad<T, 2>(p, x, dy, dw, workspace, workspace_bytes, s);
  }
}

#define DC_CONV_WINOGRAD_INSTANTIATE(T)                                                          \
  template void conv2d_fprop_winograd<T>(const ConvParams&, int, const T*, const T*, const T*, \
                                         T*, bool, void*, std::size_t, Stream);                \
  template void conv2d_dgrad_winograd<T>(const ConvParams&, int, const T*, const T*, T*,       \
                                         void*, std::size_t, Stream);                          \
  template void conv2d_wgrad_winograd<T>(const ConvParams&, int, const T*, const T*, T*,       \
                                         void*, std::size_t, Stream);                          \
  template std::size_t conv2d_winograd_workspace_bytes<T>(const ConvParams&, ConvPassKind, int);
DC_CONV_WINOGRAD_INSTANTIATE(float)
DC_CONV_WINOGRAD_INSTANTIATE(double)
#undef DC_CONV_WINOGRAD_INSTANTIATE

}  // namespace dc::ops
