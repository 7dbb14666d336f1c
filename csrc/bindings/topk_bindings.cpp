// Python bindings of ops/topk.h (conventions: bindings/common.h).
#include "bindings/common.h"
#include "ops/topk.h"

namespace dc::bindings {
namespace {

void topk(std::uintptr_t scores, std::uintptr_t values, std::uintptr_t indices, std::int64_t n,
          std::int64_t classes, int k, const std::string& dtype, std::uintptr_t stream) {
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::topk<T>(as_ptr<const T>(scores), as_ptr<T>(values), as_ptr<std::int64_t>(indices), n,
                     classes, k, as_stream(stream));
  });
}

void topk_miss(std::uintptr_t scores, std::uintptr_t labels, std::uintptr_t miss, std::int64_t n,
               std::int64_t classes, std::int64_t k, const std::string& dtype,
               const std::string& label_dtype, std::uintptr_t stream) {
  dispatch_dtype_and_labels(dtype, label_dtype, [&](auto zero, auto label_zero) {
    using T = decltype(zero);
    using L = decltype(label_zero);
    py::gil_scoped_release release;
    dc::ops::topk_miss<T, L>(as_ptr<const T>(scores), as_ptr<const L>(labels),
                             as_ptr<std::int32_t>(miss), n, classes, k, as_stream(stream));
  });
}

void bind_topk(py::module_& m) {
  m.attr("TOPK_MAX_K") = dc::ops::kTopkMaxK;
  m.def("topk", &topk, py::arg("scores"), py::arg("values"), py::arg("indices"), py::arg("n"),
        py::arg("classes"), py::arg("k"), py::arg("dtype"), py::arg("stream") = 0,
        "Per row of (n, classes) scores, the k highest values (n, k) and their int64 indices "
        "(n, k), descending; NaN first; ties by the lower index. 1 <= k <= min(classes, "
        "TOPK_MAX_K).");
  m.def("topk_miss", &topk_miss, py::arg("scores"), py::arg("labels"), py::arg("miss"),
        py::arg("n"), py::arg("classes"), py::arg("k"), py::arg("dtype"), py::arg("label_dtype"),
        py::arg("stream") = 0,
        "miss[r] (int32) = 1 where labels[r] is not among row r's top k (order as topk), else "
        "0; 1 <= k <= classes.");
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(topk, ::dc::bindings::bind_topk);
