// What the convolution passes' image-side loaders share (included by
// kernels/conv.cuh): fprop gathers x through the filter window of each output
// pixel, dgrad gathers dy through the flipped window of each input pixel:
// the same walks over different grids.
#pragma once

#include <cstdint>

#include "common/portable.cuh"

namespace dc {

// Pixel (n, row, col) of GEMM row m when the GEMM rows are the pixels of an
// (N, rows, cols) grid of `plane` = rows * cols pixels (fprop: output pixels,
// P x Q; dgrad: input pixels, H x W). A row past the grid (tile overhang)
// maps to pixel 0, so that the loader's pointers stay inside the tensor; its
// values are masked anyway.
struct ConvPixel {
  std::int64_t n;
  int row, col;
};

__device__ __forceinline__ ConvPixel conv_pixel(std::int64_t m, std::int64_t pixels,
                                                std::int64_t plane, int cols) {
  const std::int64_t mm = m < pixels ? m : 0;
  const std::int64_t n = mm / plane;
  const int rc = static_cast<int>(mm - n * plane);
  const int row = rc / cols;
  return ConvPixel{n, row, rc - row * cols};
}

// Reduction step k = (c*R + r)*S + s of a window walk: channel (or filter)
// c, tap (r, s). Loaders divide once per stage, here; the per-pixel ones then
// advance (c, r, s) step by step.
struct ConvTap {
  int c, r, s;
};

__device__ __forceinline__ ConvTap conv_tap(int k, int R, int S) {
  const int c = k / (R * S);
  const int rs = k - c * (R * S);
  const int r = rs / S;
  return ConvTap{c, r, rs - r * S};
}

// The run loaders' gather (ConvTileLoadRuns; ConvFpropImageRunLoader,
// ConvDgradGradRunLoader), for one reduction step: `count` consecutive
// pixels of the (rows, cols) grid from (row, col) on, where pixel (row, col)
// reads source element (row * row_step + row_shift, col * col_step +
// col_shift) of a src_rows x src_cols plane of `channel`, 0 outside it;
// past the grid's last row the walk goes on in the next image, image_stride
// elements on. out[i] = 0 from i = count on. Within one grid row the pixels
// read one source row, so each segment is a short masked copy (contiguous at
// step 1) rather than scattered reads.
struct ConvRunWalk {
  int rows, cols;            // the pixel grid: fprop P x Q, dgrad H x W
  int src_rows, src_cols;    // the source plane: fprop H x W (of x), dgrad P x Q (of dy)
  int row_step, col_step;    // fprop: the stride; dgrad: 1 (stride-1 problems only)
  int row_shift, col_shift;  // the tap: fprop r - pad_h, dgrad pad_h - r (likewise s)
  std::int64_t image_stride;
};

template <typename T, int kCount>
__device__ __forceinline__ void conv_gather_run(const ConvRunWalk& walk, const T* channel,
                                                int row, int col, int count,
                                                T (&out)[kCount]) {
  int i = 0;
  while (i < count) {
    const int seg = min(count - i, walk.cols - col);  // pixels left in this grid row
    const int h = row * walk.row_step + walk.row_shift;
    if (h < 0 || h >= walk.src_rows) {
      for (int j = 0; j < seg; ++j) out[i + j] = T(0);
    } else {
      const T* src_row = channel + h * walk.src_cols;
      const int w0 = col * walk.col_step + walk.col_shift;
      for (int j = 0; j < seg; ++j) {
        const int w = w0 + j * walk.col_step;
        out[i + j] = w >= 0 && w < walk.src_cols ? src_row[w] : T(0);
      }
    }
    i += seg;
    col += seg;
    if (col == walk.cols) {
      col = 0;
      if (++row == walk.rows) {
        row = 0;
        channel += walk.image_stride;
      }
    }
  }
  for (; i < kCount; ++i) out[i] = T(0);
}

// How many of a run loader's kCount pixels from m_first on it reads for step
// k: none past k_end, fewer at the end of the grid (`pixels` in all).
template <int kCount>
__device__ __forceinline__ int conv_run_count(std::int64_t m_first, std::int64_t pixels, int k,
                                              int k_end) {
  const std::int64_t left = pixels - m_first;
  return k >= k_end || left <= 0 ? 0 : (left < kCount ? int(left) : kCount);
}

}  // namespace dc
