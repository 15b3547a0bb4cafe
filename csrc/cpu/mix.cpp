// CPU kernel of the spectral mode mixing (csrc/include/dtwin/mix.h).
//
// Threads take blocks of kModeBlock consecutive modes: modes are the fastest-moving index of
// every layout here, so one cache line serves a whole block. Each block gathers its w[:, :, m]
// into planar buffers once, then runs every b with the output index n in SIMD.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <vector>

#include "kernels.h"

namespace dtwin {
namespace cpu {

namespace {

constexpr int64_t kModeBlock = 8;

template <class T, class Acc>
void mix_impl(const mix::Call& c) {
  const mix::Shape& s = c.shape;
  const T* in = c.in.t.data_ptr<T>();
  const T* w = c.w.t.data_ptr<T>();
  T* out = c.out.t.data_ptr<T>();
  const auto& is = c.in.s;
  const auto& ws = c.w.s;
  const auto& os = c.out.s;
  const Acc sign_in = c.conj_in ? Acc(-1) : Acc(1);
  const Acc sign_w = c.conj_w ? Acc(-1) : Acc(1);
  const int64_t modes = s.M1 * s.M2;
  const int64_t blocks = (modes + kModeBlock - 1) / kModeBlock;
  const int64_t JN = s.J * s.N;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Acc> w_re(kModeBlock * JN), w_im(kModeBlock * JN), acc_re(s.N), acc_im(s.N);
    int64_t off_w[kModeBlock], off_in[kModeBlock], off_out[kModeBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t m0 = blk * kModeBlock;
      const int64_t nm = std::min(kModeBlock, modes - m0);
      for (int64_t t = 0; t < nm; ++t) {
        const int64_t m1 = (m0 + t) / s.M2, m2 = (m0 + t) % s.M2;
        off_w[t] = m1 * ws.m1 + m2 * ws.m2;
        off_in[t] = m1 * is.m1 + m2 * is.m2;
        off_out[t] = m1 * os.m1 + m2 * os.m2;
      }
      for (int64_t j = 0; j < s.J; ++j)
        for (int64_t n = 0; n < s.N; ++n) {
          const T* e = w + j * ws.b + n * ws.j;
          for (int64_t t = 0; t < nm; ++t) {
            w_re[t * JN + j * s.N + n] = static_cast<Acc>(e[off_w[t]]);
            w_im[t * JN + j * s.N + n] = sign_w * static_cast<Acc>(e[off_w[t] + ws.c]);
          }
        }
      for (int64_t b = 0; b < s.batch; ++b) {
        const T* a = in + b * is.b;
        T* o = out + b * os.b;
        for (int64_t t = 0; t < nm; ++t) {
          Acc* __restrict__ ar = acc_re.data();
          Acc* __restrict__ ai = acc_im.data();
          std::fill(ar, ar + s.N, Acc(0));
          std::fill(ai, ai + s.N, Acc(0));
          for (int64_t j = 0; j < s.J; ++j) {
            const T* e = a + j * is.j + off_in[t];
            const Acc a_re = static_cast<Acc>(e[0]);
            const Acc a_im = sign_in * static_cast<Acc>(e[is.c]);
            const Acc* __restrict__ wr = w_re.data() + t * JN + j * s.N;
            const Acc* __restrict__ wi = w_im.data() + t * JN + j * s.N;
            for (int64_t n = 0; n < s.N; ++n) mix::complex_mac(ar[n], ai[n], a_re, a_im, wr[n], wi[n]);
          }
          T* ot = o + off_out[t];
          for (int64_t n = 0; n < s.N; ++n) {
            ot[n * os.j] = static_cast<T>(ar[n]);
            ot[n * os.j + os.c] = static_cast<T>(ai[n]);
          }
        }
      }
    }
  });
}

}  // namespace

void mix_cpu(const mix::Call& c) {
  const auto t = c.in.t.scalar_type();
  TORCH_CHECK(t == c.out.t.scalar_type() && t == c.w.t.scalar_type(), "mix (CPU): in, w and out must share a dtype, got ",
              t, ", ", c.w.t.scalar_type(), ", ", c.out.t.scalar_type());
  if (t == at::kDouble) return mix_impl<double, double>(c);
  TORCH_CHECK(t == at::kFloat, "mix (CPU): float32 or float64, got ", t);
  mix_impl<float, float>(c);
}

}  // namespace cpu
}  // namespace dtwin
