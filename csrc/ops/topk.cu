// Launchers for kernels/topk.cuh.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/topk.cuh"
#include "ops/topk.h"

namespace dc::ops {
namespace {

// Rows (warps) per block. On a GPU 4: 128-thread blocks, several resident per
// SM. On the emulator 1: a block's warps would only be run one after another
// on the same OS thread, while separate blocks spread over the worker pool.
#if DC_GPU_CONFIG
constexpr int kTopkWarpsPerBlock = 4;
#else
constexpr int kTopkWarpsPerBlock = 1;
#endif
constexpr std::int64_t kTopkMaxBlocks = 65535;

void check_sizes(std::int64_t n, std::int64_t classes, std::int64_t k, std::int64_t max_k,
                 const char* op) {
  if (n < 0 || classes < 1 || k < 1 || k > classes || k > max_k) {
    throw std::invalid_argument(std::string(op) + ": need n >= 0, classes >= 1 and 1 <= k <= " +
                                "min(classes, " + std::to_string(max_k) + "), got n=" +
                                std::to_string(n) + ", classes=" + std::to_string(classes) +
                                ", k=" + std::to_string(k));
  }
}

LaunchConfig row_config(std::int64_t n, Stream s) {
  return LaunchConfig{dim3(blocks_for(n, kTopkWarpsPerBlock, kTopkMaxBlocks)),
                      dim3(32 * kTopkWarpsPerBlock), 0, s};
}

}  // namespace

template <typename T>
void topk(const T* scores, T* values, std::int64_t* indices, std::int64_t n,
          std::int64_t classes, int k, Stream s) {
  check_sizes(n, classes, k, kTopkMaxK, "topk");
  if (n == 0) return;
  launch(topk_kernel<T>, "topk", row_config(n, s), scores, values, indices, n, classes, k);
}

template <typename T, typename L>
void topk_miss(const T* scores, const L* labels, std::int32_t* miss, std::int64_t n,
               std::int64_t classes, std::int64_t k, Stream s) {
  check_sizes(n, classes, k, classes, "topk_error");
  if (n == 0) return;
  launch(topk_miss_kernel<T, L>, "topk_miss", row_config(n, s), scores, labels, miss, n, classes,
         k);
}

template void topk<float>(const float*, float*, std::int64_t*, std::int64_t, std::int64_t, int,
                          Stream);
template void topk<double>(const double*, double*, std::int64_t*, std::int64_t, std::int64_t, int,
                           Stream);
template void topk_miss<float, std::int32_t>(const float*, const std::int32_t*, std::int32_t*,
                                             std::int64_t, std::int64_t, std::int64_t, Stream);
template void topk_miss<float, std::int64_t>(const float*, const std::int64_t*, std::int32_t*,
                                             std::int64_t, std::int64_t, std::int64_t, Stream);
template void topk_miss<double, std::int32_t>(const double*, const std::int32_t*, std::int32_t*,
                                              std::int64_t, std::int64_t, std::int64_t, Stream);
template void topk_miss<double, std::int64_t>(const double*, const std::int64_t*, std::int32_t*,
                                              std::int64_t, std::int64_t, std::int64_t, Stream);

}  // namespace dc::ops
