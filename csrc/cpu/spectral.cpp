// CPU registrations of dtwin::spectral_conv{1,2}d: the transforms by ATen (csrc/spectral_op.h),
// the mode mixing by mix_cpu.
#include <torch/library.h>

#include "../spectral_op.h"
#include "kernels.h"

namespace dtwin {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                       std::optional<int64_t> out_len, c10::string_view algorithm) {
  return spectral::spectral_conv1d(&mix_cpu, x, weight, out_len, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv1d_backward_cpu(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                const at::Tensor& weight, const at::Tensor& modes,
                                                                c10::string_view algorithm, bool need_x, bool need_w) {
  return spectral::spectral_conv1d_backward(&mix_cpu, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                       at::OptionalIntArrayRef out_shape, c10::string_view algorithm) {
  return spectral::spectral_conv2d(&mix_cpu, x, weight, out_shape, algorithm);
}

std::tuple<at::Tensor, at::Tensor> spectral_conv2d_backward_cpu(const at::Tensor& grad, at::IntArrayRef x_size,
                                                                const at::Tensor& weight, const at::Tensor& modes,
                                                                c10::string_view algorithm, bool need_x, bool need_w) {
  return spectral::spectral_conv2d_backward(&mix_cpu, grad, x_size, weight, modes, algorithm, need_x, need_w);
}

}  // namespace cpu
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CPU, m) {
  m.impl("spectral_conv1d", &dtwin::cpu::spectral_conv1d_cpu);
  m.impl("spectral_conv1d_backward", &dtwin::cpu::spectral_conv1d_backward_cpu);
  m.impl("spectral_conv2d", &dtwin::cpu::spectral_conv2d_cpu);
  m.impl("spectral_conv2d_backward", &dtwin::cpu::spectral_conv2d_backward_cpu);
}
