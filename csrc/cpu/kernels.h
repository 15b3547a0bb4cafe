// CPU kernels shared between the op registrations of this folder.
#pragma once

#include "../mix_op.h"

namespace dtwin {
namespace cpu {

void mix_cpu(const mix::Call& call);  // mix.cpp

}  // namespace cpu
}  // namespace dtwin
