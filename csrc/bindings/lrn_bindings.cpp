// Python bindings of ops/lrn.h (conventions: bindings/common.h).
#include <array>

#include "bindings/common.h"
#include "ops/lrn.h"

namespace dc::bindings {
namespace {

using Shape4 = std::array<std::int64_t, 4>;

dc::ops::LrnParams lrn_params(const Shape4& shape, int size, double alpha, double beta,
                              double k) {
  dc::ops::LrnParams lp;
  lp.N = shape[0];
  lp.C = shape[1];
  lp.H = shape[2];
  lp.W = shape[3];
  lp.size = size;
  lp.alpha = alpha;
  lp.beta = beta;
  lp.k = k;
  return lp;
}

void lrn_fprop(std::uintptr_t x, std::uintptr_t y, const Shape4& shape, int size, double alpha,
               double beta, double k, const std::string& dtype, std::uintptr_t stream) {
  const dc::ops::LrnParams lp = lrn_params(shape, size, alpha, beta, k);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::lrn_fprop<T>(as_ptr<const T>(x), as_ptr<T>(y), lp, as_stream(stream));
  });
}

void lrn_bprop(std::uintptr_t x, std::uintptr_t y, std::uintptr_t dy, std::uintptr_t dx,
               const Shape4& shape, int size, double alpha, double beta, double k,
               const std::string& dtype, std::uintptr_t stream) {
  const dc::ops::LrnParams lp = lrn_params(shape, size, alpha, beta, k);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::lrn_bprop<T>(as_ptr<const T>(x), as_ptr<const T>(y), as_ptr<const T>(dy),
                          as_ptr<T>(dx), lp, as_stream(stream));
  });
}

void bind_lrn(py::module_& m) {
  m.def("lrn_fprop", &lrn_fprop, py::arg("x"), py::arg("y"), py::arg("shape"), py::arg("size"),
        py::arg("alpha"), py::arg("beta"), py::arg("k"), py::arg("dtype"), py::arg("stream") = 0,
        "y = x * (k + alpha * sum of x^2 over `size` channels)^-beta, NCHW; alpha is applied "
        "as given (the paper's convention; divide by size for Caffe's / PyTorch's).");
  m.def("lrn_bprop", &lrn_bprop, py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("shape"), py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"),
        py::arg("dtype"), py::arg("stream") = 0,
        "dx of lrn_fprop (exact, across the channel window), y = lrn_fprop(x).");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(lrn, ::dc::bindings::bind_lrn);
