// Kernel launch, spelled once for both builds.
//
// Launchers (csrc/ops/*.cu) call
//     dc::launch(kernel, "kernel_name", cfg, args...);
// Under nvcc that is kernel<<<grid, block, shared, stream>>>(args...) followed
// by a check that turns a CUDA error into std::runtime_error with CUDA's own
// text. Under the host compiler it runs the kernel on the emulator, which
// launches synchronously and throws dc::emu::Error subclasses (naming the
// kernel) for barrier divergence, misaligned vector accesses and bad launch
// configurations.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/portable.cuh"
#include "common/stream.h"

namespace dc {

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  std::size_t shared_bytes = 0;  // dynamic shared memory per block
  Stream stream = nullptr;
};

#if defined(__CUDACC__)

inline void throw_on_cuda_error(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

template <typename... KernelArgs, typename... Args>
void launch(void (*kernel)(KernelArgs...), const char* name, const LaunchConfig& cfg,
            Args&&... args) {
  kernel<<<cfg.grid, cfg.block, cfg.shared_bytes, static_cast<cudaStream_t>(cfg.stream)>>>(
      std::forward<Args>(args)...);
  throw_on_cuda_error(cudaGetLastError(), name);
}

#else

template <typename... KernelArgs, typename... Args>
void launch(void (*kernel)(KernelArgs...), const char* name, const LaunchConfig& cfg,
            Args&&... args) {
  ::dc::emu::launch(kernel, name, cfg.grid, cfg.block, cfg.shared_bytes,
                    static_cast<KernelArgs>(std::forward<Args>(args))...);
}

#endif

// Blocks needed to cover n work items with `per_block` items each, as the
// unsigned int a grid dimension wants; callers cap it (grid-stride loops).
inline unsigned int blocks_for(std::int64_t n, std::int64_t per_block, std::int64_t max_blocks) {
  std::int64_t blocks = (n + per_block - 1) / per_block;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned int>(blocks);
}

}  // namespace dc
