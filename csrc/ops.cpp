// Every dtwin op schema, in one place, and the Python module entry of dtwin._C.
//
// Kernels register themselves per backend in csrc/cpu/*.cpp and csrc/cuda/bindings.cpp; the
// Python faces in dtwin/ops add fake (meta) kernels, autograd and input checks.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "build_info.h"

TORCH_LIBRARY(dtwin, m) {
  // Hodgkin-Huxley neurons, N at once (dtwin/ops/hh.py documents the arguments).
  m.def(
      "hh_simulate(Tensor t_out, Tensor params, Tensor y0, Tensor? pulses, Tensor? current, "
      "Tensor? t_current, str input, str method, float dt, float rtol, float atol, int max_steps, "
      "bool all_states, bool sensitivities) -> (Tensor, Tensor, Tensor)");
  // Spectral convolution (FNO layer), dtwin/ops/spectral.py documents the arguments.
  // Each returns the output and the retained modes of x, [2, R, B, Cin, M2], for its backward.
  m.def("spectral_conv1d(Tensor x, Tensor weight, int? out_len, str algorithm) -> (Tensor, Tensor)");
  m.def(
      "spectral_conv1d_backward(Tensor grad, int[] x_size, Tensor weight, Tensor modes, str algorithm, "
      "bool need_x, bool need_w) -> (Tensor, Tensor)");
  m.def("spectral_conv2d(Tensor x, Tensor weight, int[]? out_shape, str algorithm) -> (Tensor, Tensor)");
  m.def(
      "spectral_conv2d_backward(Tensor grad, int[] x_size, Tensor weight, Tensor modes, str algorithm, "
      "bool need_x, bool need_w) -> (Tensor, Tensor)");
  // Discrete wavelet transforms in PyWavelets' conventions and the WNO layer (dtwin/ops/wavelet.py);
  // filters = [4, F]: dec_lo, dec_hi, rec_lo, rec_hi of pywt.Wavelet.
  m.def("dwt1d(Tensor x, Tensor filters, int level, str mode) -> Tensor[]");
  m.def("dwt1d_backward(Tensor?[] grads, Tensor filters, int level, str mode, int length) -> Tensor");
  m.def("idwt1d(Tensor[] coeffs, Tensor filters, str mode) -> Tensor");
  m.def("idwt1d_backward(Tensor grad, int[] lengths, Tensor filters, str mode) -> Tensor[]");
  m.def("dwt2d(Tensor x, Tensor filters, int level, str mode) -> Tensor[]");
  m.def("dwt2d_backward(Tensor?[] grads, Tensor filters, int level, str mode, int height, int width) -> Tensor");
  m.def("idwt2d(Tensor[] coeffs, Tensor filters, str mode) -> Tensor");
  m.def("idwt2d_backward(Tensor grad, int[] shapes, Tensor filters, str mode) -> Tensor[]");
  // The WNO layer; returns the output and the coarsest coefficients of x for its backward.
  m.def("wavelet_conv1d(Tensor x, Tensor weight, Tensor filters, int level, str mode) -> (Tensor, Tensor)");
  m.def(
      "wavelet_conv1d_backward(Tensor grad, Tensor weight, Tensor coarse, Tensor filters, int level, str mode, "
      "bool need_x, bool need_w) -> (Tensor, Tensor)");
  m.def("wavelet_conv2d(Tensor x, Tensor weight, Tensor filters, int level, str mode) -> (Tensor, Tensor)");
  m.def(
      "wavelet_conv2d_backward(Tensor grad, Tensor weight, Tensor coarse, Tensor filters, int level, str mode, "
      "bool need_x, bool need_w) -> (Tensor, Tensor)");
  // One iteration of the DRIP inner convex solve (Nesterov's accelerated gradient on B problems):
  // returns (z_new, y_new, active_new, delta_sq, grad_sq); dtwin/ops/drip.py documents it.
  m.def(
      "drip_step(Tensor z, Tensor y, Tensor g, Tensor step, Tensor momentum, Tensor active, float tol) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // What this build of dtwin._C contains, as JSON (read by `dtwin info`).
  m.def("build_info() -> str", &dtwin::build_info);
}

extern "C" {
// dtwin._C is imported as a Python module only to load this library and run the
// registrations above; it defines no Python functions of its own.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
