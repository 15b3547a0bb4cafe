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
