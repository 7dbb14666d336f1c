// The lab's harness: device buffers, a timer, and the rule that a version is
// timed only after it matched the reference.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "common/portable.cuh"

namespace lab {

// Memory where kernels can read it: device memory under nvcc, plain host
// memory on the emulator.
template <typename T>
class Buffer {
 public:
  explicit Buffer(const std::vector<T>& host) : size_(host.size()) {
#if defined(__CUDACC__)
    cudaMalloc(&data_, size_ * sizeof(T));
    cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice);
#else
    data_ = static_cast<T*>(std::aligned_alloc(64, (size_ * sizeof(T) + 63) / 64 * 64));
    std::copy(host.begin(), host.end(), data_);
#endif
  }
  explicit Buffer(std::size_t size) : Buffer(std::vector<T>(size)) {}
  ~Buffer() {
#if defined(__CUDACC__)
    cudaFree(data_);
#else
    std::free(data_);
#endif
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() { return data_; }
  std::vector<T> to_host() const {
    std::vector<T> out(size_);
#if defined(__CUDACC__)
    cudaMemcpy(out.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost);
#else
    std::copy(data_, data_ + size_, out.begin());
#endif
    return out;
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

inline void synchronize() {
#if defined(__CUDACC__)
  cudaDeviceSynchronize();
#endif
}

// Median seconds of `run` over `repeat` timed calls after one warm-up.
inline double median_seconds(const std::function<void()>& run, int repeat = 3) {
  run();
  synchronize();
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    synchronize();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Median CPU seconds of the whole process (every emulator worker) per call
// of `run`, after one warm-up: on a machine shared with other jobs it moves
// far less than the wall time, which waits whenever a worker is preempted
// (it does not show how well a launch spreads over the cores, though).
inline double median_cpu_seconds(const std::function<void()>& run, int repeat = 3) {
  auto cpu_now = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  };
  run();
  synchronize();
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    const double start = cpu_now();
    run();
    synchronize();
    times.push_back(cpu_now() - start);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Largest |got - want| relative to the largest |want|.
template <typename T>
double relative_error(const std::vector<T>& got, const std::vector<double>& want) {
  double worst = 0, scale = 1e-30;
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[i]) - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return worst / scale;
}

// Prints one result line; a version that fails validation is not timed.
inline bool validated(const std::string& version, double error, double tolerance) {
  if (error > tolerance) {
    std::printf("  %-28s FAILED validation: relative error %.2e > %.0e (not timed)\n",
                version.c_str(), error, tolerance);
    return false;
  }
  return true;
}

}  // namespace lab
