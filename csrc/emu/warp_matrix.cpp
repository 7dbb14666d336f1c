// Warp matrix instructions on the emulator: mma.sync (m16n8k8, TF32) and
// ldmatrix, each computed once per warp from the lanes' registers placed
// exactly where the PTX ISA's fragment tables put them ("Matrix Fragments
// for mma.m16n8k8" and "Warp-level matrix load instruction: ldmatrix"), so
// a kernel that loads a fragment into the wrong register computes a wrong
// product here just as on a GPU. Also cvt.rna.tf32.f32.
#include <cmath>
#include <cstring>
#include <sstream>

#include "emu/runtime_internal.h"

namespace dc::emu {

namespace {

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// TF32 keeps float's sign, 8 exponent bits and the top 10 mantissa bits;
// the tensor cores ignore the low 13 bits of a .tf32 operand.
constexpr std::uint32_t kTf32Mask = 0xffffe000u;

// ---- m16n8k8 .tf32 fragment layouts (PTX ISA), for lane l:
// groupID = l >> 2, threadID_in_group = l % 4.
struct Position {
  int row, col;
};
// A (16 x 8, row-major): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4).
Position a_position(int lane, int i) {
  return {(lane >> 2) + 8 * (i & 1), (lane & 3) + 4 * (i >> 1)};
}
// B (8 x 8, "col": element (k, n)): b0 (t, g), b1 (t + 4, g).
Position b_position(int lane, int i) { return {(lane & 3) + 4 * i, lane >> 2}; }
// C and D (16 x 8): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).
Position c_position(int lane, int i) {
  return {(lane >> 2) + 8 * (i >> 1), 2 * (lane & 3) + (i & 1)};
}

struct MmaLane {
  float* d;
  const float* a;
  const float* b;
  const float* c;
};

void mma_m16n8k8_tf32_warp(void* const* lanes, unsigned int) {
  float a[16][8], b[8][8], c[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = *static_cast<const MmaLane*>(lanes[lane]);
    for (int i = 0; i < 4; ++i) {
      const Position p = a_position(lane, i);
      a[p.row][p.col] = float_of(bits_of(l.a[i]) & kTf32Mask);
    }
    for (int i = 0; i < 2; ++i) {
      const Position p = b_position(lane, i);
      b[p.row][p.col] = float_of(bits_of(l.b[i]) & kTf32Mask);
    }
    for (int i = 0; i < 4; ++i) {
      const Position p = c_position(lane, i);
      c[p.row][p.col] = l.c[i];
    }
  }
  // Products of two TF32 values are exact in float; they are added to C in
  // increasing k, one rounding each. PTX leaves the tensor core's internal
  // summation order and rounding unspecified, so this is the emulator's
  // definition, within the K-length tolerance of any GPU's result.
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = *static_cast<const MmaLane*>(lanes[lane]);
    for (int i = 0; i < 4; ++i) {
      const Position p = c_position(lane, i);
      float acc = c[p.row][p.col];
      for (int k = 0; k < 8; ++k) acc = std::fma(a[p.row][k], b[k][p.col], acc);
      l.d[i] = acc;
    }
  }
}

struct LdmatrixLane {
  std::uint32_t* out;
  const void* row;
  int count;
  bool trans;
};

void ldmatrix_warp(void* const* lanes, unsigned int) {
  const LdmatrixLane& lane0 = *static_cast<const LdmatrixLane*>(lanes[0]);
  const int count = lane0.count;
  // matrix[i][r][j]: 16-bit element j of row r of matrix i; row r of matrix
  // i is at lane 8i + r's address (16 bytes, 16-byte aligned).
  std::uint16_t matrix[4][8][8];
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < 8; ++r) {
      const LdmatrixLane& source = *static_cast<const LdmatrixLane*>(lanes[8 * i + r]);
      if (source.count != count || source.trans != lane0.trans) {
        throw BarrierDivergence(where_thread() + ": lanes of one warp run ldmatrix with different "
                                "shapes (.x" + std::to_string(source.count) + " vs .x" +
                                std::to_string(count) + ")");
      }
      check_vector_alignment(source.row, 16, "ldmatrix row");
      check_shared_read(source.row, 16);
      std::memcpy(matrix[i][r], source.row, 16);
    }
  }
  // Without .trans lane l receives row l/4, elements 2(l%4) and 2(l%4)+1;
  // with .trans, column l/4 of rows 2(l%4) and 2(l%4)+1. The lower half of
  // the 32-bit register holds the first element.
  for (int lane = 0; lane < 32; ++lane) {
    const LdmatrixLane& l = *static_cast<const LdmatrixLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < count; ++i) {
      const std::uint16_t lo = lane0.trans ? matrix[i][2 * t][g] : matrix[i][g][2 * t];
      const std::uint16_t hi = lane0.trans ? matrix[i][2 * t + 1][g] : matrix[i][g][2 * t + 1];
      l.out[i] = std::uint32_t(lo) | (std::uint32_t(hi) << 16);
    }
  }
}

}  // namespace

float cvt_rna_tf32(float x) {
  const std::uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return float_of(0x7fffffffu);  // NaN
  if ((u & 0x7fffffffu) == 0x7f800000u) return x;                    // +-Inf
  // Adding half a TF32 ulp to the magnitude and truncating rounds to
  // nearest with ties away from zero; a carry out of the mantissa moves to
  // the next binade, and past the largest finite value to Inf, as it should.
  return float_of((u + 0x1000u) & kTf32Mask);
}

void mma_m16n8k8_tf32(float* d, const float* a, const float* b, const float* c) {
  MmaLane lane{d, a, b, c};
  warp_compute("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", 0xffffffffu, &lane,
               &mma_m16n8k8_tf32_warp);
}

void ldmatrix(std::uint32_t* out, int count, bool trans, const void* row) {
  if (count != 1 && count != 2 && count != 4) {
    throw Error(where_thread() + ": ldmatrix loads .x1, .x2 or .x4, not " + std::to_string(count));
  }
  LdmatrixLane lane{out, row, count, trans};
  warp_compute(trans ? "ldmatrix.sync.aligned.m8n8.trans.shared.b16"
                     : "ldmatrix.sync.aligned.m8n8.shared.b16",
               0xffffffffu, &lane, &ldmatrix_warp);
}

}  // namespace dc::emu
