// Python bindings of ops/pool.h (conventions: bindings/common.h).
#include <array>

#include "bindings/common.h"
#include "ops/pool.h"

namespace dc::bindings {
namespace {

using Shape4 = std::array<std::int64_t, 4>;
using Pair = std::array<int, 2>;

dc::ops::PoolParams pool_params(const Shape4& input_shape, const std::array<std::int64_t, 2>& output_size,
                                const Pair& kernel_size, const Pair& stride, const Pair& padding) {
  dc::ops::PoolParams pp;
  pp.N = input_shape[0];
  pp.C = input_shape[1];
  pp.H = input_shape[2];
  pp.W = input_shape[3];
  pp.P = output_size[0];
  pp.Q = output_size[1];
  pp.R = kernel_size[0];
  pp.S = kernel_size[1];
  pp.stride_h = stride[0];
  pp.stride_w = stride[1];
  pp.pad_h = padding[0];
  pp.pad_w = padding[1];
  return pp;
}

void max_pool2d_fprop(std::uintptr_t x, std::uintptr_t y, const Shape4& input_shape,
                      const std::array<std::int64_t, 2>& output_size, const Pair& kernel_size,
                      const Pair& stride, const Pair& padding, const std::string& dtype,
                      std::uintptr_t stream) {
  const dc::ops::PoolParams pp = pool_params(input_shape, output_size, kernel_size, stride, padding);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::max_pool2d_fprop<T>(as_ptr<const T>(x), as_ptr<T>(y), pp, as_stream(stream));
  });
}

void max_pool2d_bprop(std::uintptr_t x, std::uintptr_t y, std::uintptr_t dy, std::uintptr_t dx,
                      const Shape4& input_shape, const std::array<std::int64_t, 2>& output_size,
                      const Pair& kernel_size, const Pair& stride, const Pair& padding,
                      const std::string& dtype, std::uintptr_t stream) {
  const dc::ops::PoolParams pp = pool_params(input_shape, output_size, kernel_size, stride, padding);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::max_pool2d_bprop<T>(as_ptr<const T>(x), as_ptr<const T>(y), as_ptr<const T>(dy),
                                 as_ptr<T>(dx), pp, as_stream(stream));
  });
}

void bind_pool(py::module_& m) {
  m.def("max_pool2d_fprop", &max_pool2d_fprop, py::arg("x"), py::arg("y"),
        py::arg("input_shape"), py::arg("output_size"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dtype"), py::arg("stream") = 0,
        "y (N, C, P, Q) = max over each window of x (N, C, H, W); first maximum in row-major "
        "window order, NaN wins; padding counts as -inf.");
  m.def("max_pool2d_bprop", &max_pool2d_bprop, py::arg("x"), py::arg("y"), py::arg("dy"),
        py::arg("dx"), py::arg("input_shape"), py::arg("output_size"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dtype"), py::arg("stream") = 0,
        "dx (N, C, H, W) = sum of dy over the windows whose arg-max each element is "
        "(y = max_pool2d_fprop(x)); a gather, no atomics.");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(pool, ::dc::bindings::bind_pool);
