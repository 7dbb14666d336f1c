// The emulator's side of bind_backend_runtime: its settings and the Python
// classes its errors become.
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "emu/emu.h"

namespace py = pybind11;
namespace emu = dc::emu;

void bind_backend_runtime(py::module_& m) {
#if defined(DC_EMU_GPU_CONFIG)
  // _emu_gputiles (the GPU's launch configurations on the emulator, for the
  // tests) shares _emu's runtime library, so its settings and its errors are
  // _emu's: re-export them rather than register a second set of exception
  // classes, whose translator would then turn _emu's errors into this
  // module's classes too.
  const py::module_ emu_module = py::module_::import("deepconv._emu");
  for (const char* name : {"EmulatorError", "BarrierDivergenceError", "MisalignedAccessError",
                           "LaunchConfigError", "set_race_check", "race_check",
                           "set_num_threads", "num_threads", "settings"}) {
    m.attr(name) = emu_module.attr(name);
  }
#else
  // Registered base first: pybind11 tries translators newest first, so each
  // subclass is matched before its base.
  static py::exception<emu::Error> emulator_error(m, "EmulatorError", PyExc_RuntimeError);
  static py::exception<emu::BarrierDivergence> divergence(m, "BarrierDivergenceError",
                                                          emulator_error.ptr());
  static py::exception<emu::MisalignedAccess> misaligned(m, "MisalignedAccessError",
                                                         emulator_error.ptr());
  static py::exception<emu::LaunchConfigError> bad_launch(m, "LaunchConfigError",
                                                          emulator_error.ptr());
  static py::exception<emu::AsyncCopyError> async_copy(m, "AsyncCopyError", emulator_error.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const emu::BarrierDivergence& e) {
      PyErr_SetString(divergence.ptr(), e.what());
    } catch (const emu::MisalignedAccess& e) {
      PyErr_SetString(misaligned.ptr(), e.what());
    } catch (const emu::LaunchConfigError& e) {
      PyErr_SetString(bad_launch.ptr(), e.what());
    } catch (const emu::AsyncCopyError& e) {
      PyErr_SetString(async_copy.ptr(), e.what());
    } catch (const emu::Error& e) {
      PyErr_SetString(emulator_error.ptr(), e.what());
    }
  });

  m.def(
      "set_race_check",
      [](bool enabled, std::uint64_t seed) { emu::set_race_check(enabled, seed); },
      py::arg("enabled"), py::arg("seed") = 0,
      "Race-check mode: threads of a block run in reversed and shuffled orders between "
      "barriers, blocks in shuffled order, and shared memory starts poisoned (0xFF bytes). "
      "A race-free kernel gives bitwise the same results as in the default schedule.");
  m.def("race_check", [] { return emu::settings().race_check; });
  m.def(
      "set_num_threads",
      [](int threads) {
        if (threads < 0) throw py::value_error("threads must be >= 0 (0: one per core), got " +
                                               std::to_string(threads));
        emu::set_num_threads(threads);
      },
      py::arg("threads"), "OS threads that run blocks; 0 means DEEPCONV_EMU_THREADS or one per core.");
  m.def("num_threads", [] { return emu::settings().threads; });
  m.def("settings", [] {
    const emu::Settings s = emu::settings();
    py::dict d;
    d["threads"] = s.threads;
    d["race_check"] = s.race_check;
    d["seed"] = s.seed;
    d["stack_bytes"] = s.stack_bytes;
    d["context_switch"] = s.context_switch;
    d["sanitizer"] = s.sanitizer ? "address" : "none";
    return d;
  });
#endif
}
