// Python bindings of ops/dropout.h (conventions: bindings/common.h).
#include <stdexcept>

#include "bindings/common.h"
#include "ops/dropout.h"

namespace dc::bindings {
namespace {

void dropout_apply(std::uintptr_t x, std::uintptr_t y, std::int64_t n, std::uint64_t seed,
                   std::uint64_t step, double p, bool masked, double keep_scale,
                   const std::string& dtype, int threads_per_block, std::uintptr_t stream) {
  if (!(p >= 0.0 && p < 1.0)) throw py::value_error("p must be in [0, 1)");
  const std::uint32_t threshold = dc::ops::dropout_threshold(p);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const dc::ops::DropoutParams<T> params{seed, step, threshold, static_cast<T>(keep_scale),
                                           masked};
    py::gil_scoped_release release;
    dc::ops::dropout_apply<T>(as_ptr<const T>(x), as_ptr<T>(y), n, params, threads_per_block,
                              as_stream(stream));
  });
}

void philox4x32_10(std::uintptr_t counters, std::uintptr_t keys, std::uintptr_t out,
                   std::int64_t n, std::uintptr_t stream) {
  py::gil_scoped_release release;
  dc::ops::philox4x32_10(as_ptr<const std::uint32_t>(counters), as_ptr<const std::uint32_t>(keys),
                         as_ptr<std::uint32_t>(out), n, as_stream(stream));
}

void bind_dropout(py::module_& m) {
  m.def("dropout_apply", &dropout_apply, py::arg("x"), py::arg("y"), py::arg("n"),
        py::arg("seed"), py::arg("step"), py::arg("p"), py::arg("masked"), py::arg("keep_scale"),
        py::arg("dtype"), py::arg("threads_per_block") = 0, py::arg("stream") = 0,
        "y = x * m over n elements (x == y allowed): m = keep_scale where the element's "
        "Philox4x32-10 word (key seed, counter (i/4, step)) is >= round(p * 2^32), else 0; "
        "masked=False keeps every element. Forward and backward alike.");
  m.def("dropout_threshold", &dc::ops::dropout_threshold, py::arg("p"),
        "The 32-bit threshold below which an element is dropped: round(p * 2^32).");
  m.def("philox4x32_10", &philox4x32_10, py::arg("counters"), py::arg("keys"), py::arg("out"),
        py::arg("n"), py::arg("stream") = 0,
        "out[i] = Philox4x32-10(counters[i], keys[i]): uint32 arrays (n, 4), (n, 2), (n, 4).");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(dropout, ::dc::bindings::bind_dropout);
