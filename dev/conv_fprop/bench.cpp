// Conv fprop versions side by side: each validated against a float64 host
// reference, then timed, on the same inputs. `make -C dev && dev/build/conv_fprop`
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/launch.cuh"
#include "conv_fprop/v1_direct.cuh"
#include "lab.h"
#include "ops/conv.h"
#include "ops/conv_fprop.cu"  // v2: the production kernel through its launcher
#include "ops/conv_winograd.cu"  // which conv2d_fprop dispatches to

namespace {

struct Shape {
  const char* name;
  dc::ConvParams p;
};

dc::ConvParams make(int n, int c, int h, int k, int r, int stride, int pad, int groups) {
  dc::ConvParams p;
  p.N = n, p.C = c, p.H = h, p.W = h, p.K = k, p.R = r, p.S = r;
  p.stride_h = p.stride_w = stride, p.pad_h = p.pad_w = pad, p.groups = groups;
  p.P = dc::conv_output_size(h, r, pad, stride);
  p.Q = dc::conv_output_size(h, r, pad, stride);
  return p;
}

std::vector<double> reference(const dc::ConvParams& p, const std::vector<float>& x,
                              const std::vector<float>& w) {
  std::vector<double> y(std::size_t(p.N) * p.K * p.P * p.Q);
  const int cg = p.C / p.groups, kg = p.K / p.groups;
  for (int n = 0; n < p.N; ++n)
    for (int k = 0; k < p.K; ++k)
      for (int i = 0; i < p.P; ++i)
        for (int j = 0; j < p.Q; ++j) {
          double acc = 0;
          for (int c = 0; c < cg; ++c)
            for (int r = 0; r < p.R; ++r)
              for (int s = 0; s < p.S; ++s) {
                const int h = i * p.stride_h - p.pad_h + r, v = j * p.stride_w - p.pad_w + s;
                if (h < 0 || h >= p.H || v < 0 || v >= p.W) continue;
                acc += double(x[((std::size_t(n) * p.C + k / kg * cg + c) * p.H + h) * p.W + v]) *
                       w[((std::size_t(k) * cg + c) * p.R + r) * p.S + s];
              }
          y[((std::size_t(n) * p.K + k) * p.P + i) * p.Q + j] = acc;
        }
  return y;
}

}  // namespace

int main() {
  const Shape shapes[] = {
      {"vgg 3x3 64->64 56x56", make(1, 64, 56, 64, 3, 1, 1, 1)},
      {"vgg 3x3 128->128 28x28", make(1, 128, 28, 128, 3, 1, 1, 1)},
      {"vgg 3x3 256->256 14x14", make(1, 256, 14, 256, 3, 1, 1, 1)},
      {"alexnet conv1 11x11/4", make(1, 3, 227, 96, 11, 4, 0, 1)},
      {"alexnet conv2 5x5 g2", make(1, 96, 27, 256, 5, 1, 2, 2)},
  };
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (const Shape& shape : shapes) {
    const dc::ConvParams& p = shape.p;
    std::vector<float> x(std::size_t(p.N) * p.C * p.H * p.W), w(std::size_t(p.K) * p.C / p.groups * p.R * p.S);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    const std::vector<double> want = reference(p, x, w);
    lab::Buffer<float> dx(x), dw(w), dy(want.size());
    const std::size_t ws_bytes = dc::ops::conv2d_fprop_workspace_bytes<float>(p);
    lab::Buffer<char> workspace(ws_bytes > 0 ? ws_bytes : 1);
    const double gflop = double(p.fprop_flops()) / 1e9;
    std::printf("%s (%.3f GFLOP)\n", shape.name, gflop);

    struct Version {
      std::string name;
      std::function<void()> run;
    };
    const Version versions[] = {
        {"v1 direct", [&] { lab::conv_fprop_direct(p, dx.get(), dw.get(), dy.get()); }},
        {"v2 " + dc::ops::conv2d_fprop_variant<float>(p),
         [&] {
           dc::ops::conv2d_fprop<float>(p, dx.get(), dw.get(), nullptr, dy.get(), false,
                                        workspace.get(), ws_bytes, nullptr);
         }},
    };
    for (const Version& v : versions) {
      v.run();
      lab::synchronize();
      if (!lab::validated(v.name, lab::relative_error(dy.to_host(), want), 1e-4)) continue;
      const double seconds = lab::median_seconds(v.run);
      std::printf("  %-28s %8.2f GFLOP/s  (%.2f ms)\n", v.name.c_str(), gflop / seconds,
                  seconds * 1e3);
    }
  }
  return 0;
}
