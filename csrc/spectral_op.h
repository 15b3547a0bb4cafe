// dtwin::spectral_conv{1,2}d and their backward ops, device-generic: the transforms are ATen
// ops (matrix products with cached DFT bases, or FFTs), the mode mixing is a dtwin kernel
// (csrc/cpu/spectral.cpp, csrc/cuda/spectral.cu) that reads the retained modes where the
// transform left them and writes them where the inverse transform wants them: no full padded
// spectrum on the DFT path, no permute copies of the large tensors.
//
// Definition (the spec, dtwin/ops/spectral.py): with M retained modes and the default FFT norm,
//   1D: y = irfft(pad(einsum('bix,iox->box', rfft(x)[..., :M], w)), n=out_len)
//   2D: rows [:M1] and [-M1:] of dim -2 and columns [:M2] of rfft2(x) are mixed; the inverse puts
//       them back at rows [:M1] and [-M1:] of an out_shape grid: y = irfft2(..., s=out_shape).
// Both paths compute it exactly up to rounding; "auto" picks the cheaper (dft_is_cheaper).
#pragma once

#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "mix_op.h"

namespace dtwin {
namespace spectral {

using mix::Strides;
using MixFn = mix::Fn;

// Which transform is cheaper for one axis: a truncated DFT as a matrix product costs about
// 2 * modes multiply-adds per grid point, an FFT about c log2(n). Measured forward+backward on a
// 2-core AVX-512 CPU with MKL (bench/test_spectral.py, test_dft_vs_fft): the DFT wins up to
// 2 * modes ~ 4 log2(n), and at every mode count on grids of 64 points or fewer. Both give the
// same result to rounding. On CUDA (cuBLAS GEMMs against cuFFT, H100, bench/test_cuda.py) the
// DFT won in every measured case, 2 modes up to 18 log2(n) (1D 2048 points 32 modes: 0.97 ms
// vs 1.60 ms fwd+bwd; 2D 128x128 32x32 modes: 2.16 vs 3.44 ms): up to 24 log2(n) there.
inline bool dft_is_cheaper(int64_t n, int64_t modes_times_two, bool cuda = false) {
  int64_t log2n = 0;
  while ((int64_t(1) << (log2n + 1)) <= n) ++log2n;
  if (cuda) return n <= 256 || modes_times_two <= 24 * log2n;
  return n <= 64 || modes_times_two <= 4 * log2n;
}

inline bool is_reduced(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// c2r weight of rfft mode k on a grid of n points: 1 for the mean and the Nyquist mode, 2 for the
// others (they stand for a conjugate pair), 0 for modes an n-point inverse cannot hold.
inline double c2r_weight(int64_t k, int64_t n) {
  if (k > n / 2) return 0.0;
  return (k == 0 || 2 * k == n) ? 1.0 : 2.0;
}

// cos and sin of 2 pi r / n, the integer argument reduced first, exact at the quarter points
inline void twiddle(int64_t r, int64_t n, double& c, double& s) {
  r %= n;
  if (r < 0) r += n;
  if ((4 * r) % n == 0) {
    static const double cs[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
    const int q = static_cast<int>(4 * r / n);
    c = cs[q][0];
    s = cs[q][1];
    return;
  }
  const double a = 2.0 * M_PI * static_cast<double>(r) / static_cast<double>(n);
  c = std::cos(a);
  s = std::sin(a);
}

// Frequency of retained row r in 2D: rows [:M1] are 0..M1-1, rows [M1:2 M1] are -M1..-1.
inline int64_t row_frequency(int64_t r, int64_t M1) { return r < M1 ? r : r - 2 * M1; }

// ---- DFT bases, built once per (kind, sizes, dtype, device) in float64 on the CPU --------------

enum class Basis : int { R2C = 0, C2R = 1, C2C = 2, C2C_INV = 3 };

inline at::Tensor build_basis(Basis kind, int64_t n, int64_t modes) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  double c, s;
  if (kind == Basis::R2C) {  // [n, 2 modes]: x @ F = (Re | Im) of the first `modes` rfft modes
    at::Tensor F = at::empty({n, 2 * modes}, opts);
    auto a = F.accessor<double, 2>();
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < modes; ++k) {
        twiddle(k * t, n, c, s);
        a[t][k] = c;
        a[t][modes + k] = -s;
      }
    return F;
  }
  if (kind == Basis::C2R) {  // [2 modes, n]: (Re | Im) @ G = irfft(zero-padded modes, n)
    at::Tensor G = at::empty({2 * modes, n}, opts);
    auto a = G.accessor<double, 2>();
    for (int64_t k = 0; k < modes; ++k) {
      const double w = c2r_weight(k, n) / static_cast<double>(n);
      for (int64_t t = 0; t < n; ++t) {
        twiddle(k * t, n, c, s);
        a[k][t] = w * c;
        a[modes + k][t] = -w * s;
      }
    }
    return G;
  }
  // complex DFT along one axis for the 2 M1 retained rows, on real (Re; Im) stacks:
  //   C2C     [4 M1, 2 n]:     rows = retained frequencies, e^{-i theta} (forward, unnormalised)
  //   C2C_INV [2 n, 4 M1]:     e^{+i theta} / n (inverse, the default norm)
  const int64_t M1 = modes;
  const int64_t R = 2 * M1;
  if (kind == Basis::C2C) {
    at::Tensor K = at::empty({2 * R, 2 * n}, opts);
    auto a = K.accessor<double, 2>();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t h = 0; h < n; ++h) {
        twiddle(row_frequency(r, M1) * h, n, c, s);
        a[r][h] = c;
        a[r][n + h] = s;
        a[R + r][h] = -s;
        a[R + r][n + h] = c;
      }
    return K;
  }
  at::Tensor K = at::empty({2 * n, 2 * R}, opts);
  auto a = K.accessor<double, 2>();
  const double inv = 1.0 / static_cast<double>(n);
  for (int64_t h = 0; h < n; ++h)
    for (int64_t r = 0; r < R; ++r) {
      twiddle(row_frequency(r, M1) * h, n, c, s);
      a[h][r] = c * inv;
      a[h][R + r] = -s * inv;
      a[n + h][r] = s * inv;
      a[n + h][R + r] = c * inv;
    }
  return K;
}

inline at::Tensor basis(Basis kind, int64_t n, int64_t modes, const at::TensorOptions& opts) {
  using Key = std::tuple<int, int64_t, int64_t, int, int, int>;
  static std::mutex mutex;
  static std::map<Key, at::Tensor> cache;
  const Key key{static_cast<int>(kind), n, modes, static_cast<int>(opts.dtype().toScalarType()),
                static_cast<int>(opts.device().type()), static_cast<int>(opts.device().index())};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 128) cache.clear();
  at::Tensor b = build_basis(kind, n, modes).to(opts);
  cache.emplace(key, b);
  return b;
}

// ---- checks ---------------------------------------------------------------------------------

inline void check_inputs(const at::Tensor& x, const at::Tensor& weight, int64_t dims) {
  TORCH_CHECK(x.dim() == dims + 2, "spectral_conv", dims, "d: x must be [B, Cin", dims == 1 ? ", L" : ", H, W",
              "], got ", x.sizes());
  TORCH_CHECK(weight.dim() == dims + 2, "spectral_conv", dims, "d: weight must be [Cin, Cout",
              dims == 1 ? ", M" : ", 2*M1, M2", "], got ", weight.sizes());
  TORCH_CHECK(weight.is_complex(), "spectral_conv", dims, "d: weight must be complex, got ", weight.scalar_type());
  TORCH_CHECK(!x.is_complex() && at::isFloatingType(x.scalar_type()), "spectral_conv", dims,
              "d: x must be a real floating tensor, got ", x.scalar_type());
  TORCH_CHECK(x.device() == weight.device(), "spectral_conv", dims, "d: x is on ", x.device(), ", weight on ",
              weight.device());
  TORCH_CHECK(x.size(1) == weight.size(0), "spectral_conv", dims, "d: x has ", x.size(1),
              " channels but weight expects Cin = ", weight.size(0));
  TORCH_CHECK(x.scalar_type() == at::kDouble ? weight.scalar_type() == at::kComplexDouble
                                             : weight.scalar_type() == at::kComplexFloat,
              "spectral_conv", dims, "d: weight must be complex128 for float64 x, complex64 otherwise; got x ",
              x.scalar_type(), " and weight ", weight.scalar_type());
  TORCH_CHECK(!is_reduced(x.scalar_type()) || x.is_cuda(), "spectral_conv", dims,
              "d: float16/bfloat16 inputs are supported on CUDA; on the CPU use float32 or float64");
}

// ---- strided views of retained modes -------------------------------------------------------
//
// A Modes value is a complex array [b, j, m1, m2] inside a real tensor, described by strides;
// the mixing kernel reads and writes such views, so each transform leaves its result in the
// layout that suits its GEMM and nothing is permuted for the mixing.

using Modes = mix::View;

// The canonical layout [2 (re, im), R, B, C, M2]: what the 2D DFT produces, what the forward op
// returns for the backward to use (the retained modes of x).
inline Modes canonical_modes(const at::Tensor& t) {
  const int64_t R = t.size(1), B = t.size(2), C = t.size(3), M2 = t.size(4);
  return {t, {C * M2, M2, B * C * M2, 1, R * B * C * M2}};
}

inline at::Tensor to_canonical(const Modes& m, int64_t B, int64_t C, int64_t R, int64_t M2) {
  return at::as_strided(m.t, {2, R, B, C, M2}, {m.s.c, m.s.m1, m.s.b, m.s.j, m.s.m2}).contiguous();
}

// The same view with its two leading indices exchanged ([j, b, m1, m2]).
inline Modes swap_bj(const Modes& m) { return {m.t, {m.s.j, m.s.b, m.s.m1, m.s.m2, m.s.c}}; }

// The weight [Cin, Cout, (R,) M2] as the `w` operand [j = Cin, n = Cout, m1, m2]; transposed
// ([j = Cout, n = Cin]) for the input gradient.
inline Modes weight_modes(const at::Tensor& weight, bool transpose) {
  at::Tensor r = at::view_as_real(weight.resolve_conj());
  const bool two_d = weight.dim() == 4;
  const int64_t m1 = two_d ? r.stride(2) : 0, m2 = r.stride(two_d ? 3 : 2);
  return {r, transpose ? Strides{r.stride(1), r.stride(0), m1, m2, r.stride(-1)}
                       : Strides{r.stride(0), r.stride(1), m1, m2, r.stride(-1)}};
}

// ---- geometry -------------------------------------------------------------------------------
//
// Internally everything is 2D: x [B, C, H, W] with R = 2 M1 retained rows; 1D is H = 1, R = 1
// (frequency 0 only, no transform along H).

struct Geometry {
  int64_t B, Cin, Cout, H, W, R, M1, M2, Ho, Wo;
  bool two_d;
};

inline Geometry geometry(at::IntArrayRef x_size, const at::Tensor& weight, int64_t Ho, int64_t Wo, bool two_d) {
  Geometry g;
  g.B = x_size[0];
  g.Cin = x_size[1];
  g.Cout = weight.size(1);
  g.two_d = two_d;
  g.H = two_d ? x_size[2] : 1;
  g.W = x_size[x_size.size() - 1];
  g.M1 = two_d ? weight.size(2) / 2 : 0;
  g.R = two_d ? weight.size(2) : 1;
  g.M2 = weight.size(-1);
  g.Ho = Ho;
  g.Wo = Wo;
  return g;
}

inline bool choose_dft(c10::string_view algorithm, at::ScalarType dtype, const Geometry& g, bool cuda) {
  const bool cheaper = dft_is_cheaper(std::max(g.W, g.Wo), 2 * g.M2, cuda) &&
                       (!g.two_d || dft_is_cheaper(std::max(g.H, g.Ho), 4 * g.M1, cuda));
  if (algorithm == "dft") return true;
  if (algorithm == "fft") {
    TORCH_CHECK(!is_reduced(dtype), "spectral_conv: algorithm='fft' takes float32/float64 input; "
                "float16/bfloat16 use the DFT path");
    return false;
  }
  TORCH_CHECK(algorithm == "auto", "spectral_conv: algorithm must be 'auto', 'dft' or 'fft', got '",
              std::string(algorithm), "'");
  return is_reduced(dtype) || cheaper;
}

// ---- DFT path: every transform one GEMM --------------------------------------------------------

// The mode buffer of the DFT path for C channels: 1D [(b, c), (re/im, k)], the output layout of
// x @ F; 2D canonical [2, R, B, C, M2], the output layout of K @ A'.
inline Modes dft_buffer(const Geometry& g, int64_t C, const at::TensorOptions& opts) {
  if (!g.two_d) {
    at::Tensor t = at::empty({g.B * C, 2 * g.M2}, opts);
    return {t, {C * 2 * g.M2, 2 * g.M2, 0, 1, g.M2}};
  }
  return canonical_modes(at::empty({2, g.R, g.B, C, g.M2}, opts));
}

inline Modes dft_forward_modes(const at::Tensor& x, const Geometry& g) {
  const auto opts = x.options();
  at::Tensor A = at::mm(x.reshape({-1, g.W}), basis(Basis::R2C, g.W, g.M2, opts));  // [(b,c,h), (re/im,k2)]
  if (!g.two_d) return {A, {g.Cin * 2 * g.M2, 2 * g.M2, 0, 1, g.M2}};
  A = A.view({g.B * g.Cin, g.H, 2, g.M2}).permute({2, 1, 0, 3}).contiguous().view({2 * g.H, -1});
  return canonical_modes(at::mm(basis(Basis::C2C, g.H, g.M1, opts), A).view({2, g.R, g.B, g.Cin, g.M2}));
}

inline at::Tensor dft_inverse(const Modes& Y, const Geometry& g) {
  const auto opts = Y.t.options();
  at::Tensor G = basis(Basis::C2R, g.Wo, g.M2, opts);
  if (!g.two_d) return at::mm(Y.t, G).view({g.B, g.Cout, g.Wo});
  at::Tensor P = at::mm(basis(Basis::C2C_INV, g.Ho, g.M1, opts), Y.t.view({2 * g.R, -1}));  // [(re/im,h), (b,o,k2)]
  P = P.view({2, g.Ho, g.B * g.Cout, g.M2}).permute({2, 1, 0, 3}).contiguous().view({-1, 2 * g.M2});
  return at::mm(P, G).view({g.B, g.Cout, g.Ho, g.Wo});
}

inline Modes dft_inverse_adjoint(const at::Tensor& grad, const Geometry& g) {
  const auto opts = grad.options();
  at::Tensor P = at::mm(grad.reshape({-1, g.Wo}), basis(Basis::C2R, g.Wo, g.M2, opts).t());
  if (!g.two_d) return {P, {g.Cout * 2 * g.M2, 2 * g.M2, 0, 1, g.M2}};
  P = P.view({g.B * g.Cout, g.Ho, 2, g.M2}).permute({2, 1, 0, 3}).contiguous().view({2 * g.Ho, -1});
  return canonical_modes(
      at::mm(basis(Basis::C2C_INV, g.Ho, g.M1, opts).t(), P).view({2, g.R, g.B, g.Cout, g.M2}));
}

inline at::Tensor dft_forward_adjoint(const Modes& Z, const Geometry& g) {
  const auto opts = Z.t.options();
  at::Tensor F = basis(Basis::R2C, g.W, g.M2, opts);
  if (!g.two_d) return at::mm(Z.t, F.t()).view({g.B, g.Cin, g.W});
  at::Tensor A = at::mm(basis(Basis::C2C, g.H, g.M1, opts).t(), Z.t.view({2 * g.R, -1}));  // [(re/im,h), (b,i,k2)]
  A = A.view({2, g.H, g.B * g.Cin, g.M2}).permute({2, 1, 0, 3}).contiguous().view({-1, 2 * g.M2});
  return at::mm(A, F.t()).view({g.B, g.Cin, g.H, g.W});
}

// ---- FFT path ------------------------------------------------------------------------------

inline Modes complex_modes(const at::Tensor& c) {  // complex [B, C, R, m] contiguous
  at::Tensor r = at::view_as_real(c);
  return {r, {r.stride(0), r.stride(1), r.stride(2), r.stride(3), 1}};
}

inline at::Tensor fft_forward_modes(const at::Tensor& x, const Geometry& g) {
  at::Tensor spec = at::fft_rfft(x, c10::nullopt, -1).narrow(-1, 0, g.M2);
  if (!g.two_d) return spec.unsqueeze(2).contiguous();  // [B, C, 1, M2]
  spec = at::fft_fft(spec, c10::nullopt, -2);  // [B, C, H, M2]
  return at::cat({spec.narrow(2, 0, g.M1), spec.narrow(2, g.H - g.M1, g.M1)}, 2);
}

// Per-mode c2r weights w_k / n (or n / w_k) of the first m modes, as a real tensor.
inline at::Tensor c2r_scale(int64_t n, int64_t m, bool inverse, const at::TensorOptions& opts) {
  std::vector<double> v(m);
  for (int64_t k = 0; k < m; ++k) {
    const double w = c2r_weight(k, n);
    v[k] = inverse ? (w > 0 ? static_cast<double>(n) / w : 0.0) : w / static_cast<double>(n);
  }
  return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(opts);
}

// Scatter retained rows [B, C, R, m] (complex) into a zero [B, C, Hn, n2] spectrum ([B, C, n2] in 1D).
inline at::Tensor place_rows(const at::Tensor& Y, const Geometry& g, int64_t Hn, int64_t n2) {
  const int64_t m = Y.size(-1);
  if (!g.two_d) {
    at::Tensor full = at::zeros({Y.size(0), Y.size(1), n2}, Y.options());
    full.narrow(-1, 0, m).copy_(Y.select(2, 0));
    return full;
  }
  at::Tensor full = at::zeros({Y.size(0), Y.size(1), Hn, n2}, Y.options());
  full.narrow(2, 0, g.M1).narrow(-1, 0, m).copy_(Y.narrow(2, 0, g.M1));
  full.narrow(2, Hn - g.M1, g.M1).narrow(-1, 0, m).copy_(Y.narrow(2, g.M1, g.M1));
  return full;
}

// ---- forward and backward ---------------------------------------------------------------------

inline void mix(MixFn fn, const mix::Shape& shape, const Modes& in, bool conj_in, const Modes& w, bool conj_w,
                const Modes& out) {
  fn(mix::Call{shape, in, conj_in, w, conj_w, out});
}

// Returns y and the retained modes of x in the canonical layout [2, R, B, Cin, M2] (for the backward).
inline std::tuple<at::Tensor, at::Tensor> spectral_forward(MixFn fn, const at::Tensor& x_in, const at::Tensor& weight,
                                                           c10::string_view algorithm, int64_t Ho, int64_t Wo,
                                                           bool two_d) {
  const at::Tensor x = x_in.contiguous();
  const Geometry g = geometry(x.sizes(), weight, Ho, Wo, two_d);
  const Modes w = weight_modes(weight, false);
  if (choose_dft(algorithm, x.scalar_type(), g, x.is_cuda())) {
    const Modes X = dft_forward_modes(x, g);
    const Modes Y = dft_buffer(g, g.Cout, x.options());
    mix(fn, {g.B, g.Cin, g.Cout, g.R, g.M2}, X, false, w, false, Y);
    return {dft_inverse(Y, g), to_canonical(X, g.B, g.Cin, g.R, g.M2)};
  }
  const int64_t m2 = std::min(g.M2, g.Wo / 2 + 1);
  const Modes X = complex_modes(fft_forward_modes(x, g));
  at::Tensor Yc = at::empty({g.B, g.Cout, g.R, m2}, weight.options());
  mix(fn, {g.B, g.Cin, g.Cout, g.R, m2}, X, false, w, false, complex_modes(Yc));
  at::Tensor spec = place_rows(Yc, g, g.Ho, g.Wo / 2 + 1);
  if (two_d) spec = at::fft_ifft(spec, c10::nullopt, -2);
  return {at::fft_irfft(spec, g.Wo, -1), to_canonical(X, g.B, g.Cin, g.R, g.M2)};
}

// grad_x / grad_w that were not asked for come back as empty tensors (numel 0).
inline std::tuple<at::Tensor, at::Tensor> spectral_backward(MixFn fn, const at::Tensor& grad_in,
                                                            at::IntArrayRef x_size, const at::Tensor& weight,
                                                            const at::Tensor& modes, c10::string_view algorithm,
                                                            bool need_x, bool need_w, bool two_d) {
  const auto dtype = modes.scalar_type();
  const at::Tensor grad = grad_in.contiguous().to(dtype);
  const int64_t Ho = two_d ? grad.size(2) : 1, Wo = grad.size(-1);
  const Geometry g = geometry(x_size, weight, Ho, Wo, two_d);
  const auto opts = grad.options();
  const Modes X = canonical_modes(modes);
  at::Tensor grad_x = at::empty({0}, opts), grad_w = at::empty({0}, weight.options());
  const auto grad_w_modes = [&] {
    grad_w = at::zeros_like(weight);
    at::Tensor gw = at::view_as_real(grad_w).view({g.Cin, g.Cout, g.R, g.M2, 2});
    return Modes{gw, {gw.stride(0), gw.stride(1), gw.stride(2), gw.stride(3), 1}};
  };
  if (choose_dft(algorithm, dtype, g, grad.is_cuda())) {
    const Modes gY = dft_inverse_adjoint(grad, g);
    if (need_w)  // grad_w[i, o, m] = sum_b conj(X[b, i, m]) gY[b, o, m]: batch = i, J = b
      mix(fn, {g.Cin, g.B, g.Cout, g.R, g.M2}, swap_bj(X), true, gY, false, grad_w_modes());
    if (need_x) {
      const Modes gX = dft_buffer(g, g.Cin, opts);
      mix(fn, {g.B, g.Cout, g.Cin, g.R, g.M2}, gY, false, weight_modes(weight, true), true, gX);
      grad_x = dft_forward_adjoint(gX, g);
    }
    return {grad_x, grad_w};
  }
  const int64_t m2 = std::min(g.M2, g.Wo / 2 + 1);
  // adjoint of the inverse: rfft along W with the c2r weights, then (2D) fft along H over Ho
  at::Tensor gS = at::fft_rfft(grad, c10::nullopt, -1).narrow(-1, 0, m2) * c2r_scale(g.Wo, m2, false, opts);
  at::Tensor gYc;
  if (two_d) {
    gS = at::fft_fft(gS, c10::nullopt, -2) / static_cast<double>(g.Ho);
    gYc = at::cat({gS.narrow(2, 0, g.M1), gS.narrow(2, g.Ho - g.M1, g.M1)}, 2);
  } else {
    gYc = gS.unsqueeze(2).contiguous();
  }
  const Modes gY = complex_modes(gYc);
  if (need_w)
    mix(fn, {g.Cin, g.B, g.Cout, g.R, m2}, swap_bj(X), true, gY, false, grad_w_modes());
  if (need_x) {
    at::Tensor gXc = at::empty({g.B, g.Cin, g.R, m2}, weight.options());
    mix(fn, {g.B, g.Cout, g.Cin, g.R, m2}, gY, false, weight_modes(weight, true), true, complex_modes(gXc));
    at::Tensor spec = place_rows(gXc, g, g.H, m2);
    if (two_d) spec = at::fft_ifft(spec, c10::nullopt, -2) * static_cast<double>(g.H);
    // adjoint of rfft along W restricted to m2 modes: W * irfft(Z / w_k)
    at::Tensor Z = at::zeros({g.B, g.Cin, g.H, g.W / 2 + 1}, spec.options());
    Z.narrow(-1, 0, m2).copy_((two_d ? spec : spec.unsqueeze(2)) * c2r_scale(g.W, m2, true, opts) /
                              static_cast<double>(g.W));
    grad_x = at::fft_irfft(Z, g.W, -1) * static_cast<double>(g.W);
    if (!two_d) grad_x = grad_x.squeeze(2);
  }
  return {grad_x, grad_w};
}

// ---- op entry points (checks and output sizes) ------------------------------------------------

inline std::tuple<at::Tensor, at::Tensor> spectral_conv1d(MixFn fn, const at::Tensor& x, const at::Tensor& weight,
                                                          std::optional<int64_t> out_len,
                                                          c10::string_view algorithm) {
  check_inputs(x, weight, 1);
  const int64_t L = x.size(2), M = weight.size(2);
  TORCH_CHECK(M >= 1 && M <= L / 2 + 1, "spectral_conv1d: weight keeps M = ", M, " modes but x of length ", L,
              " has ", L / 2 + 1);
  const int64_t Lo = out_len.value_or(L);
  TORCH_CHECK(Lo >= 1, "spectral_conv1d: out_len must be >= 1, got ", Lo);
  return spectral_forward(fn, x, weight, algorithm, 1, Lo, false);
}

inline void check_backward(const at::Tensor& grad, at::IntArrayRef x_size, const at::Tensor& weight,
                           const at::Tensor& modes, int64_t dims) {
  TORCH_CHECK(static_cast<int64_t>(x_size.size()) == dims + 2, "spectral_conv", dims, "d_backward: x_size must have ",
              dims + 2, " entries, got ", x_size);
  TORCH_CHECK(grad.dim() == dims + 2 && grad.size(0) == x_size[0] && grad.size(1) == weight.size(1),
              "spectral_conv", dims, "d_backward: grad must be [B, Cout, ...] with B = ", x_size[0], ", Cout = ",
              weight.size(1), ", got ", grad.sizes());
  const int64_t R = dims == 2 ? weight.size(2) : 1;
  TORCH_CHECK(modes.dim() == 5 && modes.size(0) == 2 && modes.size(1) == R && modes.size(2) == x_size[0] &&
                  modes.size(3) == x_size[1] && modes.size(4) == weight.size(-1),
              "spectral_conv", dims, "d_backward: modes must be the forward's [2, R, B, Cin, M2], got ",
              modes.sizes());
}

inline std::tuple<at::Tensor, at::Tensor> spectral_conv1d_backward(MixFn fn, const at::Tensor& grad,
                                                                   at::IntArrayRef x_size, const at::Tensor& weight,
                                                                   const at::Tensor& modes,
                                                                   c10::string_view algorithm, bool need_x,
                                                                   bool need_w) {
  check_backward(grad, x_size, weight, modes, 1);
  return spectral_backward(fn, grad, x_size, weight, modes.contiguous(), algorithm, need_x, need_w, false);
}

inline std::tuple<at::Tensor, at::Tensor> spectral_conv2d(MixFn fn, const at::Tensor& x, const at::Tensor& weight,
                                                          at::OptionalIntArrayRef out_shape,
                                                          c10::string_view algorithm) {
  check_inputs(x, weight, 2);
  const int64_t H = x.size(2), W = x.size(3), R = weight.size(2), M2 = weight.size(3);
  TORCH_CHECK(R >= 2 && R % 2 == 0 && R <= H, "spectral_conv2d: weight's dim 2 holds 2*M1 rows (rows [:M1] and "
              "[-M1:]) with 2*M1 <= H = ", H, ", got ", R);
  TORCH_CHECK(M2 >= 1 && M2 <= W / 2 + 1, "spectral_conv2d: weight keeps M2 = ", M2, " columns but W = ", W,
              " has ", W / 2 + 1);
  int64_t Ho = H, Wo = W;
  if (out_shape.has_value()) {
    TORCH_CHECK(out_shape->size() == 2, "spectral_conv2d: out_shape must be (H_out, W_out), got ", *out_shape);
    Ho = (*out_shape)[0];
    Wo = (*out_shape)[1];
  }
  TORCH_CHECK(Ho >= R && Wo >= 1, "spectral_conv2d: out_shape (", Ho, ", ", Wo, ") must hold the 2*M1 = ", R,
              " retained rows");
  return spectral_forward(fn, x, weight, algorithm, Ho, Wo, true);
}

inline std::tuple<at::Tensor, at::Tensor> spectral_conv2d_backward(MixFn fn, const at::Tensor& grad,
                                                                   at::IntArrayRef x_size, const at::Tensor& weight,
                                                                   const at::Tensor& modes,
                                                                   c10::string_view algorithm, bool need_x,
                                                                   bool need_w) {
  check_backward(grad, x_size, weight, modes, 2);
  return spectral_backward(fn, grad, x_size, weight, modes.contiguous(), algorithm, need_x, need_w, true);
}

}  // namespace spectral
}  // namespace dtwin
