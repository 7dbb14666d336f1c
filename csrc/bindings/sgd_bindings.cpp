// Python bindings of ops/sgd.h (conventions: bindings/common.h).
#include "bindings/common.h"
#include "ops/sgd.h"

namespace dc::bindings {
namespace {

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

void bind_sgd(py::module_& m) {
  m.def("sgd_update", &sgd_update, py::arg("w"), py::arg("v"), py::arg("g"), py::arg("sizes"),
        py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("dtype"),
        py::arg("stream") = 0,
        "For each tensor i (lists w, v, g of pointers, sizes of element counts):\n"
        "  v <- momentum*v - weight_decay*lr*w - lr*g ;  w <- w + v\n"
        "lr, momentum and weight_decay are floats, or lists with one value per tensor.\n"
        "Up to 64 tensors per kernel launch.");
  m.attr("SGD_MAX_TENSORS_PER_LAUNCH") = dc::ops::kSgdMaxTensorsPerLaunch;
}

}  // namespace
}  // namespace dc::bindings

DC_REGISTER_BINDINGS(sgd, ::dc::bindings::bind_sgd);
