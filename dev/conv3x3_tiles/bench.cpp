// Tile sizes of the 3x3 conv passes on CIFAR-sized images (benchmarks/conv3x3.py
// --set cifar, batch 4), side by side on the emulator: the production choice
// (ops/conv_tiles.cuh) beside candidate tiles, each validated against a
// float64 host reference before it is timed. `make -C dev && dev/build/conv3x3_tiles`
#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/launch.cuh"
#include "lab.h"
#include "ops/conv.h"
#include "ops/conv_dgrad.cu"  // the production passes and tiles through their launchers
#include "ops/conv_fprop.cu"
#include "ops/conv_wgrad.cu"
#include "ops/conv_winograd.cu"  // the launchers above pick Winograd by the auto rule

namespace {

using dc::ConvParams;
using dc::ConvTile;

ConvParams make(int n, int c, int k, int h) {  // 3x3, stride 1, pad 1
  ConvParams p;
  p.N = n, p.C = c, p.H = h, p.W = h, p.K = k, p.R = 3, p.S = 3;
  p.stride_h = p.stride_w = 1, p.pad_h = p.pad_w = 1, p.groups = 1;
  p.P = p.Q = h;
  return p;
}

// The three passes in float64: y = x * w, dx = dy *^T w, dw = dy *^T x.
struct Reference {
  std::vector<double> y, dx, dw;
  Reference(const ConvParams& p, const std::vector<float>& x, const std::vector<float>& w,
            const std::vector<float>& dy)
      : y(std::size_t(p.N) * p.K * p.P * p.Q), dx(x.size()), dw(w.size()) {
    for (int n = 0; n < p.N; ++n)
      for (int k = 0; k < p.K; ++k)
        for (int c = 0; c < p.C; ++c)
          for (int r = 0; r < 3; ++r)
            for (int s = 0; s < 3; ++s) {
              const std::size_t wi = ((std::size_t(k) * p.C + c) * 3 + r) * 3 + s;
              for (int i = 0; i < p.P; ++i)
                for (int j = 0; j < p.Q; ++j) {
                  const int h = i - 1 + r, v = j - 1 + s;
                  if (h < 0 || h >= p.H || v < 0 || v >= p.W) continue;
                  const std::size_t xi = ((std::size_t(n) * p.C + c) * p.H + h) * p.W + v;
                  const std::size_t yi = ((std::size_t(n) * p.K + k) * p.P + i) * p.Q + j;
                  y[yi] += double(x[xi]) * w[wi];
                  dx[xi] += double(dy[yi]) * w[wi];
                  dw[wi] += double(dy[yi]) * x[xi];
                }
            }
  }
};

struct Inputs {
  lab::Buffer<float> x, w, dy, out;
  lab::Buffer<char> workspace;
};

// Validates, then times, one pass with one tile, writing into `out`; prints a line.
template <typename Tile, typename Pass>
void run(const char* label, Pass pass, lab::Buffer<float>& out, const std::vector<double>& want,
         double gflop) {
  const dc::ConvSplitTarget target = dc::ops::kConvSplitTarget;
  const std::size_t ws_bytes = dc::ConvWorkspaceBytes{target}(pass, Tile{}, label);
  lab::Buffer<char> workspace(ws_bytes > 0 ? ws_bytes : 1);
  pass.out = out.get();
  auto once = [&] {
    dc::conv_launch_implicit_gemm<Tile>(label, "split_reduce", pass, target, workspace.get(),
                                        ws_bytes, nullptr);
  };
  once();
  lab::synchronize();
  const std::string name = std::string(label) + " " + std::to_string(Tile::kBlockM) + "x" +
                           std::to_string(Tile::kBlockN) + "x" + std::to_string(Tile::kBlockK) +
                           " t" + std::to_string(Tile::kThreadM) + "x" +
                           std::to_string(Tile::kThreadN);
  if (!lab::validated(name, lab::relative_error(out.to_host(), want), 1e-4)) return;
  const double seconds = lab::median_seconds(once, 5);
  const double cpu_seconds = lab::median_cpu_seconds(once, 5);
  std::printf("  %-34s %8.2f GFLOP/s  (%.3f ms; %.3f CPU ms)\n", name.c_str(), gflop / seconds,
              seconds * 1e3, cpu_seconds * 1e3);
}

}  // namespace

// Optional arguments: image sizes (H) to run; default all shapes.
int main(int argc, char** argv) {
  using Tiles = dc::ops::ConvTiles<float>;
  // Candidates: the production tiles, then shorter / wider / shallower ones.
  using Short = ConvTile<64, 128, 32, 8, 16>;
  using Tiny = ConvTile<32, 128, 32, 8, 16>;
  using Mini = ConvTile<16, 128, 32, 8, 8>;
  // A 64-deep K stage: half the barriers (each switches every fiber).
  using WideDeep = ConvTile<128, 128, 64, 8, 16>;
  using ShortDeep = ConvTile<64, 128, 64, 8, 16>;
  // Taller blocks: fewer filter-tile loads per FLOP on 32x32 images.
  using Tall = ConvTile<256, 64, 32, 8, 16>;
  using BaseDeep = ConvTile<128, 64, 64, 8, 16>;
  using TallDeep = ConvTile<256, 64, 64, 8, 16>;
  // Narrow blocks for GEMMs of few columns (dgrad of a 3-channel input).
  using Narrow = ConvTile<256, 16, 32, 8, 16>;
  using Narrow32 = ConvTile<128, 32, 32, 8, 16>;
  // {C, K, H, batch}: benchmarks/conv3x3.py's cifar set at batch 4, then
  // the small-image end of its vgg224 set at batch 1 (must not regress).
  const std::vector<std::array<int, 4>> cifar = {
      {3, 64, 32, 4},    {64, 64, 32, 4},  {64, 128, 16, 4}, {128, 128, 16, 4}, {128, 256, 8, 4},
      {256, 256, 8, 4},  {256, 512, 4, 4}, {512, 512, 4, 4}, {512, 512, 2, 4},  {256, 512, 28, 1},
      {512, 512, 14, 1}, {512, 512, 14, 4}, {512, 512, 7, 4}};
  // `vgg_small` as the first argument: benchmarks/train_step.py's network
  // (VGG-A at width 32 on 32x32 images, batch 16), with more wgrad tiles.
  const std::vector<std::array<int, 4>> vgg_small = {
      {3, 32, 32, 16},   {32, 64, 16, 16},  {64, 128, 8, 16}, {128, 128, 8, 16},
      {128, 256, 4, 16}, {256, 256, 4, 16}, {256, 256, 2, 16}};
  const bool small_net = argc > 1 && std::string(argv[1]) == "vgg_small";
  const int first_size_arg = small_net ? 2 : 1;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (const auto& s : small_net ? vgg_small : cifar) {
    bool wanted = argc <= first_size_arg;
    for (int i = first_size_arg; i < argc; ++i) wanted = wanted || std::atoi(argv[i]) == s[2];
    if (!wanted) continue;
    const ConvParams p = make(s[3], s[0], s[1], s[2]);
    std::vector<float> x(std::size_t(p.N) * p.C * p.H * p.W), w(std::size_t(p.K) * p.C * 9),
        dy(std::size_t(p.N) * p.K * p.P * p.Q);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    for (float& v : dy) v = normal(rng);
    const Reference ref(p, x, w, dy);
    lab::Buffer<float> bx(x), bw(w), bdy(dy), by(ref.y.size()), bdx(x.size()), bdw(w.size());
    const double gflop = double(p.fprop_flops()) / 1e9;
    std::printf("C %d K %d %dx%d, batch %d (%.3f GFLOP)\n", p.C, p.K, p.H, p.W, p.N, gflop);

    // fprop and dgrad: the production tile, then every candidate that fits.
    auto sweep = [&](const char* pass_name, auto pass, lab::Buffer<float>& out,
                     const std::vector<double>& want) {
      const std::string prod = std::string(pass_name) + " prod";
      dc::ops::visit_conv_3x3_tile<float>(pass, pass_name, [&](auto, auto tile, const char*) {
        run<decltype(tile)>(prod.c_str(), pass, out, want, gflop);
      });
      // The 32-deep tiles (the 3x3 variant's before the 64-deep ones).
      run<Tiles::General>(pass_name, pass, out, want, gflop);
      run<Tiles::GeneralWide>(pass_name, pass, out, want, gflop);
      run<Short>(pass_name, pass, out, want, gflop);
      run<WideDeep>(pass_name, pass, out, want, gflop);
      run<ShortDeep>(pass_name, pass, out, want, gflop);
      if (p.H >= 8) {
        run<Tall>(pass_name, pass, out, want, gflop);
        run<BaseDeep>(pass_name, pass, out, want, gflop);
        run<TallDeep>(pass_name, pass, out, want, gflop);
      }
      if (p.C <= 3) {
        run<Narrow>(pass_name, pass, out, want, gflop);
        run<Narrow32>(pass_name, pass, out, want, gflop);
      }
      if (p.H <= 4) run<Tiny>(pass_name, pass, out, want, gflop);
      if (p.H <= 2) run<Mini>(pass_name, pass, out, want, gflop);
    };
    dc::ops::Fprop3x3<float> fprop{p};
    fprop.x = bx.get(), fprop.w = bw.get(), fprop.b = nullptr, fprop.relu = false;
    sweep("fprop", fprop, by, ref.y);
    dc::ops::Dgrad3x3<float> dgrad{p};
    dgrad.dy = bdy.get(), dgrad.w = bw.get();
    sweep("dgrad", dgrad, bdx, ref.dx);

    dc::ConvWgradPass<float> wgrad{p};
    wgrad.x = bx.get(), wgrad.dy = bdy.get();
    dc::ops::visit_wgrad_variant<float>(p, [&](auto, auto tile, const char*) {
      run<decltype(tile)>("wgrad prod", wgrad, bdw, ref.dw, gflop);
    });
    run<Tiles::General>("wgrad", wgrad, bdw, ref.dw, gflop);
    run<Tiles::GeneralWide>("wgrad", wgrad, bdw, ref.dw, gflop);
    run<ConvTile<128, 64, 16, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
    run<Short>("wgrad", wgrad, bdw, ref.dw, gflop);
    run<ConvTile<128, 64, 64, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
    if (small_net) {
      // Wider and deeper blocks: fewer re-gathers of the image operand per
      // FLOP, fewer barriers per reduction step.
      run<ConvTile<128, 128, 64, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<64, 128, 64, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<64, 256, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<128, 256, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<256, 64, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<256, 128, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<64, 64, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<32, 128, 32, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      run<ConvTile<128, 128, 16, 8, 16>>("wgrad", wgrad, bdw, ref.dw, gflop);
      if (p.C <= 3) {  // 27 GEMM columns: blocks that waste fewer of them
        run<ConvTile<32, 32, 32, 4, 8>>("wgrad", wgrad, bdw, ref.dw, gflop);
        run<ConvTile<32, 32, 64, 4, 8>>("wgrad", wgrad, bdw, ref.dw, gflop);
        run<ConvTile<32, 32, 16, 4, 8>>("wgrad", wgrad, bdw, ref.dw, gflop);
        run<ConvTile<64, 32, 32, 4, 8>>("wgrad", wgrad, bdw, ref.dw, gflop);
        run<ConvTile<32, 64, 32, 4, 8>>("wgrad", wgrad, bdw, ref.dw, gflop);
      }
    }
  }
  return 0;
}
