// Launcher for kernels/sgd.cuh: packs up to kSgdMaxTensorsPerLaunch non-empty
// tensors into one SgdBatch per launch.
#include <cstdint>
#include <stdexcept>

#include "common/launch.cuh"
#include "kernels/sgd.cuh"
#include "ops/sgd.h"

namespace dc::ops {

template <typename T>
void sgd_update(const SgdTensor<T>* tensors, int count, Stream s) {
  if (count < 0) throw std::invalid_argument("sgd_update: count must be >= 0");
  for (int i = 0; i < count; ++i) {
    if (tensors[i].n < 0) throw std::invalid_argument("sgd_update: tensor sizes must be >= 0");
  }

  SgdBatch<T> batch{};
  unsigned int blocks = 0;
  auto flush = [&] {
    if (batch.count == 0) return;
    batch.block_start[batch.count] = blocks;
    LaunchConfig cfg{dim3(blocks), dim3(kSgdThreadsPerBlock), 0, s};
    launch(sgd_update_kernel<T>, "sgd_update", cfg, batch);
    batch = SgdBatch<T>{};
    blocks = 0;
  };
  for (int i = 0; i < count; ++i) {
    if (tensors[i].n == 0) continue;  // no blocks, and no entry to search
    batch.tensors[batch.count] = tensors[i];
    batch.block_start[batch.count] = blocks;
    blocks += blocks_for(tensors[i].n, kSgdElementsPerBlock, kSgdMaxBlocksPerTensor);
    if (++batch.count == kSgdMaxTensorsPerLaunch) flush();
  }
  flush();
}

template void sgd_update<float>(const SgdTensor<float>*, int, Stream);
template void sgd_update<double>(const SgdTensor<double>*, int, Stream);

}  // namespace dc::ops
