// dtwin's wavelet ops (dwt1d, idwt1d, dwt2d, idwt2d, wavelet_conv1d, wavelet_conv2d and their
// backward ops), device-generic: multi-level chains, PyWavelets' trimming rules and the WNO
// layer are written here once over four per-level primitives that each device implements
// (csrc/cpu/wavelet.cpp, csrc/cuda/wavelet.cu); the arithmetic of a level is in
// csrc/include/dtwin/wavelet.h.
#pragma once

#include <ATen/Functions.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <ATen/core/List.h>

#include <optional>

#include <string>
#include <tuple>
#include <vector>

#include "dtwin/wavelet.h"

namespace dtwin {
namespace wavelet {

// A batch of 1D signals inside a tensor: sample k of signal (a, b) is element
// a * sa + b * sb + k * st (in elements of the tensor's dtype) from t.data_ptr(); `len` samples.
struct View {
  at::Tensor t;
  int64_t sa, sb, st, len;
};

struct Batch {
  int64_t na, nb;
};

// The four primitives of one level. Filters are contiguous tensors of the data dtype. Outputs are
// overwritten; a null output is not computed, a null input reads as zeros; an output shorter than
// the full transform is the full one cut short (PyWavelets' trimming), an input shorter than the
// full one reads zeros beyond its end.
struct Kernels {
  // lo/hi = analysis of x with f_lo / f_hi
  void (*analysis)(Batch, const View& x, const View* lo, const View* hi, const at::Tensor& f_lo,
                   const at::Tensor& f_hi, int mode);
  // out = transpose of analysis applied to (g_lo, g_hi); out.len is the signal length
  void (*analysis_adjoint)(Batch, const View* g_lo, const View* g_hi, const View& out, const at::Tensor& f_lo,
                           const at::Tensor& f_hi, int mode);
  // out = synthesis of (a, d): reconstruction filters for symmetric, decomposition for periodization
  void (*synthesis)(Batch, const View* a, const View* d, const View& out, const at::Tensor& g_lo,
                    const at::Tensor& g_hi, int mode);
  // (ga, gd) = transpose of synthesis applied to g
  void (*synthesis_adjoint)(Batch, const View& g, const View* ga, const View* gd, const at::Tensor& g_lo,
                            const at::Tensor& g_hi, int mode);
};

inline int parse_mode(c10::string_view mode) {
  if (mode == "symmetric") return kSymmetric;
  if (mode == "periodization") return kPeriodization;
  TORCH_CHECK(false, "wavelet: mode must be 'symmetric' or 'periodization', got '", std::string(mode), "'");
}

// The filters of one call, in the data dtype on the data device.
struct Filters {
  at::Tensor dec_lo, dec_hi, rec_lo, rec_hi;
  int64_t F;
  // what synthesis uses: PyWavelets' reconstruction filters (symmetric) or the transpose of the
  // decomposition (periodization)
  const at::Tensor& syn_lo(int mode) const { return mode == kSymmetric ? rec_lo : dec_lo; }
  const at::Tensor& syn_hi(int mode) const { return mode == kSymmetric ? rec_hi : dec_hi; }
};

// filters: [4, F] = (dec_lo, dec_hi, rec_lo, rec_hi) of pywt.Wavelet, F even
inline Filters make_filters(const at::Tensor& filters, const at::TensorOptions& opts) {
  TORCH_CHECK(filters.dim() == 2 && filters.size(0) == 4 && filters.size(1) >= 2 && filters.size(1) % 2 == 0,
              "wavelet: filters must be [4, F] (dec_lo, dec_hi, rec_lo, rec_hi) with F even, got ", filters.sizes());
  const at::Tensor f = filters.to(opts).contiguous();
  return {f.select(0, 0), f.select(0, 1), f.select(0, 2), f.select(0, 3), filters.size(1)};
}

// ---- views of contiguous tensors ------------------------------------------------------------

// [S, L] rows: signals a < S, samples along the row.
inline View rows(const at::Tensor& t, int64_t len) { return {t, t.size(-1), 0, 1, len}; }
// [S, H, W] along H: signals (s, w) with Batch {S, columns used}, samples h.
// An undefined tensor (a band not computed) gives an empty View, which `opt` then passes as null.
inline View along_h(const at::Tensor& t, int64_t len) {
  return t.defined() ? View{t, t.size(1) * t.size(2), 1, t.size(2), len} : View{};
}
// [S, H, W] along W: signals (s, h) with Batch {S, rows used}, samples w.
inline View along_w(const at::Tensor& t, int64_t len) {
  return t.defined() ? View{t, t.size(1) * t.size(2), t.size(2), 1, len} : View{};
}

inline std::vector<int64_t> level_lengths(int64_t L, int64_t F, int64_t levels, int mode) {
  std::vector<int64_t> n{L};
  for (int64_t l = 0; l < levels; ++l) n.push_back(analysis_len(n.back(), F, mode));
  return n;
}

inline int64_t max_level(int64_t L, int64_t F) {  // pywt.dwt_max_level: floor(log2(L / (F - 1)))
  int64_t level = 0;
  while ((F - 1) * (int64_t(1) << (level + 1)) <= L) ++level;
  return level;
}

inline void check_level(int64_t L, int64_t F, int64_t level, const char* what) {
  TORCH_CHECK(level >= 1 && level <= max_level(L, F), what, ": level must be in [1, ", max_level(L, F),
              "] for length ", L, " and a filter of length ", F, " (pywt.dwt_max_level), got ", level);
}

// ---- 1D ---------------------------------------------------------------------------------------

inline std::vector<at::Tensor> dwt1d(const Kernels& k, const at::Tensor& x_in, const Filters& f, int64_t level,
                                     int mode) {
  const int64_t L = x_in.size(-1);
  const at::Tensor x = x_in.reshape({-1, L}).contiguous();
  const int64_t S = x.size(0);
  const auto n = level_lengths(L, f.F, level, mode);
  std::vector<at::Tensor> details(level);
  at::Tensor a = x;
  for (int64_t l = 1; l <= level; ++l) {
    at::Tensor lo = at::empty({S, n[l]}, x.options()), hi = at::empty({S, n[l]}, x.options());
    const View vlo = rows(lo, n[l]), vhi = rows(hi, n[l]);
    k.analysis({S, 1}, rows(a, n[l - 1]), &vlo, &vhi, f.dec_lo, f.dec_hi, mode);
    details[l - 1] = hi;
    a = lo;
  }
  auto shaped = [&](const at::Tensor& t) {
    auto sizes = x_in.sizes().vec();
    sizes.back() = t.size(-1);
    return t.view(sizes);
  };
  std::vector<at::Tensor> out{shaped(a)};
  for (int64_t l = level; l >= 1; --l) out.push_back(shaped(details[l - 1]));
  return out;
}

inline at::Tensor dwt1d_backward(const Kernels& k, const std::vector<at::Tensor>& grads, const Filters& f,
                                 int64_t level, int mode, int64_t L, const at::TensorOptions& opts) {
  const auto n = level_lengths(L, f.F, level, mode);
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == level + 1, "dwt1d_backward: expected ", level + 1,
              " gradients, got ", grads.size());
  int64_t S = -1;
  for (const auto& g : grads)
    if (g.defined() && g.numel() > 0) S = g.numel() / g.size(-1);
  TORCH_CHECK(S >= 0, "dwt1d_backward: every gradient is empty");
  auto flat = [&](int64_t i) {
    const auto& g = grads[i];
    return (g.defined() && g.numel() > 0) ? g.reshape({S, -1}).to(opts).contiguous() : at::Tensor();
  };
  at::Tensor ga = flat(0);
  for (int64_t l = level; l >= 1; --l) {
    const at::Tensor gd = flat(level - l + 1);
    at::Tensor out = at::empty({S, n[l - 1]}, opts);
    const View va = ga.defined() ? rows(ga, n[l]) : View{}, vd = gd.defined() ? rows(gd, n[l]) : View{};
    k.analysis_adjoint({S, 1}, ga.defined() ? &va : nullptr, gd.defined() ? &vd : nullptr, rows(out, n[l - 1]),
                       f.dec_lo, f.dec_hi, mode);
    ga = out;
  }
  return ga;
}

inline at::Tensor idwt1d(const Kernels& k, const std::vector<at::Tensor>& coeffs, const Filters& f, int mode) {
  TORCH_CHECK(coeffs.size() >= 2, "idwt1d: coeffs must be [cA, cD_level, ..., cD_1], got ", coeffs.size(), " arrays");
  const at::Tensor& a0 = coeffs[0];
  const int64_t S = a0.numel() / a0.size(-1);
  at::Tensor a = a0.reshape({S, a0.size(-1)}).contiguous();
  for (size_t i = 1; i < coeffs.size(); ++i) {
    const at::Tensor d = coeffs[i].reshape({S, -1}).to(a.options()).contiguous();
    const int64_t nd = d.size(-1), na = a.size(-1);
    TORCH_CHECK(na == nd || na == nd + 1, "idwt1d: at step ", i, " the approximation has ", na,
                " coefficients but the detail ", nd, " (they must be equal, or the approximation one longer)");
    const int64_t out_len = synthesis_len(nd, f.F, mode);
    TORCH_CHECK(out_len >= 1 && (mode != kSymmetric || nd >= f.F / 2), "idwt1d: ", nd,
                " coefficients are too few for a filter of length ", f.F);
    at::Tensor out = at::empty({S, out_len}, a.options());
    const View va = rows(a, nd), vd = rows(d, nd);  // the approximation cut to the detail's length
    k.synthesis({S, 1}, &va, &vd, rows(out, out_len), f.syn_lo(mode), f.syn_hi(mode), mode);
    a = out;
  }
  auto sizes = a0.sizes().vec();
  sizes.back() = a.size(-1);
  return a.view(sizes);
}

inline at::Tensor pad_to(const at::Tensor& t, int64_t len) {
  return t.size(-1) == len ? t : at::constant_pad_nd(t, {0, len - t.size(-1)});
}

// lengths: [len(cA), len(cD_level), ..., len(cD_1)] of the forward's coefficients
inline std::vector<at::Tensor> idwt1d_backward(const Kernels& k, const at::Tensor& grad_in, at::IntArrayRef lengths,
                                               const Filters& f, int mode) {
  const int64_t steps = static_cast<int64_t>(lengths.size()) - 1;
  TORCH_CHECK(steps >= 1, "idwt1d_backward: lengths must list cA and at least one detail");
  const int64_t S = grad_in.numel() / grad_in.size(-1);
  at::Tensor g = grad_in.reshape({S, grad_in.size(-1)}).contiguous();
  std::vector<at::Tensor> out(lengths.size());
  for (int64_t i = steps; i >= 1; --i) {
    const int64_t nd = lengths[i];
    at::Tensor ga = at::empty({S, nd}, g.options()), gd = at::empty({S, nd}, g.options());
    const View va = rows(ga, nd), vd = rows(gd, nd);
    k.synthesis_adjoint({S, 1}, rows(g, g.size(-1)), &va, &vd, f.syn_lo(mode), f.syn_hi(mode), mode);
    out[i] = gd;
    // the approximation entering step i was cut to nd coefficients: the cut one gets no gradient
    g = pad_to(ga, i == 1 ? lengths[0] : synthesis_len(lengths[i - 1], f.F, mode));
  }
  out[0] = g;
  return out;
}

// ---- 2D: separable levels in PyWavelets' order ------------------------------------------------
//
// Analysis filters along H (dim -2), then W (dim -1); synthesis along W, then H. The bands of a
// level are, as pywt.dwt2: cA (lo, lo), cH (hi along H, lo along W), cV (lo, hi), cD (hi, hi).

struct Bands {
  at::Tensor a, h, v, d;  // [S, nH, nW] each; undefined = not computed / zero
};

inline const View* opt(const at::Tensor& t, View& storage, const View& v) {
  if (!t.defined()) return nullptr;
  storage = v;
  return &storage;
}

// One analysis level of x [S, H, W]; only cA when `details` is false.
inline Bands analysis2d(const Kernels& k, const at::Tensor& x, const Filters& f, int mode, bool details) {
  const int64_t S = x.size(0), H = x.size(1), W = x.size(2);
  const int64_t nH = analysis_len(H, f.F, mode), nW = analysis_len(W, f.F, mode);
  const auto opts = x.options();
  at::Tensor lo = at::empty({S, nH, W}, opts), hi = details ? at::empty({S, nH, W}, opts) : at::Tensor();
  View s_lo, s_hi;
  k.analysis({S, W}, along_h(x, H), opt(lo, s_lo, along_h(lo, nH)), opt(hi, s_hi, along_h(hi, nH)), f.dec_lo,
             f.dec_hi, mode);
  Bands out;
  auto along = [&](const at::Tensor& in, at::Tensor& first, at::Tensor& second) {
    first = at::empty({S, nH, nW}, opts);
    second = details ? at::empty({S, nH, nW}, opts) : at::Tensor();
    View a, b;
    k.analysis({S, nH}, along_w(in, W), opt(first, a, along_w(first, nW)), opt(second, b, along_w(second, nW)),
               f.dec_lo, f.dec_hi, mode);
  };
  along(lo, out.a, out.v);
  if (details) along(hi, out.h, out.d);
  return out;
}

// Transpose of analysis2d: the gradient of x [S, H, W] from the gradients of the bands.
inline at::Tensor analysis2d_adjoint(const Kernels& k, const Bands& g, int64_t S, int64_t H, int64_t W,
                                     const Filters& f, int mode, const at::TensorOptions& opts) {
  const int64_t nH = analysis_len(H, f.F, mode), nW = analysis_len(W, f.F, mode);
  auto along = [&](const at::Tensor& first, const at::Tensor& second) {
    if (!first.defined() && !second.defined()) return at::Tensor();
    at::Tensor out = at::empty({S, nH, W}, opts);
    View a, b;
    k.analysis_adjoint({S, nH}, opt(first, a, along_w(first, nW)), opt(second, b, along_w(second, nW)),
                       along_w(out, W), f.dec_lo, f.dec_hi, mode);
    return out;
  };
  const at::Tensor lo = along(g.a, g.v), hi = along(g.h, g.d);
  at::Tensor out = at::empty({S, H, W}, opts);
  View a, b;
  k.analysis_adjoint({S, W}, opt(lo, a, along_h(lo, nH)), opt(hi, b, along_h(hi, nH)), along_h(out, H), f.dec_lo,
                     f.dec_hi, mode);
  return out;
}

// One synthesis level: bands of shape [S, nH, nW] (cA possibly larger: read cut to nH x nW) into an
// output of [S, outH, outW] (at most the full synthesis size: a smaller one is the full one cut).
inline at::Tensor synthesis2d(const Kernels& k, const Bands& c, int64_t nH, int64_t nW, int64_t outH, int64_t outW,
                              const Filters& f, int mode, const at::TensorOptions& opts) {
  const int64_t S = (c.a.defined() ? c.a : c.h.defined() ? c.h : c.v.defined() ? c.v : c.d).size(0);
  auto along = [&](const at::Tensor& first, const at::Tensor& second) {
    if (!first.defined() && !second.defined()) return at::Tensor();
    at::Tensor out = at::empty({S, nH, outW}, opts);
    View a, b;
    k.synthesis({S, nH}, opt(first, a, along_w(first, nW)), opt(second, b, along_w(second, nW)), along_w(out, outW),
                f.syn_lo(mode), f.syn_hi(mode), mode);
    return out;
  };
  const at::Tensor lo = along(c.a, c.v), hi = along(c.h, c.d);
  at::Tensor out = at::empty({S, outH, outW}, opts);
  View a, b;
  k.synthesis({S, outW}, opt(lo, a, along_h(lo, nH)), opt(hi, b, along_h(hi, nH)), along_h(out, outH),
              f.syn_lo(mode), f.syn_hi(mode), mode);
  return out;
}

// Transpose of synthesis2d: band gradients [S, nH, nW] from g [S, outH, outW]; only cA when
// `details` is false.
inline Bands synthesis2d_adjoint(const Kernels& k, const at::Tensor& g, int64_t nH, int64_t nW, const Filters& f,
                                 int mode, bool details) {
  const int64_t S = g.size(0), outW = g.size(2);
  const auto opts = g.options();
  at::Tensor lo = at::empty({S, nH, outW}, opts), hi = details ? at::empty({S, nH, outW}, opts) : at::Tensor();
  View a, b;
  k.synthesis_adjoint({S, outW}, along_h(g, g.size(1)), opt(lo, a, along_h(lo, nH)), opt(hi, b, along_h(hi, nH)),
                      f.syn_lo(mode), f.syn_hi(mode), mode);
  Bands out;
  auto along = [&](const at::Tensor& in, at::Tensor& first, at::Tensor& second) {
    first = at::empty({S, nH, nW}, opts);
    second = details ? at::empty({S, nH, nW}, opts) : at::Tensor();
    View p, q;
    k.synthesis_adjoint({S, nH}, along_w(in, outW), opt(first, p, along_w(first, nW)), opt(second, q, along_w(second, nW)),
                        f.syn_lo(mode), f.syn_hi(mode), mode);
  };
  along(lo, out.a, out.v);
  if (details) along(hi, out.h, out.d);
  return out;
}

inline at::Tensor pad2d_to(const at::Tensor& t, int64_t H, int64_t W) {
  return (t.size(1) == H && t.size(2) == W) ? t : at::constant_pad_nd(t, {0, W - t.size(2), 0, H - t.size(1)});
}

// wavedec2: [cA, cH_level, cV_level, cD_level, ..., cH_1, cV_1, cD_1]
inline std::vector<at::Tensor> dwt2d(const Kernels& k, const at::Tensor& x_in, const Filters& f, int64_t level,
                                     int mode) {
  const int64_t H = x_in.size(-2), W = x_in.size(-1);
  at::Tensor a = x_in.reshape({-1, H, W}).contiguous();
  std::vector<Bands> levels;
  for (int64_t l = 0; l < level; ++l) {
    levels.push_back(analysis2d(k, a, f, mode, true));
    a = levels.back().a;
  }
  auto shaped = [&](const at::Tensor& t) {
    auto sizes = x_in.sizes().vec();
    sizes[sizes.size() - 2] = t.size(1);
    sizes.back() = t.size(2);
    return t.view(sizes);
  };
  std::vector<at::Tensor> out{shaped(a)};
  for (int64_t l = level - 1; l >= 0; --l) {
    out.push_back(shaped(levels[l].h));
    out.push_back(shaped(levels[l].v));
    out.push_back(shaped(levels[l].d));
  }
  return out;
}

inline at::Tensor dwt2d_backward(const Kernels& k, const std::vector<at::Tensor>& grads, const Filters& f,
                                 int64_t level, int mode, int64_t H, int64_t W, const at::TensorOptions& opts) {
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == 1 + 3 * level, "dwt2d_backward: expected ", 1 + 3 * level,
              " gradients, got ", grads.size());
  int64_t S = -1;
  for (const auto& g : grads)
    if (g.defined() && g.numel() > 0) S = g.numel() / (g.size(-1) * g.size(-2));
  TORCH_CHECK(S >= 0, "dwt2d_backward: every gradient is empty");
  auto flat = [&](int64_t i) {
    const auto& g = grads[i];
    return (g.defined() && g.numel() > 0) ? g.reshape({S, g.size(-2), g.size(-1)}).to(opts).contiguous() : at::Tensor();
  };
  const auto nH = level_lengths(H, f.F, level, mode), nW = level_lengths(W, f.F, level, mode);
  at::Tensor ga = flat(0);
  for (int64_t l = level; l >= 1; --l) {
    const int64_t i = 1 + 3 * (level - l);
    ga = analysis2d_adjoint(k, {ga, flat(i), flat(i + 1), flat(i + 2)}, S, nH[l - 1], nW[l - 1], f, mode, opts);
  }
  return ga;
}

// waverec2: the approximation is cut to the details' shape where one longer, as PyWavelets does.
inline at::Tensor idwt2d(const Kernels& k, const std::vector<at::Tensor>& coeffs, const Filters& f, int mode) {
  TORCH_CHECK(coeffs.size() >= 4 && (coeffs.size() - 1) % 3 == 0,
              "idwt2d: coeffs must be [cA, cH_level, cV_level, cD_level, ..., cH_1, cV_1, cD_1], got ", coeffs.size(),
              " arrays");
  const at::Tensor& a0 = coeffs[0];
  const int64_t S = a0.numel() / (a0.size(-1) * a0.size(-2));
  at::Tensor a = a0.reshape({S, a0.size(-2), a0.size(-1)}).contiguous();
  const auto opts = a.options();
  for (size_t i = 1; i < coeffs.size(); i += 3) {
    const int64_t nH = coeffs[i].size(-2), nW = coeffs[i].size(-1);
    for (size_t j = i; j < i + 3; ++j)
      TORCH_CHECK(coeffs[j].size(-2) == nH && coeffs[j].size(-1) == nW, "idwt2d: the three details of a level must "
                  "share one shape; got ", coeffs[i].sizes(), " and ", coeffs[j].sizes());
    TORCH_CHECK((a.size(1) == nH || a.size(1) == nH + 1) && (a.size(2) == nW || a.size(2) == nW + 1),
                "idwt2d: the approximation is ", a.size(1), " x ", a.size(2), " but the details ", nH, " x ", nW,
                " (they must be equal, or the approximation one longer)");
    const int64_t outH = synthesis_len(nH, f.F, mode), outW = synthesis_len(nW, f.F, mode);
    TORCH_CHECK(mode != kSymmetric || (nH >= f.F / 2 && nW >= f.F / 2), "idwt2d: ", nH, " x ", nW,
                " coefficients are too few for a filter of length ", f.F);
    auto flat = [&](size_t j) { return coeffs[j].reshape({S, nH, nW}).to(opts).contiguous(); };
    a = synthesis2d(k, {a, flat(i), flat(i + 1), flat(i + 2)}, nH, nW, outH, outW, f, mode, opts);
  }
  auto sizes = a0.sizes().vec();
  sizes[sizes.size() - 2] = a.size(1);
  sizes.back() = a.size(2);
  return a.view(sizes);
}

// shapes: [h, w] of each forward coefficient, flattened: [cA_h, cA_w, cH_h, cH_w, ...]
inline std::vector<at::Tensor> idwt2d_backward(const Kernels& k, const at::Tensor& grad_in, at::IntArrayRef shapes,
                                               const Filters& f, int mode) {
  const int64_t arrays = static_cast<int64_t>(shapes.size()) / 2;
  TORCH_CHECK(arrays >= 4 && (arrays - 1) % 3 == 0, "idwt2d_backward: shapes must list [h, w] of cA and of 3 "
              "details per level");
  const int64_t H = grad_in.size(-2), W = grad_in.size(-1);
  const int64_t S = grad_in.numel() / (H * W);
  at::Tensor g = grad_in.reshape({S, H, W}).contiguous();
  std::vector<at::Tensor> out(arrays);
  for (int64_t i = arrays - 3; i >= 1; i -= 3) {
    const int64_t nH = shapes[2 * i], nW = shapes[2 * i + 1];
    const Bands b = synthesis2d_adjoint(k, g, nH, nW, f, mode, true);
    out[i] = b.h;
    out[i + 1] = b.v;
    out[i + 2] = b.d;
    const bool first = i == 1;
    const int64_t pH = first ? shapes[0] : synthesis_len(shapes[2 * (i - 3)], f.F, mode);
    const int64_t pW = first ? shapes[1] : synthesis_len(shapes[2 * (i - 3) + 1], f.F, mode);
    g = pad2d_to(b.a, pH, pW);
  }
  out[0] = g;
  return out;
}

// ---- the WNO layer: transform, mix the coarsest bands, zero the finer details, invert --------

struct LayerShape {
  int64_t B, Cin, Cout, bands;
  std::vector<int64_t> nH, nW;  // lengths per level (nH = {1, 1, ...} in 1D)
  bool two_d;
};

// The WNO layer keeps coefficients mode-major, [bands, m, B, C] (m = m1 * m2 flattened): the
// transforms read and write them through strided views, and the mixing over channels is then one
// batched matrix product per (band, m) that the BLAS (MKL, cuBLAS) runs near its peak, with no
// layout copies. Views of one band of such a tensor as rows (signals (b, c), samples m):
inline View mode_major_rows(const at::Tensor& t, int64_t band, int64_t len) {
  const int64_t BC = t.size(2) * t.size(3);
  return {t.select(0, band), 1, 0, BC, len};
}
// out[band, m, b, n] = sum_j in[band, m, b, j] w[band, m, j, n]; w given as [bands, J, N, m]
// (the op's weight) or, with `transpose_w`, read as [bands, N, J, m].
inline at::Tensor mix_bands(const at::Tensor& in, const at::Tensor& w, bool transpose_w) {
  const int64_t bands = in.size(0), M = in.size(1), B = in.size(2), J = in.size(3);
  at::Tensor wm = w.reshape({bands, w.size(1), w.size(2), M}).permute({0, 3, 1, 2});  // [bands, M, ., .]
  if (transpose_w) wm = wm.transpose(2, 3);
  const int64_t N = wm.size(3);
  return at::bmm(in.reshape({bands * M, B, J}), wm.reshape({bands * M, J, N})).view({bands, M, B, N});
}

// grad_w[band, j, n, m] = sum_b in[band, m, b, j] g[band, m, b, n]
inline at::Tensor mix_bands_weight_grad(const at::Tensor& in, const at::Tensor& g) {
  const int64_t bands = in.size(0), M = in.size(1), B = in.size(2), J = in.size(3), N = g.size(3);
  const at::Tensor gw = at::bmm(in.reshape({bands * M, B, J}).transpose(1, 2), g.reshape({bands * M, B, N}));
  return gw.view({bands, M, J, N}).permute({0, 2, 3, 1}).contiguous();
}

// A band of a mode-major tensor as images [S, m1, m2] (a copy; the 2D path's coefficients are small).
inline at::Tensor band_images(const at::Tensor& t, int64_t band, int64_t m1, int64_t m2) {
  return t.select(0, band).reshape({m1, m2, -1}).permute({2, 0, 1}).contiguous();
}
inline void set_band(const at::Tensor& t, int64_t band, const at::Tensor& images) {
  t.select(0, band).view({images.size(1), images.size(2), -1}).copy_(images.permute({1, 2, 0}));
}

// x [B, Cin, (H,) W], weight [bands, Cin, Cout, (m1,) m2] -> (y [B, Cout, (H,) W], the coarsest
// coefficients of x, mode-major [bands, m1 * m2, B, Cin], for the backward)
inline std::tuple<at::Tensor, at::Tensor> wavelet_conv(const Kernels& k, const at::Tensor& x_in, const at::Tensor& weight,
                                                       const Filters& f, int64_t level, int mode, bool two_d) {
  const at::Tensor x = x_in.contiguous();
  const auto opts = x.options();
  const int64_t B = x.size(0), Cin = x.size(1), Cout = weight.size(2), S = B * Cin, So = B * Cout;
  const int64_t H = two_d ? x.size(2) : 1, W = x.size(-1);
  const auto nH = two_d ? level_lengths(H, f.F, level, mode) : std::vector<int64_t>(level + 1, 1);
  const auto nW = level_lengths(W, f.F, level, mode);
  const int64_t m1 = nH[level], m2 = nW[level], bands = two_d ? 4 : 2;
  TORCH_CHECK(weight.size(0) == bands && weight.size(1) == Cin && weight.size(-1) == m2 && (!two_d || weight.size(3) == m1),
              "wavelet_conv: weight must be [", bands, ", Cin = ", Cin, ", Cout, ", two_d ? std::to_string(m1) + ", " : "",
              m2, "] (bands x channels x the coarsest coefficients of level ", level, "), got ", weight.sizes());
  at::Tensor coarse = at::empty({bands, m1 * m2, B, Cin}, opts);
  at::Tensor a = two_d ? x.view({S, H, W}) : x.view({S, W});
  for (int64_t l = 1; l < level; ++l) {
    if (two_d) {
      a = analysis2d(k, a, f, mode, false).a;
    } else {
      at::Tensor lo = at::empty({S, nW[l]}, opts);
      const View v = rows(lo, nW[l]);
      k.analysis({S, 1}, rows(a, nW[l - 1]), &v, nullptr, f.dec_lo, f.dec_hi, mode);
      a = lo;
    }
  }
  if (two_d) {
    const Bands b = analysis2d(k, a, f, mode, true);
    const at::Tensor all[4] = {b.a, b.h, b.v, b.d};
    for (int64_t band = 0; band < 4; ++band) set_band(coarse, band, all[band]);
  } else {
    const View lo = mode_major_rows(coarse, 0, m2), hi = mode_major_rows(coarse, 1, m2);
    k.analysis({S, 1}, rows(a, nW[level - 1]), &lo, &hi, f.dec_lo, f.dec_hi, mode);
  }
  const at::Tensor mixed = mix_bands(coarse, weight.to(x.scalar_type()), false);  // [bands, m, B, Cout]
  if (two_d) {
    auto band = [&](int64_t i) { return band_images(mixed, i, m1, m2); };
    at::Tensor r = synthesis2d(k, {band(0), band(1), band(2), band(3)}, m1, m2, nH[level - 1], nW[level - 1], f, mode,
                               opts);
    for (int64_t l = level - 1; l >= 1; --l)
      r = synthesis2d(k, {r, {}, {}, {}}, nH[l], nW[l], nH[l - 1], nW[l - 1], f, mode, opts);
    return {r.view({B, Cout, H, W}), coarse};
  }
  at::Tensor r = at::empty({So, nW[level - 1]}, opts);
  const View va = mode_major_rows(mixed, 0, m2), vd = mode_major_rows(mixed, 1, m2);
  k.synthesis({So, 1}, &va, &vd, rows(r, nW[level - 1]), f.syn_lo(mode), f.syn_hi(mode), mode);
  for (int64_t l = level - 1; l >= 1; --l) {
    at::Tensor next = at::empty({So, nW[l - 1]}, opts);
    const View v = rows(r, nW[l]);
    k.synthesis({So, 1}, &v, nullptr, rows(next, nW[l - 1]), f.syn_lo(mode), f.syn_hi(mode), mode);
    r = next;
  }
  return {r.view({B, Cout, W}), coarse};
}

inline std::tuple<at::Tensor, at::Tensor> wavelet_conv_backward(const Kernels& k, const at::Tensor& grad_in,
                                                                const at::Tensor& weight, const at::Tensor& coarse,
                                                                const Filters& f, int64_t level, int mode, bool two_d,
                                                                bool need_x, bool need_w) {
  const at::Tensor g0 = grad_in.contiguous().to(coarse.scalar_type());
  const auto opts = g0.options();
  const int64_t bands = coarse.size(0), B = coarse.size(2), Cin = coarse.size(3);
  const int64_t Cout = weight.size(2), So = B * Cout, S = B * Cin;
  const int64_t H = two_d ? g0.size(2) : 1, W = g0.size(-1);
  const auto nH = two_d ? level_lengths(H, f.F, level, mode) : std::vector<int64_t>(level + 1, 1);
  const auto nW = level_lengths(W, f.F, level, mode);
  const int64_t m1 = nH[level], m2 = nW[level];
  // gradient of the mixed coarsest coefficients: the transpose of the inverse chain
  at::Tensor gmixed = at::empty({bands, m1 * m2, B, Cout}, opts);
  if (two_d) {
    at::Tensor g = g0.view({So, H, W});
    for (int64_t l = 1; l < level; ++l) g = synthesis2d_adjoint(k, g, nH[l], nW[l], f, mode, false).a;
    const Bands b = synthesis2d_adjoint(k, g, m1, m2, f, mode, true);
    const at::Tensor all[4] = {b.a, b.h, b.v, b.d};
    for (int64_t band = 0; band < 4; ++band) set_band(gmixed, band, all[band]);
  } else {
    at::Tensor g = g0.view({So, W});
    for (int64_t l = 1; l < level; ++l) {
      at::Tensor ga = at::empty({So, nW[l]}, opts);
      const View v = rows(ga, nW[l]);
      k.synthesis_adjoint({So, 1}, rows(g, nW[l - 1]), &v, nullptr, f.syn_lo(mode), f.syn_hi(mode), mode);
      g = ga;
    }
    const View va = mode_major_rows(gmixed, 0, m2), vd = mode_major_rows(gmixed, 1, m2);
    k.synthesis_adjoint({So, 1}, rows(g, nW[level - 1]), &va, &vd, f.syn_lo(mode), f.syn_hi(mode), mode);
  }
  at::Tensor grad_w = at::empty({0}, weight.options()), grad_x = at::empty({0}, opts);
  if (need_w) grad_w = mix_bands_weight_grad(coarse, gmixed).view(weight.sizes()).to(weight.scalar_type());
  if (need_x) {
    const at::Tensor gcoarse = mix_bands(gmixed, weight.to(coarse.scalar_type()), true);  // [bands, m, B, Cin]
    if (two_d) {
      auto band = [&](int64_t i) { return band_images(gcoarse, i, m1, m2); };
      at::Tensor g = analysis2d_adjoint(k, {band(0), band(1), band(2), band(3)}, S, nH[level - 1], nW[level - 1], f,
                                        mode, opts);
      for (int64_t l = level - 1; l >= 1; --l)
        g = analysis2d_adjoint(k, {g, {}, {}, {}}, S, nH[l - 1], nW[l - 1], f, mode, opts);
      grad_x = g.view({B, Cin, H, W});
    } else {
      at::Tensor g = at::empty({S, nW[level - 1]}, opts);
      const View va = mode_major_rows(gcoarse, 0, m2), vd = mode_major_rows(gcoarse, 1, m2);
      k.analysis_adjoint({S, 1}, &va, &vd, rows(g, nW[level - 1]), f.dec_lo, f.dec_hi, mode);
      for (int64_t l = level - 1; l >= 1; --l) {
        at::Tensor next = at::empty({S, nW[l - 1]}, opts);
        const View v = rows(g, nW[l]);
        k.analysis_adjoint({S, 1}, &v, nullptr, rows(next, nW[l - 1]), f.dec_lo, f.dec_hi, mode);
        g = next;
      }
      grad_x = g.view({B, Cin, W});
    }
  }
  return {grad_x, grad_w};
}

// ---- op entry points --------------------------------------------------------------------------

inline void check_signal(const at::Tensor& x, int64_t dims, const char* op) {
  TORCH_CHECK(x.dim() >= dims && at::isFloatingType(x.scalar_type()) &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              op, ": x must be a float32/float64 tensor with at least ", dims, " dims, got ", x.scalar_type(), " ",
              x.sizes());
}

inline std::vector<at::Tensor> unwrap(const c10::List<std::optional<at::Tensor>>& list) {
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::optional<at::Tensor> t = list.get(i);
    out.push_back(t.has_value() ? *t : at::Tensor());
  }
  return out;
}

// The kernels work on [S, ...] rows; the ops give back the leading dims of their inputs.
inline at::Tensor with_leading(const at::Tensor& t, const at::Tensor& like, int64_t trailing) {
  auto sizes = like.sizes().vec();
  sizes.resize(sizes.size() - trailing);
  for (int64_t d = t.dim() - trailing; d < t.dim(); ++d) sizes.push_back(t.size(d));
  return t.view(sizes);
}

inline const at::Tensor& first_defined(const std::vector<at::Tensor>& ts, const char* op) {
  for (const auto& t : ts)
    if (t.defined()) return t;
  TORCH_CHECK(false, op, ": every gradient is undefined");
}

inline std::vector<at::Tensor> dwt1d_op(const Kernels& k, const at::Tensor& x, const at::Tensor& filters, int64_t level,
                                        c10::string_view mode) {
  check_signal(x, 1, "dwt1d");
  const Filters f = make_filters(filters, x.options());
  check_level(x.size(-1), f.F, level, "dwt1d");
  return dwt1d(k, x, f, level, parse_mode(mode));
}

inline at::Tensor dwt1d_backward_op(const Kernels& k, const c10::List<std::optional<at::Tensor>>& grads,
                                    const at::Tensor& filters, int64_t level, c10::string_view mode, int64_t length) {
  const auto g = unwrap(grads);
  const at::Tensor& like = first_defined(g, "dwt1d_backward");
  return with_leading(dwt1d_backward(k, g, make_filters(filters, like.options()), level, parse_mode(mode), length,
                                     like.options()),
                      like, 1);
}

inline at::Tensor idwt1d_op(const Kernels& k, at::TensorList coeffs, const at::Tensor& filters, c10::string_view mode) {
  TORCH_CHECK(coeffs.size() >= 2, "idwt1d: coeffs must be [cA, cD_level, ..., cD_1]");
  check_signal(coeffs[0], 1, "idwt1d");
  return idwt1d(k, coeffs.vec(), make_filters(filters, coeffs[0].options()), parse_mode(mode));
}

inline std::vector<at::Tensor> idwt1d_backward_op(const Kernels& k, const at::Tensor& grad, at::IntArrayRef lengths,
                                                  const at::Tensor& filters, c10::string_view mode) {
  auto out = idwt1d_backward(k, grad, lengths, make_filters(filters, grad.options()), parse_mode(mode));
  for (auto& t : out) t = with_leading(t, grad, 1);
  return out;
}

inline std::vector<at::Tensor> dwt2d_op(const Kernels& k, const at::Tensor& x, const at::Tensor& filters, int64_t level,
                                        c10::string_view mode) {
  check_signal(x, 2, "dwt2d");
  const Filters f = make_filters(filters, x.options());
  check_level(std::min(x.size(-1), x.size(-2)), f.F, level, "dwt2d");
  return dwt2d(k, x, f, level, parse_mode(mode));
}

inline at::Tensor dwt2d_backward_op(const Kernels& k, const c10::List<std::optional<at::Tensor>>& grads,
                                    const at::Tensor& filters, int64_t level, c10::string_view mode, int64_t height,
                                    int64_t width) {
  const auto g = unwrap(grads);
  const at::Tensor& like = first_defined(g, "dwt2d_backward");
  TORCH_CHECK(like.dim() >= 2, "dwt2d_backward: gradients must have at least 2 dims, got ", like.sizes());
  return with_leading(dwt2d_backward(k, g, make_filters(filters, like.options()), level, parse_mode(mode), height,
                                     width, like.options()),
                      like, 2);
}

inline at::Tensor idwt2d_op(const Kernels& k, at::TensorList coeffs, const at::Tensor& filters, c10::string_view mode) {
  TORCH_CHECK(!coeffs.empty(), "idwt2d: coeffs must be [cA, cH_level, cV_level, cD_level, ...]");
  check_signal(coeffs[0], 2, "idwt2d");
  return idwt2d(k, coeffs.vec(), make_filters(filters, coeffs[0].options()), parse_mode(mode));
}

inline std::vector<at::Tensor> idwt2d_backward_op(const Kernels& k, const at::Tensor& grad, at::IntArrayRef shapes,
                                                  const at::Tensor& filters, c10::string_view mode) {
  TORCH_CHECK(grad.dim() >= 2, "idwt2d_backward: grad must have at least 2 dims, got ", grad.sizes());
  auto out = idwt2d_backward(k, grad, shapes, make_filters(filters, grad.options()), parse_mode(mode));
  for (auto& t : out) t = with_leading(t, grad, 2);
  return out;
}

inline std::tuple<at::Tensor, at::Tensor> wavelet_conv_op(const Kernels& k, const at::Tensor& x,
                                                          const at::Tensor& weight, const at::Tensor& filters,
                                                          int64_t level, c10::string_view mode, bool two_d) {
  const char* op = two_d ? "wavelet_conv2d" : "wavelet_conv1d";
  check_signal(x, two_d ? 4 : 3, op);
  TORCH_CHECK(x.dim() == (two_d ? 4 : 3), op, ": x must be [B, Cin, ", two_d ? "H, W" : "L", "], got ", x.sizes());
  TORCH_CHECK(weight.dim() == (two_d ? 5 : 4) && weight.scalar_type() == x.scalar_type() && weight.device() == x.device(),
              op, ": weight must be [", two_d ? 4 : 2, ", Cin, Cout, ", two_d ? "m1, m2" : "m", "] of x's dtype and "
              "device, got ", weight.scalar_type(), " ", weight.sizes());
  const Filters f = make_filters(filters, x.options());
  check_level(two_d ? std::min(x.size(2), x.size(3)) : x.size(2), f.F, level, op);
  return wavelet_conv(k, x, weight, f, level, parse_mode(mode), two_d);
}

inline std::tuple<at::Tensor, at::Tensor> wavelet_conv_backward_op(const Kernels& k, const at::Tensor& grad,
                                                                   const at::Tensor& weight, const at::Tensor& coarse,
                                                                   const at::Tensor& filters, int64_t level,
                                                                   c10::string_view mode, bool two_d, bool need_x,
                                                                   bool need_w) {
  TORCH_CHECK(coarse.dim() == 4 && grad.dim() == (two_d ? 4 : 3) && grad.size(0) == coarse.size(2),
              "wavelet_conv_backward: grad [B, Cout, ...] and the forward's coarse coefficients [bands, m, B, Cin] do "
              "not match: ", grad.sizes(), " and ", coarse.sizes());
  return wavelet_conv_backward(k, grad, weight, coarse, make_filters(filters, coarse.options()), level,
                               parse_mode(mode), two_d, need_x, need_w);
}

// ---- the ops on one device's kernels, as plain functions the dispatcher takes -------------
//
// csrc/cpu/wavelet.cpp and csrc/cuda/bindings.cpp register DeviceOps<their Kernels, their device
// guard>::register_all(m) inside TORCH_LIBRARY_IMPL: the signatures are written once, here.

struct NoGuard {
  explicit NoGuard(at::Device) {}
};

template <const Kernels& K, typename Guard = NoGuard>
struct DeviceOps {
  using Grads = c10::List<std::optional<at::Tensor>>;

  static at::Device device_of(const Grads& grads) {
    for (size_t i = 0; i < grads.size(); ++i) {
      const std::optional<at::Tensor> t = grads.get(i);
      if (t.has_value() && t->defined()) return t->device();
    }
    TORCH_CHECK(false, "wavelet backward: every gradient is undefined");
  }
  static at::Device device_of(at::TensorList ts) {
    TORCH_CHECK(!ts.empty(), "wavelet inverse: coeffs is empty");
    return ts[0].device();
  }

  static std::vector<at::Tensor> dwt1d(const at::Tensor& x, const at::Tensor& filters, int64_t level,
                                       c10::string_view mode) {
    const Guard guard(x.device());
    return dwt1d_op(K, x, filters, level, mode);
  }
  static at::Tensor dwt1d_backward(const Grads& grads, const at::Tensor& filters, int64_t level, c10::string_view mode,
                                   int64_t length) {
    const Guard guard(device_of(grads));
    return dwt1d_backward_op(K, grads, filters, level, mode, length);
  }
  static at::Tensor idwt1d(at::TensorList coeffs, const at::Tensor& filters, c10::string_view mode) {
    const Guard guard(device_of(coeffs));
    return idwt1d_op(K, coeffs, filters, mode);
  }
  static std::vector<at::Tensor> idwt1d_backward(const at::Tensor& grad, at::IntArrayRef lengths,
                                                 const at::Tensor& filters, c10::string_view mode) {
    const Guard guard(grad.device());
    return idwt1d_backward_op(K, grad, lengths, filters, mode);
  }
  static std::vector<at::Tensor> dwt2d(const at::Tensor& x, const at::Tensor& filters, int64_t level,
                                       c10::string_view mode) {
    const Guard guard(x.device());
    return dwt2d_op(K, x, filters, level, mode);
  }
  static at::Tensor dwt2d_backward(const Grads& grads, const at::Tensor& filters, int64_t level, c10::string_view mode,
                                   int64_t height, int64_t width) {
    const Guard guard(device_of(grads));
    return dwt2d_backward_op(K, grads, filters, level, mode, height, width);
  }
  static at::Tensor idwt2d(at::TensorList coeffs, const at::Tensor& filters, c10::string_view mode) {
    const Guard guard(device_of(coeffs));
    return idwt2d_op(K, coeffs, filters, mode);
  }
  static std::vector<at::Tensor> idwt2d_backward(const at::Tensor& grad, at::IntArrayRef shapes,
                                                 const at::Tensor& filters, c10::string_view mode) {
    const Guard guard(grad.device());
    return idwt2d_backward_op(K, grad, shapes, filters, mode);
  }
  template <bool TwoD>
  static std::tuple<at::Tensor, at::Tensor> conv(const at::Tensor& x, const at::Tensor& weight,
                                                 const at::Tensor& filters, int64_t level, c10::string_view mode) {
    const Guard guard(x.device());
    return wavelet_conv_op(K, x, weight, filters, level, mode, TwoD);
  }
  template <bool TwoD>
  static std::tuple<at::Tensor, at::Tensor> conv_backward(const at::Tensor& grad, const at::Tensor& weight,
                                                          const at::Tensor& coarse, const at::Tensor& filters,
                                                          int64_t level, c10::string_view mode, bool need_x,
                                                          bool need_w) {
    const Guard guard(grad.device());
    return wavelet_conv_backward_op(K, grad, weight, coarse, filters, level, mode, TwoD, need_x, need_w);
  }

  template <typename Library>
  static void register_all(Library& m) {
    m.impl("dwt1d", &dwt1d);
    m.impl("dwt1d_backward", &dwt1d_backward);
    m.impl("idwt1d", &idwt1d);
    m.impl("idwt1d_backward", &idwt1d_backward);
    m.impl("dwt2d", &dwt2d);
    m.impl("dwt2d_backward", &dwt2d_backward);
    m.impl("idwt2d", &idwt2d);
    m.impl("idwt2d_backward", &idwt2d_backward);
    m.impl("wavelet_conv1d", &conv<false>);
    m.impl("wavelet_conv1d_backward", &conv_backward<false>);
    m.impl("wavelet_conv2d", &conv<true>);
    m.impl("wavelet_conv2d_backward", &conv_backward<true>);
  }
};

}  // namespace wavelet
}  // namespace dtwin
