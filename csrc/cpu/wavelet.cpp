// CPU kernels of the wavelet ops: the four per-level primitives of csrc/wavelet_op.h, W signals at
// once in SIMD lanes. A group of signals is gathered lane-contiguous into a window that already
// holds the boundary extension (or periodic wrap), so that the shared per-output functions of
// csrc/include/dtwin/wavelet.h (the same the CUDA kernel runs) read it without index reduction.
#include "simd.h"  // first: fixes the instruction set of ATen's vector types in this file

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../wavelet_op.h"

namespace dtwin {
namespace cpu {

namespace {

using wavelet::Batch;
using wavelet::View;

template <class T>
using Vec = simd::Vec<T>;

// A group of up to W signals of a batch: their element offsets in one view.
template <int W>
struct Group {
  int64_t first;
  int count;
  void offsets(const Batch& bt, const View& v, int64_t* off) const {
    for (int l = 0; l < count; ++l) {
      const int64_t sig = first + l;
      off[l] = (sig / bt.nb) * v.sa + (sig % bt.nb) * v.sb;
    }
  }
};

// The sample index that each position of a window [lo, hi] reads (-1: zero), computed once per call.
template <class Map>
std::vector<int64_t> window(int64_t lo, int64_t hi, Map sample) {
  std::vector<int64_t> idx(hi - lo + 1);
  for (int64_t pos = lo; pos <= hi; ++pos) idx[pos - lo] = sample(pos);
  return idx;
}

// Whether the group's signals sit next to each other (lane l at off[0] + l): then a position of
// all lanes is one contiguous vector.
template <int W>
bool adjacent(const int64_t* off, int count) {
  if (count != W) return false;
  for (int l = 1; l < W; ++l)
    if (off[l] != off[0] + l) return false;
  return true;
}

// buf[w * W + lane] = sample idx[w] of each lane's signal (zero for idx -1 and missing lanes):
// whole vectors when the signals are adjacent, else lane by lane so that each signal's samples
// are read in order.
template <class T, int W>
void gather(const Batch& bt, const View& v, const Group<W>& g, const std::vector<int64_t>& idx, T* buf) {
  int64_t off[W];
  g.offsets(bt, v, off);
  const T* p = v.t.data_ptr<T>();
  const int64_t n = static_cast<int64_t>(idx.size());
  if (adjacent<W>(off, g.count)) {
    for (int64_t w = 0; w < n; ++w) {
      if (idx[w] >= 0) {
        std::copy(p + off[0] + idx[w] * v.st, p + off[0] + idx[w] * v.st + W, buf + w * W);
      } else {
        std::fill(buf + w * W, buf + (w + 1) * W, T(0));
      }
    }
    return;
  }
  for (int l = 0; l < W; ++l) {
    if (l >= g.count) {
      for (int64_t w = 0; w < n; ++w) buf[w * W + l] = T(0);
      continue;
    }
    const T* row = p + off[l];
    for (int64_t w = 0; w < n; ++w) buf[w * W + l] = idx[w] >= 0 ? row[idx[w] * v.st] : T(0);
  }
}

template <class T, int W>
void scatter(const Batch& bt, const View& v, const Group<W>& g, const T* buf) {
  int64_t off[W];
  g.offsets(bt, v, off);
  T* p = v.t.data_ptr<T>();
  if (adjacent<W>(off, g.count)) {
    for (int64_t k = 0; k < v.len; ++k) std::copy(buf + k * W, buf + (k + 1) * W, p + off[0] + k * v.st);
    return;
  }
  for (int l = 0; l < g.count; ++l)
    for (int64_t k = 0; k < v.len; ++k) p[off[l] + k * v.st] = buf[k * W + l];
}

// Runs fn(group, scratch) over all signals of the batch, groups split over threads.
template <class T, int W, class Fn>
void for_groups(const Batch& bt, Fn fn) {
  const int64_t signals = bt.na * bt.nb;
  const int64_t groups = (signals + W - 1) / W;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> a, b, out;
    for (int64_t gi = begin; gi < end; ++gi) {
      const int64_t first = gi * W;
      const Group<W> g{first, static_cast<int>(std::min<int64_t>(W, signals - first))};
      fn(g, a, b, out);
    }
  });
}

template <class T>
Vec<T> load(const T* p) {
  return Vec<T>(Vec<T>::Raw::loadu(p));
}

template <class T>
void analysis_impl(Batch bt, const View& x, const View* lo, const View* hi, const at::Tensor& f_lo,
                   const at::Tensor& f_hi, int mode) {
  constexpr int W = Vec<T>::W;
  const int64_t L = x.len, F = f_lo.numel(), n = (lo ? lo : hi)->len;
  const int64_t first = wavelet::analysis_first(F, mode), last = wavelet::analysis_last(n, F, mode);
  const T* fl = f_lo.data_ptr<T>();
  const T* fh = f_hi.data_ptr<T>();
  const auto idx = window(first, last, [&](int64_t m) { return wavelet::extend(m, L, mode); });
  for_groups<T, W>(bt, [&](const Group<W>& g, std::vector<T>& ext, std::vector<T>&, std::vector<T>& out) {
    ext.resize((last - first + 1) * W);
    out.resize(n * W);
    gather<T, W>(bt, x, g, idx, ext.data());
    const T* e = ext.data();
    auto get = [&](int64_t m) { return load(e + (m - first) * W); };
    for (int side = 0; side < 2; ++side) {
      const View* v = side == 0 ? lo : hi;
      if (v == nullptr) continue;
      const T* f = side == 0 ? fl : fh;
      for (int64_t i = 0; i < v->len; ++i)
        wavelet::analysis_point<Vec<T>>(i, f, F, mode, get).r.store(out.data() + i * W);
      scatter<T, W>(bt, *v, g, out.data());
    }
  });
}

template <class T>
void analysis_adjoint_impl(Batch bt, const View* g_lo, const View* g_hi, const View& out_view, const at::Tensor& f_lo,
                           const at::Tensor& f_hi, int mode) {
  constexpr int W = Vec<T>::W;
  const int64_t L = out_view.len, F = f_lo.numel(), n = (g_lo ? g_lo : g_hi)->len;
  const T* fl = f_lo.data_ptr<T>();
  const T* fh = f_hi.data_ptr<T>();
  const auto idx = window(0, n - 1, [](int64_t i) { return i; });
  for_groups<T, W>(bt, [&](const Group<W>& g, std::vector<T>& a, std::vector<T>& b, std::vector<T>& out) {
    a.resize(n * W);
    b.resize(n * W);
    out.resize(L * W);
    if (g_lo) gather<T, W>(bt, *g_lo, g, idx, a.data());
    if (g_hi) gather<T, W>(bt, *g_hi, g, idx, b.data());
    auto get_a = [&](int64_t i) { return load(a.data() + i * W); };
    auto get_b = [&](int64_t i) { return load(b.data() + i * W); };
    for (int64_t k = 0; k < L; ++k) {
      Vec<T> acc(T(0));
      if (g_lo) acc = acc + wavelet::analysis_adjoint_point<Vec<T>>(k, fl, F, L, n, mode, get_a);
      if (g_hi) acc = acc + wavelet::analysis_adjoint_point<Vec<T>>(k, fh, F, L, n, mode, get_b);
      acc.r.store(out.data() + k * W);
    }
    scatter<T, W>(bt, out_view, g, out.data());
  });
}

template <class T>
void synthesis_impl(Batch bt, const View* a_view, const View* d_view, const View& out_view, const at::Tensor& g_lo,
                    const at::Tensor& g_hi, int mode) {
  constexpr int W = Vec<T>::W;
  const int64_t F = g_lo.numel(), n = (a_view ? a_view : d_view)->len, Lout = out_view.len;
  const bool symmetric = mode == wavelet::kSymmetric;
  // the coefficient positions read: [0, n) (symmetric), or the unreduced (p + j - F/2) / 2
  const int64_t lo = symmetric ? 0 : -(F / 2) / 2 - 1, hi = symmetric ? n - 1 : (Lout + F / 2) / 2 + 1;
  const T* gl = g_lo.data_ptr<T>();
  const T* gh = g_hi.data_ptr<T>();
  const auto idx = window(lo, hi, [&](int64_t u) { return wavelet::floor_mod(u, n); });
  for_groups<T, W>(bt, [&](const Group<W>& g, std::vector<T>& a, std::vector<T>& b, std::vector<T>& out) {
    a.resize((hi - lo + 1) * W);
    b.resize((hi - lo + 1) * W);
    out.resize(Lout * W);
    if (a_view) gather<T, W>(bt, *a_view, g, idx, a.data());
    if (d_view) gather<T, W>(bt, *d_view, g, idx, b.data());
    auto get_a = [&](int64_t u) { return load(a.data() + (u - lo) * W); };
    auto get_b = [&](int64_t u) { return load(b.data() + (u - lo) * W); };
    for (int64_t p = 0; p < Lout; ++p) {
      Vec<T> acc(T(0));
      if (a_view) acc = acc + wavelet::synthesis_point<Vec<T>>(p, gl, F, mode, get_a);
      if (d_view) acc = acc + wavelet::synthesis_point<Vec<T>>(p, gh, F, mode, get_b);
      acc.r.store(out.data() + p * W);
    }
    scatter<T, W>(bt, out_view, g, out.data());
  });
}

template <class T>
void synthesis_adjoint_impl(Batch bt, const View& g_view, const View* ga, const View* gd, const at::Tensor& g_lo,
                            const at::Tensor& g_hi, int mode) {
  constexpr int W = Vec<T>::W;
  const int64_t F = g_lo.numel(), n = (ga ? ga : gd)->len, Lg = g_view.len;
  const bool symmetric = mode == wavelet::kSymmetric;
  // the gradient positions read: [0, Lg) (symmetric), or the unreduced 2 k + F/2 - j (periodization)
  const int64_t lo = symmetric ? 0 : F / 2 - F + 1, hi = symmetric ? Lg - 1 : 2 * (n - 1) + F / 2;
  const T* gl = g_lo.data_ptr<T>();
  const T* gh = g_hi.data_ptr<T>();
  const auto idx = window(lo, hi, [&](int64_t q) {
    const int64_t r = symmetric ? q : wavelet::floor_mod(q, 2 * n);
    return r < Lg ? r : int64_t(-1);
  });
  for_groups<T, W>(bt, [&](const Group<W>& g, std::vector<T>& buf, std::vector<T>&, std::vector<T>& out) {
    buf.resize((hi - lo + 1) * W);
    out.resize(n * W);
    gather<T, W>(bt, g_view, g, idx, buf.data());
    auto get = [&](int64_t q) { return load(buf.data() + (q - lo) * W); };
    for (int side = 0; side < 2; ++side) {
      const View* v = side == 0 ? ga : gd;
      if (v == nullptr) continue;
      const T* f = side == 0 ? gl : gh;
      for (int64_t k = 0; k < v->len; ++k)
        wavelet::synthesis_adjoint_point<Vec<T>>(k, f, F, Lg, mode, get).r.store(out.data() + k * W);
      scatter<T, W>(bt, *v, g, out.data());
    }
  });
}

#define DTWIN_WAVELET_DISPATCH(tensor, fn, ...)                                     \
  do {                                                                              \
    if ((tensor).scalar_type() == at::kDouble) return fn<double>(__VA_ARGS__);      \
    TORCH_CHECK((tensor).scalar_type() == at::kFloat, "wavelet (CPU): float32 or float64, got ", \
                (tensor).scalar_type());                                            \
    return fn<float>(__VA_ARGS__);                                                  \
  } while (0)

void analysis_cpu(Batch bt, const View& x, const View* lo, const View* hi, const at::Tensor& f_lo,
                  const at::Tensor& f_hi, int mode) {
  DTWIN_WAVELET_DISPATCH(x.t, analysis_impl, bt, x, lo, hi, f_lo, f_hi, mode);
}
void analysis_adjoint_cpu(Batch bt, const View* g_lo, const View* g_hi, const View& out, const at::Tensor& f_lo,
                          const at::Tensor& f_hi, int mode) {
  DTWIN_WAVELET_DISPATCH(out.t, analysis_adjoint_impl, bt, g_lo, g_hi, out, f_lo, f_hi, mode);
}
void synthesis_cpu(Batch bt, const View* a, const View* d, const View& out, const at::Tensor& g_lo,
                   const at::Tensor& g_hi, int mode) {
  DTWIN_WAVELET_DISPATCH(out.t, synthesis_impl, bt, a, d, out, g_lo, g_hi, mode);
}
void synthesis_adjoint_cpu(Batch bt, const View& g, const View* ga, const View* gd, const at::Tensor& g_lo,
                           const at::Tensor& g_hi, int mode) {
  DTWIN_WAVELET_DISPATCH(g.t, synthesis_adjoint_impl, bt, g, ga, gd, g_lo, g_hi, mode);
}

const wavelet::Kernels kKernels{&analysis_cpu, &analysis_adjoint_cpu, &synthesis_cpu, &synthesis_adjoint_cpu};

}  // namespace

}  // namespace cpu
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CPU, m) { dtwin::wavelet::DeviceOps<dtwin::cpu::kKernels>::register_all(m); }
