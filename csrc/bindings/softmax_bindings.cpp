// Python bindings of ops/softmax.h (conventions: bindings/common.h).
#include "bindings/common.h"
#include "ops/softmax.h"

namespace dc::bindings {
namespace {

void softmax_fprop(std::uintptr_t logits, std::uintptr_t probs, std::int64_t n, std::int64_t k,
                   const std::string& dtype, std::uintptr_t stream) {
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::softmax_fprop<T>(as_ptr<const T>(logits), as_ptr<T>(probs), n, k, as_stream(stream));
  });
}

void softmax_xent_fprop(std::uintptr_t logits, std::uintptr_t labels, std::uintptr_t probs,
                        std::uintptr_t losses, std::uintptr_t loss, std::int64_t n,
                        std::int64_t k, const std::string& dtype, const std::string& label_dtype,
                        std::uintptr_t stream) {
  dispatch_dtype_and_labels(dtype, label_dtype, [&](auto zero, auto label_zero) {
    using T = decltype(zero);
    using L = decltype(label_zero);
    py::gil_scoped_release release;
    dc::ops::softmax_xent_fprop<T, L>(as_ptr<const T>(logits), as_ptr<const L>(labels),
                                      as_ptr<T>(probs), as_ptr<T>(losses), as_ptr<T>(loss), n, k,
                                      as_stream(stream));
  });
}

void softmax_xent_bprop(std::uintptr_t probs, std::uintptr_t labels, std::uintptr_t dlogits,
                        std::int64_t n, std::int64_t k, double scale, const std::string& dtype,
                        const std::string& label_dtype, std::uintptr_t stream) {
  dispatch_dtype_and_labels(dtype, label_dtype, [&](auto zero, auto label_zero) {
    using T = decltype(zero);
    using L = decltype(label_zero);
    py::gil_scoped_release release;
    dc::ops::softmax_xent_bprop<T, L>(as_ptr<const T>(probs), as_ptr<const L>(labels),
                                      as_ptr<T>(dlogits), n, k, static_cast<T>(scale),
                                      as_stream(stream));
  });
}

void bind_softmax(py::module_& m) {
  m.def("softmax_fprop", &softmax_fprop, py::arg("logits"), py::arg("probs"), py::arg("n"),
        py::arg("k"), py::arg("dtype"), py::arg("stream") = 0,
        "probs = softmax(logits) over each of n rows of k (row max subtracted); no overlap.");
  m.def("softmax_xent_fprop", &softmax_xent_fprop, py::arg("logits"), py::arg("labels"),
        py::arg("probs"), py::arg("losses"), py::arg("loss"), py::arg("n"), py::arg("k"),
        py::arg("dtype"), py::arg("label_dtype"), py::arg("stream") = 0,
        "Fused softmax + cross-entropy: probs (n, k), losses[r] = logsumexp(row) - "
        "logits[r, labels[r]] (n,), loss[0] = mean(losses) in a fixed order; n >= 1.");
  m.def("softmax_xent_bprop", &softmax_xent_bprop, py::arg("probs"), py::arg("labels"),
        py::arg("dlogits"), py::arg("n"), py::arg("k"), py::arg("scale"), py::arg("dtype"),
        py::arg("label_dtype"), py::arg("stream") = 0,
        "dlogits = (probs - onehot(labels)) * scale; dlogits == probs allowed.");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(softmax, ::dc::bindings::bind_softmax);
