# The emulator build: dc_emu_runtime (csrc/emu/*.cpp), module _emu (bindings +
# every csrc/ops/*.cu through a generated C++ wrapper) and module
# _emu_selftest (csrc/emu/selftest/).
include_guard(GLOBAL)
include(CheckCXXCompilerFlag)

# Flags for every emulator target (runtime library and both modules).
add_library(dc_emu_flags INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  # Emulated speed is set by how well the host compiler vectorises each
  # thread's inner loop (DESIGN.md §3), hence -O3 and the host's own ISA.
  target_compile_options(dc_emu_flags INTERFACE -O3)
  if(NOT DEEPCONV_PORTABLE)
    check_cxx_compiler_flag(-march=native DEEPCONV_HAVE_MARCH_NATIVE)
    if(DEEPCONV_HAVE_MARCH_NATIVE)
      target_compile_options(dc_emu_flags INTERFACE -march=native)
    endif()
  endif()
endif()
if(DEEPCONV_SANITIZE STREQUAL "address")
  # Out-of-bounds global accesses by kernels (CI's OOB job). The module must
  # then be loaded with libasan preloaded: see .ci/run.
  target_compile_options(dc_emu_flags INTERFACE -fsanitize=address -fno-omit-frame-pointer -g)
  target_link_options(dc_emu_flags INTERFACE -fsanitize=address)
endif()

file(GLOB DEEPCONV_EMU_RUNTIME_SOURCES CONFIGURE_DEPENDS
     "${DEEPCONV_CSRC}/emu/*.cpp" "${DEEPCONV_CSRC}/emu/*.S")
if(DEEPCONV_EMU_RUNTIME_SOURCES MATCHES "\\.S(;|$)")
  enable_language(ASM)  # a hand-written context switch may live in a .S file
endif()
if(NOT DEEPCONV_EMU_RUNTIME_SOURCES)
  message(FATAL_ERROR "deepconv: no emulator runtime sources in ${DEEPCONV_CSRC}/emu/")
endif()
# A shared library, installed beside the modules: _emu and _emu_selftest must
# share one runtime (one set of settings, one worker pool, one typeinfo per
# error class so that either module's errors are translated alike).
add_library(dc_emu_runtime SHARED ${DEEPCONV_EMU_RUNTIME_SOURCES})
set_target_properties(dc_emu_runtime PROPERTIES POSITION_INDEPENDENT_CODE ON)
list(APPEND DEEPCONV_MODULES dc_emu_runtime)
target_include_directories(dc_emu_runtime PUBLIC "${DEEPCONV_CSRC}")
target_compile_definitions(dc_emu_runtime PUBLIC DC_BACKEND_EMU)
target_link_libraries(dc_emu_runtime PUBLIC dc_emu_flags Threads::Threads)

deepconv_emu_wrappers(DEEPCONV_EMU_OP_SOURCES ops emu_sources)
deepconv_add_module(_emu EMU
  SOURCES ${DEEPCONV_BINDINGS}
          "${DEEPCONV_CSRC}/bindings/emu_runtime_bindings.cpp"
          ${DEEPCONV_EMU_OP_SOURCES}
  LIBRARIES dc_emu_runtime Threads::Threads)

file(GLOB DEEPCONV_SELFTEST_SOURCES CONFIGURE_DEPENDS "${DEEPCONV_CSRC}/emu/selftest/*.cpp")
deepconv_emu_wrappers(DEEPCONV_SELFTEST_KERNEL_SOURCES emu/selftest emu_sources/selftest)
deepconv_add_module(_emu_selftest EMU
  SOURCES ${DEEPCONV_SELFTEST_SOURCES} ${DEEPCONV_SELFTEST_KERNEL_SOURCES}
  LIBRARIES dc_emu_runtime)
set_target_properties(_emu _emu_selftest PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_RPATH "$ORIGIN")

# _emu_gputiles: the same bindings and launchers as _emu, compiled with
# DC_EMU_GPU_CONFIG so that every launcher makes the GPU build's choices
# (ops/conv_tiles.cuh's GPU tile table, the GPU loaders, split-K goals,
# threads per block; common/portable.cuh's DC_GPU_CONFIG). Test-only: the
# GPU tiles are slow on a CPU, but they are otherwise run nowhere without a
# GPU (tests/test_conv_gpu_tiles.py). Errors and settings are _emu's.
option(DEEPCONV_EMU_GPU_TILES "Build the test module _emu_gputiles (GPU tiles on the emulator)" ON)
if(DEEPCONV_EMU_GPU_TILES)
  deepconv_add_module(_emu_gputiles EMU
    SOURCES ${DEEPCONV_BINDINGS}
            "${DEEPCONV_CSRC}/bindings/emu_runtime_bindings.cpp"
            ${DEEPCONV_EMU_OP_SOURCES}
    LIBRARIES dc_emu_runtime Threads::Threads)
  target_compile_definitions(_emu_gputiles PRIVATE DC_EMU_GPU_CONFIG)
  set_target_properties(_emu_gputiles PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_RPATH "$ORIGIN")
endif()
