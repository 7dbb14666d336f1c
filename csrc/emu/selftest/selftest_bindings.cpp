// deepconv._emu_selftest: Python bindings of the emulator's semantics kernels
// (semantics.h), for tests/test_emulator_semantics.py and
// benchmarks/emulator.py. Pointers are integers (ndarray.ctypes.data), as in
// the ops bindings.
//
// The emulator runtime is one shared library (libdc_emu_runtime) for both
// modules, so deepconv._emu's settings (race check, worker threads) govern
// these kernels too, and its errors arrive as deepconv._emu's classes.
#include <cstdint>
#include <exception>
#include <string>

#include <pybind11/pybind11.h>

#include "emu/emu.h"
#include "emu/selftest/semantics.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

dc::selftest::Dims as_dims(const py::tuple& t, const char* name) {
  if (t.size() < 1 || t.size() > 3) {
    throw py::value_error(std::string(name) + " must be a tuple of 1 to 3 ints");
  }
  unsigned int v[3] = {1, 1, 1};
  for (std::size_t i = 0; i < t.size(); ++i) v[i] = t[i].cast<unsigned int>();
  return dc::selftest::Dims{v[0], v[1], v[2]};
}

void bind_matrix_kernels(py::module_& m) {
  using py::arg;
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("cvt_tf32",
        [](std::uintptr_t x, std::uintptr_t y, std::int64_t n) {
          dc::selftest::cvt_tf32(as_ptr<const float>(x), as_ptr<float>(y), n);
        },
        arg("x"), arg("y"), arg("n"), release);
  m.def("mma_tf32",
        [](std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::uintptr_t d,
           unsigned int warps, bool round_inputs) {
          dc::selftest::mma_tf32(as_ptr<const float>(a), as_ptr<const float>(b),
                                 as_ptr<const float>(c), as_ptr<float>(d), warps, round_inputs);
        },
        arg("a"), arg("b"), arg("c"), arg("d"), arg("warps"), arg("round_inputs"), release);
  m.def("ldmatrix_rows",
        [](std::uintptr_t rows, std::uintptr_t slot, std::uintptr_t out, int count, bool trans) {
          if (count != 1 && count != 2 && count != 4) {
            throw py::value_error("count must be 1, 2 or 4, got " + std::to_string(count));
          }
          py::gil_scoped_release unlocked;
          dc::selftest::ldmatrix_rows(as_ptr<const std::uint16_t>(rows), as_ptr<const int>(slot),
                                      as_ptr<std::uint32_t>(out), count, trans);
        },
        arg("rows"), arg("slot"), arg("out"), arg("count"), arg("trans"));
  m.def("async_ring",
        [](std::uintptr_t x, std::uintptr_t y, int tiles, int valid, int mode,
           unsigned int blocks) {
          dc::selftest::async_ring(as_ptr<const float>(x), as_ptr<float>(y), tiles, valid, mode,
                                   blocks);
        },
        arg("x"), arg("y"), arg("tiles"), arg("valid"), arg("mode"), arg("blocks"), release);
}

void bind_kernels(py::module_& m) {
  using py::arg;
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("block_sum",
        [](std::uintptr_t x, std::uintptr_t out, std::int64_t n, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::block_sum(as_ptr<const float>(x), as_ptr<float>(out), n, blocks, threads);
        },
        arg("x"), arg("out"), arg("n"), arg("blocks"), arg("threads"), release);
  m.def("warp_shuffles",
        [](std::uintptr_t x, std::uintptr_t down, std::uintptr_t xor_total, std::uintptr_t bcast,
           std::uintptr_t scan, std::uintptr_t seg16, std::uintptr_t rot, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::warp_shuffles(as_ptr<const float>(x), as_ptr<float>(down),
                                      as_ptr<float>(xor_total), as_ptr<float>(bcast),
                                      as_ptr<float>(scan), as_ptr<float>(seg16),
                                      as_ptr<double>(rot), blocks, threads);
        },
        arg("x"), arg("down"), arg("xor_total"), arg("bcast"), arg("scan"), arg("seg16"),
        arg("rot"), arg("blocks"), arg("threads"), release);
  m.def("warp_votes",
        [](std::uintptr_t pred, std::uintptr_t ballot, std::uintptr_t any, std::uintptr_t all,
           unsigned int blocks, unsigned int threads) {
          dc::selftest::warp_votes(as_ptr<const int>(pred), as_ptr<unsigned int>(ballot),
                                   as_ptr<int>(any), as_ptr<int>(all), blocks, threads);
        },
        arg("pred"), arg("ballot"), arg("any"), arg("all"), arg("blocks"), arg("threads"),
        release);
  m.def("block_votes",
        [](std::uintptr_t pred, std::uintptr_t count, std::uintptr_t all, std::uintptr_t any,
           unsigned int blocks, unsigned int threads) {
          dc::selftest::block_votes(as_ptr<const int>(pred), as_ptr<int>(count), as_ptr<int>(all),
                                    as_ptr<int>(any), blocks, threads);
        },
        arg("pred"), arg("count"), arg("all"), arg("any"), arg("blocks"), arg("threads"),
        release);
  m.def("atomics",
        [](std::uintptr_t x, std::int64_t n, std::uintptr_t isum, std::uintptr_t fsum,
           std::uintptr_t dsum, std::uintptr_t imax, std::uintptr_t cas_count,
           std::uintptr_t ticket_counter, std::uintptr_t tickets, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::atomics(as_ptr<const int>(x), n, as_ptr<int>(isum), as_ptr<float>(fsum),
                                as_ptr<double>(dsum), as_ptr<int>(imax), as_ptr<int>(cas_count),
                                as_ptr<int>(ticket_counter), as_ptr<int>(tickets), blocks,
                                threads);
        },
        arg("x"), arg("n"), arg("isum"), arg("fsum"), arg("dsum"), arg("imax"), arg("cas_count"),
        arg("ticket_counter"), arg("tickets"), arg("blocks"), arg("threads"), release);
  m.def("dynamic_shared_reverse",
        [](std::uintptr_t x, std::uintptr_t y, int per_block, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::dynamic_shared_reverse(as_ptr<const float>(x), as_ptr<float>(y), per_block,
                                               blocks, threads);
        },
        arg("x"), arg("y"), arg("per_block"), arg("blocks"), arg("threads"), release);
  m.def("racy_neighbour",
        [](std::uintptr_t x, std::uintptr_t y, bool barrier_first, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::racy_neighbour(as_ptr<const float>(x), as_ptr<float>(y), barrier_first,
                                       blocks, threads);
        },
        arg("x"), arg("y"), arg("barrier_first"), arg("blocks"), arg("threads"), release);
  m.def("divergent_barrier",
        [](std::uintptr_t out, int mode, unsigned int threads) {
          dc::selftest::divergent_barrier(as_ptr<int>(out), mode, threads);
        },
        arg("out"), arg("mode"), arg("threads"), release);
  m.def("vector_copy",
        [](std::uintptr_t x, std::uintptr_t y, std::int64_t load_offset,
           std::int64_t store_offset, std::int64_t n4) {
          dc::selftest::vector_copy(as_ptr<const float>(x), as_ptr<float>(y), load_offset,
                                    store_offset, n4);
        },
        arg("x"), arg("y"), arg("load_offset"), arg("store_offset"), arg("n4"), release);
  // Converts the tuples with the GIL held, then releases it for the launch.
  m.def("write_indices",
        [](std::uintptr_t out, const py::tuple& grid, const py::tuple& block,
           std::size_t shared_bytes) {
          const auto g = as_dims(grid, "grid");
          const auto b = as_dims(block, "block");
          py::gil_scoped_release unlocked;
          dc::selftest::write_indices(as_ptr<int>(out), g, b, shared_bytes);
        },
        arg("out"), arg("grid"), arg("block"), arg("shared_bytes") = 0);
  m.def("warp1_shuffle",
        [](std::uintptr_t x, std::uintptr_t out, unsigned int blocks) {
          dc::selftest::warp1_shuffle(as_ptr<const float>(x), as_ptr<float>(out), blocks);
        },
        arg("x"), arg("out"), arg("blocks"), release);
  m.def("barrier_loop",
        [](std::uintptr_t out, int iters, bool barriers, unsigned int blocks,
           unsigned int threads) {
          dc::selftest::barrier_loop(as_ptr<float>(out), iters, barriers, blocks, threads);
        },
        arg("out"), arg("iters"), arg("barriers"), arg("blocks"), arg("threads"), release);
  bind_matrix_kernels(m);
}

}  // namespace

PYBIND11_MODULE(DC_MODULE_NAME, m) {
  m.doc() = "The emulator's semantics kernels (csrc/emu/selftest/README.md)";
  m.attr("BACKEND") = "emu";
  // The runtime (libdc_emu_runtime, shared with _emu) is configured through
  // deepconv._emu, whose import also registers the translators that turn
  // emulator errors into its Python classes.
  py::module_ emu = py::module_::import("deepconv._emu");
  for (const char* name : {"EmulatorError", "BarrierDivergenceError", "MisalignedAccessError",
                           "LaunchConfigError", "AsyncCopyError"}) {
    m.attr(name) = emu.attr(name);
  }
  bind_kernels(m);
}
