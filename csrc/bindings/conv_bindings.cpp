// Python bindings of ops/conv.h (conventions: bindings/common.h).
//
// `algorithm` is "auto", "implicit_gemm", "winograd", "winograd_4x4" or
// "winograd_2x2" (dc::ops::ConvAlgorithm).
// `params` is the tuple (N, C, H, W, K, R, S, P, Q, pad_h, pad_w, stride_h,
// stride_w, groups) of dc::ConvParams; deepconv.ops.conv builds it. A null
// bias / db pointer is 0.
#include <array>
#include <stdexcept>
#include <string>

#include "bindings/common.h"
#include "ops/conv.h"

namespace dc::bindings {
namespace {

using ParamsTuple = std::array<int, 14>;

dc::ConvParams to_params(const ParamsTuple& t) {
  dc::ConvParams p;
  p.N = t[0];
  p.C = t[1];
  p.H = t[2];
  p.W = t[3];
  p.K = t[4];
  p.R = t[5];
  p.S = t[6];
  p.P = t[7];
  p.Q = t[8];
  p.pad_h = t[9];
  p.pad_w = t[10];
  p.stride_h = t[11];
  p.stride_w = t[12];
  p.groups = t[13];
  const std::string why = dc::conv_check_params(p);
  if (!why.empty()) throw py::value_error("params: " + why);
  return p;
}

dc::ops::ConvAlgorithm to_algorithm(const std::string& name) {
  try {
    return dc::ops::conv_algorithm_from_name(name);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

void conv2d_fprop(const ParamsTuple& params, std::uintptr_t x, std::uintptr_t w, std::uintptr_t b,
                  std::uintptr_t y, bool relu, std::uintptr_t workspace,
                  std::size_t workspace_bytes, const std::string& dtype, std::uintptr_t stream,
                  const std::string& algorithm) {
  const dc::ConvParams p = to_params(params);
  const dc::ops::ConvAlgorithm algo = to_algorithm(algorithm);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::conv2d_fprop<T>(p, as_ptr<const T>(x), as_ptr<const T>(w), as_ptr<const T>(b),
                             as_ptr<T>(y), relu, as_ptr<void>(workspace), workspace_bytes,
                             as_stream(stream), algo);
  });
}

void conv2d_dgrad(const ParamsTuple& params, std::uintptr_t dy, std::uintptr_t w,
                  std::uintptr_t dx, std::uintptr_t workspace, std::size_t workspace_bytes,
                  const std::string& dtype, std::uintptr_t stream,
                  const std::string& algorithm) {
  const dc::ConvParams p = to_params(params);
  const dc::ops::ConvAlgorithm algo = to_algorithm(algorithm);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::conv2d_dgrad<T>(p, as_ptr<const T>(dy), as_ptr<const T>(w), as_ptr<T>(dx),
                             as_ptr<void>(workspace), workspace_bytes, as_stream(stream), algo);
  });
}

void conv2d_wgrad(const ParamsTuple& params, std::uintptr_t x, std::uintptr_t dy,
                  std::uintptr_t dw, std::uintptr_t db, std::uintptr_t workspace,
                  std::size_t workspace_bytes, const std::string& dtype, std::uintptr_t stream,
                  const std::string& algorithm) {
  const dc::ConvParams p = to_params(params);
  const dc::ops::ConvAlgorithm algo = to_algorithm(algorithm);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release release;
    dc::ops::conv2d_wgrad<T>(p, as_ptr<const T>(x), as_ptr<const T>(dy), as_ptr<T>(dw),
                             as_ptr<T>(db), as_ptr<void>(workspace), workspace_bytes,
                             as_stream(stream), algo);
  });
}

// Binds conv2d_<pass>_workspace_bytes and conv2d_<pass>_variant, which only
// differ by the launcher they ask.
template <typename BytesF, typename VariantF>
void bind_queries(py::module_& m, const std::string& pass, BytesF bytes, VariantF variant) {
  m.def(
      ("conv2d_" + pass + "_workspace_bytes").c_str(),
      [bytes](const ParamsTuple& params, const std::string& dtype, const std::string& algorithm) {
        std::size_t n = 0;
        const dc::ops::ConvAlgorithm algo = to_algorithm(algorithm);
        dispatch_dtype(dtype, [&](auto zero) { n = bytes(to_params(params), zero, algo); });
        return n;
      },
      py::arg("params"), py::arg("dtype"), py::arg("algorithm") = "auto",
      ("Bytes of workspace conv2d_" + pass + " needs (0: pass any pointer).").c_str());
  m.def(
      ("conv2d_" + pass + "_variant").c_str(),
      [variant](const ParamsTuple& params, const std::string& dtype,
                const std::string& algorithm) {
        std::string name;
        const dc::ops::ConvAlgorithm algo = to_algorithm(algorithm);
        dispatch_dtype(dtype, [&](auto zero) { name = variant(to_params(params), zero, algo); });
        return name;
      },
      py::arg("params"), py::arg("dtype"), py::arg("algorithm") = "auto",
      ("The kernel variant conv2d_" + pass + " runs for this problem.").c_str());
}

void bind_conv(py::module_& m) {
  m.def(
      "set_conv_precision",
      [](const std::string& precision) {
        try {
          dc::set_conv_precision(dc::conv_precision_from_name(precision));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("precision"),
      "Float convolutions in 'fp32' (FMAs) or 'tf32' (tensor cores; fp32 where there are none).");
  m.def("conv_precision", [] { return std::string(dc::conv_precision_name(dc::conv_precision())); });
  m.def("conv2d_fprop", &conv2d_fprop, py::arg("params"), py::arg("x"), py::arg("w"),
        py::arg("b"), py::arg("y"), py::arg("relu"), py::arg("workspace"),
        py::arg("workspace_bytes"), py::arg("dtype"), py::arg("stream") = 0,
        py::arg("algorithm") = "auto", "y = conv(x, w) + b (b = 0: no bias), then ReLU if relu.");
  m.def("conv2d_dgrad", &conv2d_dgrad, py::arg("params"), py::arg("dy"), py::arg("w"),
        py::arg("dx"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("dtype"),
        py::arg("stream") = 0, py::arg("algorithm") = "auto", "dx from dy and w.");
  m.def("conv2d_wgrad", &conv2d_wgrad, py::arg("params"), py::arg("x"), py::arg("dy"),
        py::arg("dw"), py::arg("db"), py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("dtype"), py::arg("stream") = 0, py::arg("algorithm") = "auto",
        "dw (and db unless db = 0) from x and dy.");
  bind_queries(
      m, "fprop",
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_fprop_workspace_bytes<decltype(zero)>(p, algo);
      },
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_fprop_variant<decltype(zero)>(p, algo);
      });
  bind_queries(
      m, "dgrad",
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_dgrad_workspace_bytes<decltype(zero)>(p, algo);
      },
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_dgrad_variant<decltype(zero)>(p, algo);
      });
  bind_queries(
      m, "wgrad",
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_wgrad_workspace_bytes<decltype(zero)>(p, algo);
      },
      [](const dc::ConvParams& p, auto zero, dc::ops::ConvAlgorithm algo) {
        return dc::ops::conv2d_wgrad_variant<decltype(zero)>(p, algo);
      });
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(conv, ::dc::bindings::bind_conv);
