// Python bindings of the op launchers (ops/ops.h), identical in _emu and _cuda.
//
// Pointers arrive as plain integers (ndarray.ctypes.data, cupy's data.ptr),
// sizes as element counts, the dtype as "float32" / "float64", the stream as
// an integer cudaStream_t (0 = default; the emulator ignores it). No
// validation beyond the dtype string and list lengths: deepconv.ops checks
// shapes, contiguity and devices before calling here. The GIL is released
// around every launch, so emulated kernels and other Python threads overlap.
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "ops/ops.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

dc::Stream as_stream(std::uintptr_t stream) { return reinterpret_cast<dc::Stream>(stream); }

// Calls f(T{}) with T the C++ type named by `dtype`.
template <typename F>
void dispatch_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32") {
    f(float{});
  } else if (dtype == "float64") {
    f(double{});
  } else {
    throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
}

// A hyper-parameter given either once for all tensors or once per tensor.
std::vector<double> per_tensor(const py::handle& value, std::size_t count, const char* name) {
  try {
    if (py::isinstance<py::sequence>(value) && !py::isinstance<py::str>(value)) {
      auto values = value.cast<std::vector<double>>();
      if (values.size() != count) {
        throw py::value_error(std::string(name) + " has " + std::to_string(values.size()) +
                              " entries, expected one per tensor (" + std::to_string(count) + ")");
      }
      return values;
    }
    return std::vector<double>(count, value.cast<double>());
  } catch (const py::cast_error&) {
    throw py::type_error(std::string(name) + " must be a float or a list of floats, got " +
                         std::string(py::str(py::type::of(value))));
  }
}

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

void sgd_update(const std::vector<std::uintptr_t>& w, const std::vector<std::uintptr_t>& v,
                const std::vector<std::uintptr_t>& g, const std::vector<std::int64_t>& sizes,
                const py::object& lr, const py::object& momentum, const py::object& weight_decay,
                const std::string& dtype, std::uintptr_t stream) {
  const std::size_t count = w.size();
  if (v.size() != count || g.size() != count || sizes.size() != count) {
    throw py::value_error("w, v, g and sizes must have equal lengths, got " +
                          std::to_string(w.size()) + ", " + std::to_string(v.size()) + ", " +
                          std::to_string(g.size()) + " and " + std::to_string(sizes.size()));
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (sizes[i] < 0) {
      throw py::value_error("sizes[" + std::to_string(i) + "] must be >= 0, got " +
                            std::to_string(sizes[i]));
    }
  }
  const auto lrs = per_tensor(lr, count, "lr");
  const auto momenta = per_tensor(momentum, count, "momentum");
  const auto decays = per_tensor(weight_decay, count, "weight_decay");

  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<dc::ops::SgdTensor<T>> tensors(count);
    for (std::size_t i = 0; i < count; ++i) {
      tensors[i] = dc::ops::SgdTensor<T>{as_ptr<T>(w[i]),        as_ptr<T>(v[i]),
                                         as_ptr<const T>(g[i]),  sizes[i],
                                         static_cast<T>(lrs[i]), static_cast<T>(momenta[i]),
                                         static_cast<T>(decays[i])};
    }
    py::gil_scoped_release release;
    dc::ops::sgd_update<T>(tensors.data(), static_cast<int>(count), as_stream(stream));
  });
}

}  // namespace

void bind_ops(py::module_& m) {
  m.def("relu_fprop", &relu_fprop, py::arg("x"), py::arg("y"), py::arg("n"), py::arg("dtype"),
        py::arg("stream") = 0,
        "y = max(x, 0) elementwise over n elements (x == y allowed; NaN stays NaN).");
  m.def("relu_bprop", &relu_bprop, py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("n"),
        py::arg("dtype"), py::arg("stream") = 0,
        "dx = dy where y > 0 else 0, y the forward output (dy == dx allowed).");
  m.def("sgd_update", &sgd_update, py::arg("w"), py::arg("v"), py::arg("g"), py::arg("sizes"),
        py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("dtype"),
        py::arg("stream") = 0,
        "For each tensor i (lists w, v, g of pointers, sizes of element counts):\n"
        "  v <- momentum*v - weight_decay*lr*w - lr*g ;  w <- w + v\n"
        "lr, momentum and weight_decay are floats, or lists with one value per tensor.\n"
        "Up to 64 tensors per kernel launch.");
  m.attr("SGD_MAX_TENSORS_PER_LAUNCH") = dc::ops::kSgdMaxTensorsPerLaunch;
}
