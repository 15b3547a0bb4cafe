// CUDA registrations of the dtwin ops: argument checks, output allocation and the launch on
// the current stream. Built only when torch has CUDA and nvcc is found (setup.py).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../hh_op.h"
#include "../spectral_op.h"
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

void spectral_mix(const spectral::MixCall& c) {
  TORCH_CHECK(c.in.scalar_type() == c.out.scalar_type(), "spectral mix: in and out dtypes differ");
  MixArgs a;
  a.shape = c.shape;
  a.in = c.in.data_ptr();
  a.in_s = c.in_s;
  a.conj_in = c.conj_in;
  a.w = c.w.data_ptr();
  a.w_s = c.w_s;
  a.conj_w = c.conj_w;
  a.out = c.out.data_ptr();
  a.out_s = c.out_s;
  a.dtype = mix_dtype(c.in.scalar_type());
  a.w_dtype = mix_dtype(c.w.scalar_type());
  TORCH_CHECK(a.w_dtype == a.dtype || a.w_dtype == MixDtype::kFloat, "spectral mix (CUDA): w of dtype ",
              c.w.scalar_type(), " with inputs of ", c.in.scalar_type());
  const cudaError_t err = spectral_mix_launch(a, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "spectral mix: CUDA kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_cuda(const at::Tensor& x, const at::Tensor& weight, std::optional<int64_t> out_len,
                                c10::string_view algorithm) {
  const c10::cuda::CUDAGuard guard(x.device());
  return spectral::spectral_conv1d(&spectral_mix, x, weight, out_len, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_backward_cuda(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                 const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                 bool need_x, bool need_w) {
  const c10::cuda::CUDAGuard guard(weight.device());
  return spectral::spectral_conv1d_backward(&spectral_mix, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight, at::OptionalIntArrayRef out_shape,
                                c10::string_view algorithm) {
  const c10::cuda::CUDAGuard guard(x.device());
  return spectral::spectral_conv2d(&spectral_mix, x, weight, out_shape, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_backward_cuda(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                 const at::Tensor& weight, const at::Tensor& modes, c10::string_view algorithm,
                                                                 bool need_x, bool need_w) {
  const c10::cuda::CUDAGuard guard(weight.device());
  return spectral::spectral_conv2d_backward(&spectral_mix, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

}  // namespace cuda
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CUDA, m) {
  m.impl("hh_simulate", &dtwin::cuda::hh_simulate_cuda);
  m.impl("spectral_conv1d", &dtwin::cuda::spectral_conv1d_cuda);
  m.impl("spectral_conv1d_backward", &dtwin::cuda::spectral_conv1d_backward_cuda);
  m.impl("spectral_conv2d", &dtwin::cuda::spectral_conv2d_cuda);
  m.impl("spectral_conv2d_backward", &dtwin::cuda::spectral_conv2d_backward_cuda);
}
