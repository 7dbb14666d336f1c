// Winograd fprop (ops/conv_winograd.cu) beside the implicit GEMM on VGG-16
// shapes at batch 1, each validated against the float64 implicit GEMM, then
// timed whole and piece by piece (filter, input, GEMM, output transform), so
// a change to one piece shows where the time went. Emulator only.
// `make -C dev && dev/build/winograd [H ...]` (H: only those image sizes).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/launch.cuh"
#include "lab.h"
#include "ops/conv.h"
#include "ops/conv_fprop.cu"
#include "ops/conv_winograd.cu"

namespace {

using dc::ConvParams;

ConvParams make(int n, int c, int k, int h) {  // 3x3, stride 1, pad 1
  ConvParams p;
  p.N = n, p.C = c, p.H = h, p.W = h, p.K = k, p.R = 3, p.S = 3;
  p.stride_h = p.stride_w = 1, p.pad_h = p.pad_w = 1, p.groups = 1;
  p.P = p.Q = h;
  return p;
}

template <typename T>
std::size_t workspace_bytes(const ConvParams& p, dc::ops::ConvAlgorithm algo) {
  return dc::ops::conv2d_fprop_workspace_bytes<T>(p, algo);
}

// v1: the staged GEMM on the emulator tiles production used before the
// in-place loop (measured then, rounds interleaved): 112x64x64 (7x16 per
// thread) where 112-row blocks pad fewer rows than 128x64x64 ones (1.07-1.2x
// at 196 and 784 rows), 128x64x64 for other GEMMs of 64+ rows (1.1-1.35x the
// 3x3 variant's tiles), 64x128x64 for 33-64 rows and 128+ steps (1.3-1.45x
// the 32-deep 64-row tile), else the 3x3 variant's.
template <typename Pass>
void run_staged(const Pass& pass) {
  using namespace dc;
  using namespace dc::ops;
  constexpr ConvSplitTarget kNoSplit{1, 1 << 30};
  const auto launch_tile = [&](auto tile) {
    conv_launch_implicit_gemm<decltype(tile)>("gemm_staged", "reduce", pass, kNoSplit, nullptr,
                                              0, nullptr);
  };
  const std::int64_t m = pass.gemm_m();
  if (m > 64 && pass.gemm_k() >= 64) {
    if (rows_padded(m, 112) < rows_padded(m, 128)) {
      return launch_tile(ConvTile<112, 64, 64, 7, 16>{});
    }
    return launch_tile(ConvTile<128, 64, 64, 8, 16>{});
  }
  if (m > 32 && m <= 64 && pass.gemm_k() >= 128) {
    return launch_tile(ConvTile<64, 128, 64, 8, 16>{});
  }
  visit_conv_3x3_tile<float>(pass, "gemm_staged", [&](auto gemm, auto tile, const char* kernel) {
    conv_launch_implicit_gemm<decltype(tile)>(kernel, "reduce", gemm, kNoSplit, nullptr, 0,
                                              nullptr);
  });
}

// The F(kM) pieces of run_fprop, timed one by one on the same workspace.
template <int kM>
void pieces(const ConvParams& p, lab::Buffer<float>& x, lab::Buffer<float>& w,
            lab::Buffer<float>& y, lab::Buffer<char>& ws_buf, double gflop) {
  using namespace dc;
  using namespace dc::ops;
  constexpr int L = kLanes<float>;
  constexpr int kA = kM + 2;
  const WinogradGeometry g = geometry(p, ConvPassKind::kFprop, kM);
  const Workspace<float> ws =
      carve<float>(g, ConvPassKind::kFprop, kM, ws_buf.get(),
                   workspace_bytes<float>(p, kM == 4 ? ConvAlgorithm::kWinograd4x4
                                                     : ConvAlgorithm::kWinograd2x2),
                   "lab");
  const std::int64_t T_ = g.tiles();
  const int Cg = g.group_channels(), Kg = g.group_filters();
  const FilterLayout u = filter_layout(g);
  auto filter = [&] {
    launch(conv_winograd_filter_kernel<float, kM, L>, "filter",
           transform_config(std::int64_t(g.groups) * u.rows * lane_blocks(kFiltersInPlace ? Kg : Cg,
                                                                          L), nullptr),
           w.get(), ws.b, p.K, p.group_channels(), p.groups, false, kFiltersInPlace, u.ld);
  };
  auto input = [&] {
    launch(conv_winograd_input_kernel<float, kM, L>, "input",
           transform_config(std::int64_t(g.C) * lane_blocks(T_, L), nullptr), x.get(), ws.a, g);
  };
  // v1: the staged GEMM (operands copied through shared-memory stages by
  // the loaders; U a row per filter); v2: in place (conv_mainloop_direct).
  const std::int64_t positions = std::int64_t(kM + 2) * (kM + 2);
  lab::Buffer<float> u_rows(std::size_t(positions) * Kg * Cg);
  lab::Buffer<float> out_staged(std::size_t(positions) * T_ * Kg);
  launch(conv_winograd_filter_kernel<float, kM, L>, "filter_rows",
         transform_config(std::int64_t(g.groups) * Kg * lane_blocks(Cg, L), nullptr), w.get(),
         u_rows.get(), p.K, p.group_channels(), p.groups, false, false, Cg);
  ConvWinogradGemmPass<float, ConvRunRowLoader<float>, false> staged;
  staged.a = ConvRowMatrix<float>{ws.a, T_, T_, T_ * Cg};
  staged.b = ConvRowMatrix<float>{u_rows.get(), Kg, Cg, std::int64_t(Kg) * Cg};
  staged.out = out_staged.get();
  staged.m = T_;
  staged.n = Kg;
  staged.k = Cg;
  staged.batches = kA * kA * g.groups;
  ConvWinogradGemmPass<float, ConvRunRowLoader<float>, true> gemm;
  gemm.a = staged.a;
  gemm.b = ConvRowMatrix<float>{ws.b, u.rows, u.ld, std::int64_t(u.rows) * u.ld};
  gemm.out = ws.out;
  gemm.m = T_;
  gemm.n = Kg;
  gemm.k = Cg;
  gemm.batches = staged.batches;
  auto product = [&] { run_gemm(gemm, "gemm", nullptr); };
  auto product_staged = [&] { run_staged(staged); };
  auto output = [&] {
    launch(conv_winograd_output_kernel<float, kM, L>, "output",
           transform_config(std::int64_t(g.groups) * T_ * lane_blocks(Kg, L), nullptr), ws.out,
           y.get(), static_cast<const float*>(nullptr), false, g);
  };
  filter();
  input();
  product();
  product_staged();
  lab::synchronize();
  {
    const std::vector<float> a = out_staged.to_host();
    std::vector<float> b(a.size());
    std::memcpy(b.data(), ws.out, b.size() * sizeof(float));
    std::size_t differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    std::printf("    F(%dx%d) GEMM in place vs staged: %zu of %zu results differ\n", kM, kM, differ,
                a.size());
  }
  const double gemm_gflop = 2.0 * kA * kA * T_ * Cg * Kg / 1e9;
  const double tf = lab::median_seconds(filter, 5), ti = lab::median_seconds(input, 5);
  const double tg = lab::median_seconds(product, 5), to = lab::median_seconds(output, 5);
  const double ts = lab::median_seconds(product_staged, 5);
  std::printf("    F(%dx%d) pieces: filter %.2f ms, input %.2f ms, GEMM %.2f ms (%.1f GFLOP/s "
              "of its own %.3f GFLOP; staged %.2f ms, %.1f GFLOP/s), output %.2f ms\n",
              kM, kM, tf * 1e3, ti * 1e3, tg * 1e3, gemm_gflop / tg, gemm_gflop, ts * 1e3,
              gemm_gflop / ts, to * 1e3);
  // The in-place GEMM on other tiles, rounds interleaved (the VM is shared:
  // best of 5 each).
  auto with = [&](auto tile) {
    return [&, tile] {
      conv_launch_implicit_gemm<decltype(tile)>("gemm", "reduce", gemm, ConvSplitTarget{1, 1 << 30},
                                                nullptr, 0, nullptr);
    };
  };
  const std::function<void()> runs[] = {product,
                                        with(ConvTile<128, 64, 64, 8, 16>{}),
                                        with(ConvTile<64, 64, 64, 8, 16>{}),
                                        with(ConvTile<128, 128, 64, 8, 16>{}),
                                        with(ConvTile<64, 128, 64, 8, 16>{}),
                                        with(ConvTile<32, 64, 64, 8, 16>{}),
                                        with(ConvTile<56, 64, 64, 7, 16>{}),
                                        with(ConvTile<112, 64, 64, 7, 16>{}),
                                        with(ConvTile<112, 128, 64, 7, 16>{}),
                                        with(ConvTile<64, 64, 64, 4, 16>{}),
                                        with(ConvTile<64, 64, 64, 8, 32>{}),
                                        with(ConvTile<56, 64, 64, 14, 16>{}),
                                        with(ConvTile<112, 64, 64, 14, 16>{}),
                                        with(ConvTile<64, 128, 64, 8, 32>{})};
  const char* names[] = {"prod", "128x64", "64x64", "128x128", "64x128",
                         "32x64", "56x64(7)", "112x64(7)", "112x128(7)", "64x64(4)",
                         "64x64(8x32)", "56x64(14)", "112x64(14)", "64x128(8x32)"};
  constexpr int kRuns = sizeof(names) / sizeof(names[0]);
  double best[kRuns];
  for (double& b : best) b = 1e30;
  for (int round = 0; round < 5; ++round)
    for (int i = 0; i < kRuns; ++i) best[i] = std::min(best[i], lab::median_seconds(runs[i], 1));
  std::printf("      GEMM tiles (GFLOP/s):");
  for (int i = 0; i < kRuns; ++i) std::printf(" %s %.1f", names[i], gemm_gflop / best[i]);
  std::printf("\n");
  (void)gflop;
}

}  // namespace

int main(int argc, char** argv) {
  using dc::ops::ConvAlgorithm;
  // {C, K, H}: VGG-16's 3x3 layers after the first, batch 1
  const int shapes[][3] = {{64, 64, 224}, {64, 128, 112}, {128, 128, 112}, {128, 256, 56},
                           {256, 256, 56}, {256, 512, 28}, {512, 512, 28}, {512, 512, 14}};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (const auto& s : shapes) {
    bool wanted = argc < 2;
    for (int i = 1; i < argc; ++i) wanted = wanted || std::atoi(argv[i]) == s[2];
    if (!wanted) continue;
    const ConvParams p = make(1, s[0], s[1], s[2]);
    std::vector<float> x(std::size_t(p.N) * p.C * p.H * p.W), w(std::size_t(p.K) * p.C * 9);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    // float64 reference: the implicit GEMM's double instantiation
    std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
    lab::Buffer<double> bxd(xd), bwd(wd), byd(std::size_t(p.N) * p.K * p.P * p.Q);
    const std::size_t wsd_bytes = workspace_bytes<double>(p, ConvAlgorithm::kImplicitGemm);
    lab::Buffer<char> wsd(std::max<std::size_t>(wsd_bytes, 1));
    dc::ops::conv2d_fprop<double>(p, bxd.get(), bwd.get(), nullptr, byd.get(), false, wsd.get(),
                                  wsd_bytes, nullptr, ConvAlgorithm::kImplicitGemm);
    const std::vector<double> want = byd.to_host();
    lab::Buffer<float> bx(x), bw(w), by(want.size());
    const double gflop = double(p.fprop_flops()) / 1e9;
    std::printf("C %d K %d %dx%d, batch %d (%.3f GFLOP as direct convolution)\n", p.C, p.K, p.H,
                p.W, p.N, gflop);
    const struct {
      const char* name;
      ConvAlgorithm algo;
    } versions[] = {{"implicit_gemm", ConvAlgorithm::kImplicitGemm},
                    {"winograd_4x4", ConvAlgorithm::kWinograd4x4},
                    {"winograd_2x2", ConvAlgorithm::kWinograd2x2}};
    std::size_t most = 1;
    for (const auto& v : versions) most = std::max(most, workspace_bytes<float>(p, v.algo));
    lab::Buffer<char> ws(most);
    for (const auto& v : versions) {
      auto once = [&] {
        dc::ops::conv2d_fprop<float>(p, bx.get(), bw.get(), nullptr, by.get(), false, ws.get(),
                                     most, nullptr, v.algo);
      };
      once();
      lab::synchronize();
      if (!lab::validated(v.name, lab::relative_error(by.to_host(), want), 1e-4)) continue;
      const double seconds = lab::median_seconds(once, 5);
      std::printf("  %-14s %8.2f GFLOP/s  (%.3f ms)\n", v.name, gflop / seconds, seconds * 1e3);
    }
    pieces<4>(p, bx, bw, by, ws, gflop);
    pieces<2>(p, bx, bw, by, ws, gflop);
  }
  return 0;
}
