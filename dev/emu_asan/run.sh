#!/usr/bin/env bash
# Builds dev/emu_asan/main.cpp with the emulator runtime under
# AddressSanitizer at each optimisation level given (default: 0 1 3) and runs
# it twice: with ASan's defaults and with detect_stack_use_after_return=1
# (fake stacks, which the fiber switches hand over too). Fails on the first
# build error, ASan report or failed check.
#   dev/emu_asan/run.sh          # -O0, -O1, -O3
#   dev/emu_asan/run.sh 1        # -O1 only (CI's ASan job)
# Extra compiler flags: CXXFLAGS (e.g. -DDC_EMU_FORCE_UCONTEXT); compiler: CXX.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
csrc="$here/../../csrc"
out="${EMU_ASAN_BUILD:-$here/../build}"
mkdir -p "$out"
levels=("$@")
[ "${#levels[@]}" -gt 0 ] || levels=(0 1 3)
for level in "${levels[@]}"; do
  exe="$out/emu_asan_O$level"
  echo "emu_asan: building -O$level"
  # shellcheck disable=SC2086  # CXXFLAGS is a list of flags
  "${CXX:-g++}" -std=c++17 "-O$level" -g -fsanitize=address -fno-omit-frame-pointer -pthread \
    ${CXXFLAGS:-} -I"$csrc" "$here/main.cpp" "$csrc"/emu/*.cpp -o "$exe"
  for options in "" "detect_stack_use_after_return=1"; do
    echo "emu_asan: -O$level ASAN_OPTIONS=${options:-(defaults)}"
    ASAN_OPTIONS="$options" "$exe"
  done
done
