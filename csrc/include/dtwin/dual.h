// Forward-mode dual numbers over a lane type S: a value and P directional derivatives.
//
// Running a time-stepping scheme on Dual<S, P> instead of S gives the exact derivatives of the
// discrete solution (the tangent-linear scheme), which is what gradcheck compares against and
// what a Gauss-Newton step needs. S is a float/double on CUDA and a SIMD vector on the CPU.
#pragma once

#include "dtwin/macros.h"

namespace dtwin {

template <class S, int P>
struct Dual {
  using T = scalar_t<S>;
  S v;
  S d[P];

  DTWIN_HD Dual() : v(T(0)) {
    for (int i = 0; i < P; ++i) d[i] = S(T(0));
  }
  // A constant: zero derivatives. Implicit so that scalar literals mix into dual expressions.
  DTWIN_HD Dual(T c) : v(c) {
    for (int i = 0; i < P; ++i) d[i] = S(T(0));
  }
  DTWIN_HD explicit Dual(const S& value, int) : v(value) {
    for (int i = 0; i < P; ++i) d[i] = S(T(0));
  }
};

template <class S, int P>
struct ScalarOf<Dual<S, P>> {
  using type = scalar_t<S>;
};

template <class S, int P>
DTWIN_HD Dual<S, P> operator+(const Dual<S, P>& a, const Dual<S, P>& b) {
  Dual<S, P> r;
  r.v = a.v + b.v;
  for (int i = 0; i < P; ++i) r.d[i] = a.d[i] + b.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator-(const Dual<S, P>& a, const Dual<S, P>& b) {
  Dual<S, P> r;
  r.v = a.v - b.v;
  for (int i = 0; i < P; ++i) r.d[i] = a.d[i] - b.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator-(const Dual<S, P>& a) {
  Dual<S, P> r;
  r.v = -a.v;
  for (int i = 0; i < P; ++i) r.d[i] = -a.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator*(const Dual<S, P>& a, const Dual<S, P>& b) {
  Dual<S, P> r;
  r.v = a.v * b.v;
  for (int i = 0; i < P; ++i) r.d[i] = a.d[i] * b.v + a.v * b.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator/(const Dual<S, P>& a, const Dual<S, P>& b) {
  Dual<S, P> r;
  const S inv = S(scalar_t<S>(1)) / b.v;
  r.v = a.v * inv;
  for (int i = 0; i < P; ++i) r.d[i] = (a.d[i] - r.v * b.d[i]) * inv;
  return r;
}

// Mixed operations with a plain scalar constant.
template <class S, int P>
DTWIN_HD Dual<S, P> operator+(const Dual<S, P>& a, scalar_t<S> c) {
  Dual<S, P> r = a;
  r.v = a.v + S(c);
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator+(scalar_t<S> c, const Dual<S, P>& a) {
  return a + c;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator-(const Dual<S, P>& a, scalar_t<S> c) {
  Dual<S, P> r = a;
  r.v = a.v - S(c);
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator-(scalar_t<S> c, const Dual<S, P>& a) {
  Dual<S, P> r;
  r.v = S(c) - a.v;
  for (int i = 0; i < P; ++i) r.d[i] = -a.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator*(const Dual<S, P>& a, scalar_t<S> c) {
  Dual<S, P> r;
  const S cs(c);
  r.v = a.v * cs;
  for (int i = 0; i < P; ++i) r.d[i] = a.d[i] * cs;
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator*(scalar_t<S> c, const Dual<S, P>& a) {
  return a * c;
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator/(const Dual<S, P>& a, scalar_t<S> c) {
  return a * (scalar_t<S>(1) / c);
}
template <class S, int P>
DTWIN_HD Dual<S, P> operator/(scalar_t<S> c, const Dual<S, P>& b) {
  return Dual<S, P>(c) / b;
}

// Comparisons look at the values only and return the value type's mask.
template <class S, int P>
DTWIN_HD auto operator<(const Dual<S, P>& a, const Dual<S, P>& b) {
  return a.v < b.v;
}
template <class S, int P>
DTWIN_HD auto operator<=(const Dual<S, P>& a, const Dual<S, P>& b) {
  return a.v <= b.v;
}
template <class S, int P>
DTWIN_HD auto operator>(const Dual<S, P>& a, const Dual<S, P>& b) {
  return a.v > b.v;
}
template <class S, int P>
DTWIN_HD auto operator>=(const Dual<S, P>& a, const Dual<S, P>& b) {
  return a.v >= b.v;
}

// Elementary functions: value and chain rule.
template <class S, int P>
DTWIN_HD Dual<S, P> unary(const Dual<S, P>& a, const S& f, const S& df) {
  Dual<S, P> r;
  r.v = f;
  for (int i = 0; i < P; ++i) r.d[i] = df * a.d[i];
  return r;
}
template <class S, int P>
DTWIN_HD Dual<S, P> vexp(const Dual<S, P>& a) {
  const S e = vexp(a.v);
  return unary(a, e, e);
}
template <class S, int P>
DTWIN_HD Dual<S, P> vexpm1(const Dual<S, P>& a) {
  return unary(a, vexpm1(a.v), vexp(a.v));
}
template <class S, int P>
DTWIN_HD Dual<S, P> vsqrt(const Dual<S, P>& a) {
  const S s = vsqrt(a.v);
  return unary(a, s, S(scalar_t<S>(0.5)) / s);
}
template <class S, int P, class M>
DTWIN_HD Dual<S, P> vselect(const M& mask, const Dual<S, P>& a, const Dual<S, P>& b) {
  Dual<S, P> r;
  r.v = vselect(mask, a.v, b.v);
  for (int i = 0; i < P; ++i) r.d[i] = vselect(mask, a.d[i], b.d[i]);
  return r;
}
template <class S, int P>
DTWIN_HD auto vfinite(const Dual<S, P>& a) {
  auto m = vfinite(a.v);
  for (int i = 0; i < P; ++i) m = mask_and(m, vfinite(a.d[i]));
  return m;
}

template <class S>
DTWIN_HD const S& value_of(const S& s) {
  return s;
}
template <class S, int P>
DTWIN_HD const S& value_of(const Dual<S, P>& a) {
  return a.v;
}

}  // namespace dtwin
