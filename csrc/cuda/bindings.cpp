// CUDA registrations of the dtwin ops: argument checks, output allocation and the launch on
// the current stream. Built only when torch has CUDA and nvcc is found (setup.py).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../drip_op.h"
#include "../hh_op.h"
#include "../spectral_op.h"
#include "../wavelet_op.h"
#include "launch.h"

namespace dtwin {
namespace cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor> hh_simulate_cuda(
    const at::Tensor& t_out, const at::Tensor& params, const at::Tensor& y0,
    const std::optional<at::Tensor>& pulses, const std::optional<at::Tensor>& current,
    const std::optional<at::Tensor>& t_current, c10::string_view input, c10::string_view method,
    double dt, double rtol, double atol, int64_t max_steps, bool all_states, bool sensitivities) {
  const c10::cuda::CUDAGuard guard(params.device());
  hh::HHCall c = hh::prepare_hh_call(t_out, params, y0, pulses, current, t_current, input, method, dt,
                                     rtol, atol, max_steps, all_states, sensitivities);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err = c.params.scalar_type() == at::kDouble
                              ? hh_simulate_launch<double>(hh::make_problem<double>(c), c.method, stream)
                              : hh_simulate_launch<float>(hh::make_problem<float>(c), c.method, stream);
  TORCH_CHECK(err == cudaSuccess, "hh_simulate: CUDA kernel launch failed: ", cudaGetErrorString(err));
  return {c.out, c.jac, c.status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> drip_step_cuda(
    const at::Tensor& z, const at::Tensor& y, const at::Tensor& g, const at::Tensor& step,
    const at::Tensor& momentum, const at::Tensor& active, double tol) {
  const c10::cuda::CUDAGuard guard(z.device());
  const drip::Call c = drip::prepare_call(z, y, g, step, momentum, active, tol);
  // the per-block partial sums; the caching allocator makes this free after the first iteration
  const at::Tensor workspace =
      at::empty({drip_step_workspace(c.z.size(0), c.z.size(1))}, c.z.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err =
      c.z.scalar_type() == at::kDouble
          ? drip_step_launch<double>(drip::make_problem<double>(c), workspace.data_ptr<double>(), stream)
          : drip_step_launch<float>(drip::make_problem<float>(c), workspace.data_ptr<double>(), stream);
  TORCH_CHECK(err == cudaSuccess, "drip_step: CUDA kernel launch failed: ", cudaGetErrorString(err));
  return c.outputs();
}

MixDtype mix_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return MixDtype::kFloat;
    case at::kDouble:
      return MixDtype::kDouble;
    case at::kHalf:
      return MixDtype::kHalf;
    case at::kBFloat16:
      return MixDtype::kBFloat16;
    default:
      TORCH_CHECK(false, "spectral mix (CUDA): unsupported dtype ", t);
  }
}

void mix_cuda(const mix::Call& c) {
  MixArgs a;
  a.shape = c.shape;
  a.in = c.in.t.data_ptr();
  a.in_s = c.in.s;
  a.conj_in = c.conj_in;
  a.w = c.w.t.data_ptr();
  a.w_s = c.w.s;
  a.conj_w = c.conj_w;
  a.out = c.out.t.data_ptr();
  a.out_s = c.out.s;
  a.dtype = mix_dtype(c.in.t.scalar_type());
  a.w_dtype = mix_dtype(c.w.t.scalar_type());
  a.out_dtype = mix_dtype(c.out.t.scalar_type());
  const auto other_ok = [&](MixDtype d) {
    return d == a.dtype || (d == MixDtype::kFloat && a.dtype != MixDtype::kDouble);
  };
  TORCH_CHECK(other_ok(a.w_dtype) && other_ok(a.out_dtype), "mix (CUDA): w of dtype ", c.w.t.scalar_type(),
              " and out of dtype ", c.out.t.scalar_type(), " with inputs of ", c.in.t.scalar_type());
  const cudaError_t err = mix_launch(a, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "mix: CUDA kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_cuda(const at::Tensor& x, const at::Tensor& weight, std::optional<int64_t> out_len,
                                c10::string_view algorithm) {
  const c10::cuda::CUDAGuard guard(x.device());
  return spectral::spectral_conv1d(&mix_cuda, x, weight, out_len, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_backward_cuda(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                 const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                 bool need_x, bool need_w) {
  const c10::cuda::CUDAGuard guard(weight.device());
  return spectral::spectral_conv1d_backward(&mix_cuda, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight, at::OptionalIntArrayRef out_shape,
                                c10::string_view algorithm) {
  const c10::cuda::CUDAGuard guard(x.device());
  return spectral::spectral_conv2d(&mix_cuda, x, weight, out_shape, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_backward_cuda(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                 const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                 bool need_x, bool need_w) {
  const c10::cuda::CUDAGuard guard(weight.device());
  return spectral::spectral_conv2d_backward(&mix_cuda, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

// ---- wavelet primitives ------------------------------------------------------------------------

WaveletSignals signals(const wavelet::View* v) {
  if (v == nullptr) return {nullptr, 0, 0, 0, 0};
  return {v->t.data_ptr(), v->sa, v->sb, v->st, v->len};
}

void wavelet_run(WaveletOp op, wavelet::Batch bt, const wavelet::View* in0, const wavelet::View* in1,
                 const wavelet::View* out0, const wavelet::View* out1, const at::Tensor& f0, const at::Tensor& f1,
                 int mode) {
  const at::Tensor& ref = out0 ? out0->t : out1->t;
  TORCH_CHECK(ref.scalar_type() == at::kFloat || ref.scalar_type() == at::kDouble,
              "wavelet (CUDA): float32 or float64, got ", ref.scalar_type());
  WaveletArgs a;
  a.op = op;
  a.na = bt.na;
  a.nb = bt.nb;
  a.in[0] = signals(in0);
  a.in[1] = signals(in1);
  a.out[0] = signals(out0);
  a.out[1] = signals(out1);
  a.f[0] = f0.data_ptr();
  a.f[1] = f1.data_ptr();
  a.F = f0.numel();
  a.mode = mode;
  a.dbl = ref.scalar_type() == at::kDouble;
  const cudaError_t err = wavelet_launch(a, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "wavelet: CUDA kernel launch failed: ", cudaGetErrorString(err));
}

void analysis_cuda(wavelet::Batch bt, const wavelet::View& x, const wavelet::View* lo, const wavelet::View* hi,
                   const at::Tensor& f_lo, const at::Tensor& f_hi, int mode) {
  wavelet_run(WaveletOp::kAnalysis, bt, &x, nullptr, lo, hi, f_lo, f_hi, mode);
}
void analysis_adjoint_cuda(wavelet::Batch bt, const wavelet::View* g_lo, const wavelet::View* g_hi,
                           const wavelet::View& out, const at::Tensor& f_lo, const at::Tensor& f_hi, int mode) {
  wavelet_run(WaveletOp::kAnalysisAdjoint, bt, g_lo, g_hi, &out, nullptr, f_lo, f_hi, mode);
}
void synthesis_cuda(wavelet::Batch bt, const wavelet::View* a, const wavelet::View* d, const wavelet::View& out,
                    const at::Tensor& g_lo, const at::Tensor& g_hi, int mode) {
  wavelet_run(WaveletOp::kSynthesis, bt, a, d, &out, nullptr, g_lo, g_hi, mode);
}
void synthesis_adjoint_cuda(wavelet::Batch bt, const wavelet::View& g, const wavelet::View* ga,
                            const wavelet::View* gd, const at::Tensor& g_lo, const at::Tensor& g_hi, int mode) {
  wavelet_run(WaveletOp::kSynthesisAdjoint, bt, &g, nullptr, ga, gd, g_lo, g_hi, mode);
}

const wavelet::Kernels kWavelet{&analysis_cuda, &analysis_adjoint_cuda, &synthesis_cuda, &synthesis_adjoint_cuda};

}  // namespace cuda
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CUDA, m) {
  dtwin::wavelet::DeviceOps<dtwin::cuda::kWavelet, c10::cuda::CUDAGuard>::register_all(m);
  m.impl("hh_simulate", &dtwin::cuda::hh_simulate_cuda);
  m.impl("drip_step", &dtwin::cuda::drip_step_cuda);
  m.impl("spectral_conv1d", &dtwin::cuda::spectral_conv1d_cuda);
  m.impl("spectral_conv1d_backward", &dtwin::cuda::spectral_conv1d_backward_cuda);
  m.impl("spectral_conv2d", &dtwin::cuda::spectral_conv2d_cuda);
  m.impl("spectral_conv2d_backward", &dtwin::cuda::spectral_conv2d_backward_cuda);
}
