// Run-time choice of the ISA implementation from the CPU's features.
#include <stdlib.h>
#include <string.h>

#include "isa/hvx.h"

namespace tfq::isa {

bool CpuHasAvx2() {
#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

bool CpuHasAvx512Vnni() {
#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

const Ops* ByName(const char* name) {
  if (name == nullptr) return nullptr;
  if (strcmp(name, "scalar") == 0) return Scalar();
  if (strcmp(name, "avx2") == 0) return CpuHasAvx2() ? Avx2() : nullptr;
  if (strcmp(name, "avx512") == 0) return CpuHasAvx512Vnni() ? Avx512() : nullptr;
  return nullptr;
}

const Ops* Best() {
  const char* forced = getenv("TFQUANT_DSP_ISA");
  const bool cap_scalar = forced && strcmp(forced, "scalar") == 0;
  const bool cap_avx2 = forced && strcmp(forced, "avx2") == 0;
  if (!cap_scalar && !cap_avx2 && CpuHasAvx512Vnni() && Avx512()) return Avx512();
  if (!cap_scalar && CpuHasAvx2() && Avx2()) return Avx2();
  return Scalar();
}

}  // namespace tfq::isa
