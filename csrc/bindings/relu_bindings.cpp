// Python bindings of ops/relu.h (conventions: bindings/common.h).
#include "bindings/common.h"
#include "ops/relu.h"

namespace dc::bindings {
namespace {

void relu_fprop(std::uintptr_t x, std::uintptr_t y, std::int64_t n, const std::string& dtype,
                std::uintptr_t stream) {
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::relu_fprop<T>(as_ptr<const T>(x), as_ptr<T>(y), n, as_stream(stream));
  });
}

void relu_bprop(std::uintptr_t y, std::uintptr_t dy, std::uintptr_t dx, std::int64_t n,
                const std::string& dtype, std::uintptr_t stream) {
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::relu_bprop<T>(as_ptr<const T>(y), as_ptr<const T>(dy), as_ptr<T>(dx), n,
                           as_stream(stream));
  });
}

void bind_relu(py::module_& m) {
  m.def("relu_fprop", &relu_fprop, py::arg("x"), py::arg("y"), py::arg("n"), py::arg("dtype"),
        py::arg("stream") = 0,
        "y = max(x, 0) elementwise over n elements (x == y allowed; NaN stays NaN).");
  m.def("relu_bprop", &relu_bprop, py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("n"),
        py::arg("dtype"), py::arg("stream") = 0,
        "dx = dy where y > 0 else 0, y the forward output (dy == dx allowed).");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(relu, ::dc::bindings::bind_relu);
