// Spectral mode mixing: the per-element arithmetic shared by the CPU and CUDA kernels, and the
// sizes and strides that describe one mixing call (the FNO layer; the WNO layer's real mixing is a
// batched matrix product, csrc/wavelet_op.h).
//
// One mixing call computes, for every retained mode m = (m1, m2), a complex product
//   out[b, n, m] = sum_j in[b, j, m] * w[j, n, m]      (in and w each optionally conjugated)
// `in`, `w` and `out`
// are strided arrays read where they lie (real and imaginary parts at a fixed offset:
// interleaved complex, or the planar layout of a transform by GEMM). The forward pass
// (w = the weight [Cin, Cout, modes]), the input gradient (w with its channel strides exchanged,
// conjugated) and the weight gradient (j = batch, in = the input modes, w = the output
// gradient's modes) are all this one contraction.
#pragma once

#include "dtwin/macros.h"

namespace dtwin {
namespace mix {

// Element strides of a strided array indexed [b, j, m1, m2] (for w: [j, n, m1, m2]); `c` is the
// offset from a real part to its imaginary part.
struct Strides {
  int64_t b, j, m1, m2, c;
};

struct Shape {
  int64_t batch;  // b
  int64_t J;  // contracted index
  int64_t N;  // output index
  int64_t M1, M2;  // modes (M1 = 1 in 1D)
};

// acc += a * w, complex
template <class Acc>
DTWIN_HD void complex_mac(Acc& acc_re, Acc& acc_im, Acc a_re, Acc a_im, Acc w_re, Acc w_im) {
  acc_re += a_re * w_re - a_im * w_im;
  acc_im += a_re * w_im + a_im * w_re;
}

}  // namespace mix
}  // namespace dtwin
