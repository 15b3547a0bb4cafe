// CPU kernels of dtwin::spectral_conv{1,2}d: the mode-mixing contraction (threads over modes and
// batch, the output channels in SIMD), the transforms by ATen (csrc/spectral_op.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../spectral_op.h"

namespace dtwin {
namespace cpu {

// out[b, n, m] = sum_j in[b, j, m] w[j, n, m]. Threads take blocks of kModeBlock consecutive
// modes: modes are the fastest-moving index of every layout here, so one cache line serves a
// whole block. Each block gathers its w[:, :, m] into planar buffers once, then runs every b with
// the output channels n in SIMD.
constexpr int64_t kModeBlock = 8;

template <class T, class Acc>
void mix_impl(const spectral::MixCall& c) {
  const spectral::MixShape& s = c.shape;
  const T* in = c.in.data_ptr<T>();
  const T* w = c.w.data_ptr<T>();
  T* out = c.out.data_ptr<T>();
  const auto& is = c.in_s;
  const auto& ws = c.w_s;
  const auto& os = c.out_s;
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
            for (int64_t n = 0; n < s.N; ++n) spectral::complex_mac(ar[n], ai[n], a_re, a_im, wr[n], wi[n]);
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

void mix(const spectral::MixCall& c) {
  const auto t = c.in.scalar_type();
  TORCH_CHECK(t == c.out.scalar_type() && t == c.w.scalar_type(), "spectral mix (CPU): in, w and out must share a "
              "dtype, got ", t, ", ", c.w.scalar_type(), ", ", c.out.scalar_type());
  if (t == at::kDouble) return mix_impl<double, double>(c);
  TORCH_CHECK(t == at::kFloat, "spectral mix (CPU): float32 or float64, got ", t);
  mix_impl<float, float>(c);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_cpu(const at::Tensor& x, const at::Tensor& weight, std::optional<int64_t> out_len,
                               c10::string_view algorithm) {
  return spectral::spectral_conv1d(&mix, x, weight, out_len, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_backward_cpu(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                bool need_x, bool need_w) {
  return spectral::spectral_conv1d_backward(&mix, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, at::OptionalIntArrayRef out_shape,
                               c10::string_view algorithm) {
  return spectral::spectral_conv2d(&mix, x, weight, out_shape, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_backward_cpu(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                bool need_x, bool need_w) {
  return spectral::spectral_conv2d_backward(&mix, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

}  // namespace cpu
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CPU, m) {
  m.impl("spectral_conv1d", &dtwin::cpu::spectral_conv1d_cpu);
  m.impl("spectral_conv1d_backward", &dtwin::cpu::spectral_conv1d_backward_cpu);
  m.impl("spectral_conv2d", &dtwin::cpu::spectral_conv2d_cpu);
  m.impl("spectral_conv2d_backward", &dtwin::cpu::spectral_conv2d_backward_cpu);
}
