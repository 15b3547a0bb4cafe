// Host side of the mode-mixing kernels (csrc/cpu/mix.cpp, csrc/cuda/mix.cu): one call's tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include "dtwin/mix.h"

namespace dtwin {
namespace mix {

// A strided view [b, j, m1, m2] (+ imaginary offset) inside a tensor.
struct View {
  at::Tensor t;
  Strides s;
};

struct Call {
  Shape shape;
  View in;  // [b, j, m1, m2], read through element strides of its real dtype
  bool conj_in;
  View w;  // [j, n, m1, m2]: `b` is the j stride, `j` the n stride
  bool conj_w;
  View out;  // [b, n, m1, m2]: its `j` stride is the one of n
};

// The device's mixing kernel (mix_cpu in csrc/cpu/mix.cpp, mix_cuda in csrc/cuda/bindings.cpp).
using Fn = void (*)(const Call&);

}  // namespace mix
}  // namespace dtwin
