// What the emulator charges: per __syncthreads per thread, and per thread of
// a block that never synchronises. `make -C dev && dev/build/emu_barrier`
#include <cstdio>

#include "common/launch.cuh"
#include "lab.h"

namespace {

__global__ void barrier_loop(float* out, int iters, bool barriers) {
  float v = float(threadIdx.x);
  for (int i = 0; i < iters; ++i) {
    v = v * 0.5f + 1.0f;
    if (barriers) __syncthreads();
  }
  out[std::size_t(blockIdx.x) * blockDim.x + threadIdx.x] = v;
}

__global__ void one_store(float* out) {
  out[std::size_t(blockIdx.x) * blockDim.x + threadIdx.x] = float(threadIdx.x);
}

}  // namespace

int main() {
  const int blocks = 16, iters = 200;
  std::printf("%8s %22s %24s\n", "threads", "ns/barrier/thread", "ns/thread (no barrier)");
  for (int threads : {32, 64, 128, 256, 1024}) {
    lab::Buffer<float> out(std::size_t(blocks) * threads);
    const dc::LaunchConfig cfg{dim3(blocks), dim3(threads), 0, nullptr};
    auto run = [&](bool barriers) {
      return lab::median_seconds([&] { dc::launch(barrier_loop, "barrier_loop", cfg, out.get(), iters, barriers); }, 5);
    };
    const double per_barrier = (run(true) - run(false)) / (double(blocks) * threads * iters) * 1e9;
    const int wide = 4096;
    lab::Buffer<float> many(std::size_t(wide) * threads);
    const dc::LaunchConfig flat{dim3(wide), dim3(threads), 0, nullptr};
    const double per_thread =
        lab::median_seconds([&] { dc::launch(one_store, "one_store", flat, many.get()); }, 5) /
        (double(wide) * threads) * 1e9;
    std::printf("%8d %22.1f %24.2f\n", threads, per_barrier, per_thread);
  }
  return 0;
}
