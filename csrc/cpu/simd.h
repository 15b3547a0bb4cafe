// SIMD lane type for the CPU kernels: one vector holds one value of W neurons.
//
// It wraps ATen's at::vec::Vectorized, whose exp/expm1 are SLEEF's 1-ulp vector functions
// (exported by libtorch_cpu). The instruction set is the build machine's (setup.py compiles
// with -march=native unless DTWIN_CPU_ARCH says otherwise); CPU_CAPABILITY is our own inline
// namespace name, so these instances never collide with libtorch's.
//
// Include this header before any other ATen header in a translation unit.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__)
#define CPU_CAPABILITY_AVX512 1
#define CPU_CAPABILITY dtwin_avx512
#define DTWIN_SIMD_NAME "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2 1
#define CPU_CAPABILITY dtwin_avx2
#define DTWIN_SIMD_NAME "avx2"
#else
#define CPU_CAPABILITY dtwin_default
#define DTWIN_SIMD_NAME "default"
#endif

#include <ATen/cpu/vec/vec.h>

#include <limits>

#include "dtwin/lanes.h"

namespace dtwin {
namespace simd {

template <class T>
struct VecMask {
  at::vec::Vectorized<T> r;  // lanes are all-ones (true) or all-zeros (false)
};

template <class T>
struct Vec {
  using Raw = at::vec::Vectorized<T>;
  static constexpr int W = Raw::size();
  Raw r;
  Vec() : r(T(0)) {}
  Vec(T c) : r(c) {}  // NOLINT: broadcasting a constant is the common case
  explicit Vec(const Raw& x) : r(x) {}
};

template <class T>
inline Vec<T> operator+(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(a.r + b.r); }
template <class T>
inline Vec<T> operator-(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(a.r - b.r); }
template <class T>
inline Vec<T> operator*(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(a.r * b.r); }
template <class T>
inline Vec<T> operator/(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(a.r / b.r); }
template <class T>
inline Vec<T> operator-(const Vec<T>& a) { return Vec<T>(a.r.neg()); }
template <class T>
inline Vec<T> operator+(const Vec<T>& a, T c) { return a + Vec<T>(c); }
template <class T>
inline Vec<T> operator+(T c, const Vec<T>& a) { return Vec<T>(c) + a; }
template <class T>
inline Vec<T> operator-(const Vec<T>& a, T c) { return a - Vec<T>(c); }
template <class T>
inline Vec<T> operator-(T c, const Vec<T>& a) { return Vec<T>(c) - a; }
template <class T>
inline Vec<T> operator*(const Vec<T>& a, T c) { return a * Vec<T>(c); }
template <class T>
inline Vec<T> operator*(T c, const Vec<T>& a) { return Vec<T>(c) * a; }
template <class T>
inline Vec<T> operator/(const Vec<T>& a, T c) { return a / Vec<T>(c); }
template <class T>
inline Vec<T> operator/(T c, const Vec<T>& a) { return Vec<T>(c) / a; }

template <class T>
inline VecMask<T> operator<(const Vec<T>& a, const Vec<T>& b) { return {a.r < b.r}; }
template <class T>
inline VecMask<T> operator<=(const Vec<T>& a, const Vec<T>& b) { return {a.r <= b.r}; }
template <class T>
inline VecMask<T> operator>(const Vec<T>& a, const Vec<T>& b) { return {a.r > b.r}; }
template <class T>
inline VecMask<T> operator>=(const Vec<T>& a, const Vec<T>& b) { return {a.r >= b.r}; }
template <class T>
inline VecMask<T> operator==(const Vec<T>& a, const Vec<T>& b) { return {a.r == b.r}; }

template <class T>
inline VecMask<T> mask_and(const VecMask<T>& a, const VecMask<T>& b) { return {a.r & b.r}; }
template <class T>
inline VecMask<T> mask_or(const VecMask<T>& a, const VecMask<T>& b) { return {a.r | b.r}; }
template <class T>
inline VecMask<T> mask_not(const VecMask<T>& a) {
  // a false lane is +0.0 and compares equal to zero; a true lane (all-ones bits) is a NaN
  return {a.r == at::vec::Vectorized<T>(T(0))};
}

template <class T>
inline Vec<T> vexp(const Vec<T>& x) { return Vec<T>(x.r.exp()); }
template <class T>
inline Vec<T> vexpm1(const Vec<T>& x) { return Vec<T>(x.r.expm1()); }
template <class T>
inline Vec<T> vabs(const Vec<T>& x) { return Vec<T>(x.r.abs()); }
template <class T>
inline Vec<T> vsqrt(const Vec<T>& x) { return Vec<T>(x.r.sqrt()); }
template <class T>
inline Vec<T> vpow(const Vec<T>& x, T y) { return Vec<T>(x.r.pow(at::vec::Vectorized<T>(y))); }
template <class T>
inline Vec<T> vmax(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(at::vec::maximum(a.r, b.r)); }
template <class T>
inline Vec<T> vmin(const Vec<T>& a, const Vec<T>& b) { return Vec<T>(at::vec::minimum(a.r, b.r)); }
template <class T>
inline Vec<T> vselect(const VecMask<T>& m, const Vec<T>& a, const Vec<T>& b) {
  return Vec<T>(at::vec::Vectorized<T>::blendv(b.r, a.r, m.r));
}
template <class T>
inline VecMask<T> vfinite(const Vec<T>& x) {
  return {x.r.abs() <= at::vec::Vectorized<T>(std::numeric_limits<T>::max())};
}

}  // namespace simd

template <class T>
struct ScalarOf<simd::Vec<T>> {
  using type = T;
};

template <class T>
struct Lanes<simd::Vec<T>> {
  using V = simd::Vec<T>;
  static constexpr int W = V::W;
  using Lane = T;
  using Value = V;
  using Mask = simd::VecMask<T>;
  static constexpr int kAll = (W >= 32) ? -1 : ((1 << W) - 1);

  static Lane get(const V& s, int l) {
    alignas(64) T tmp[W];
    s.r.store(tmp);
    return tmp[l];
  }
  static void set(V& s, int l, const Lane& v) {
    alignas(64) T tmp[W];
    s.r.store(tmp);
    tmp[l] = v;
    s.r = V::Raw::loadu(tmp);
  }
  // zero_mask() has bit l set where lane l compares equal to 0: false lanes of a mask
  static bool mget(const Mask& m, int l) { return ((m.r.zero_mask() >> l) & 1) == 0; }
  static bool any(const Mask& m) { return (m.r.zero_mask() & kAll) != kAll; }
  static Value load(const T* p) { return V(V::Raw::loadu(p)); }
  static void store(const Value& v, T* p) { v.r.store(p); }
};

}  // namespace dtwin
