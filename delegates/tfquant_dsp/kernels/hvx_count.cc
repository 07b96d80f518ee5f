// The HVX cost model's shared counts: requantization and plain elementwise passes.
#include "kernels/kernels.h"

namespace tfq::kernels {

HvxCount RequantCount(int64_t n) {
  HvxCount h;
  h.vmpy = 2 * n;
  h.valu = 5 * n;
  h.vshift = 4 * n;
  h.vstore = n;
  return h;
}

HvxCount ElementwiseCount(int64_t n, int alu, int mpy, int shift, int loads) {
  const int64_t v32 = (n + 31) / 32, v128 = (n + 127) / 128;
  HvxCount h;
  h.valu = v32 * alu;
  h.vmpy = v32 * mpy;
  h.vshift = v32 * shift;
  h.vload = v128 * loads;
  h.vstore = v128;
  return h;
}

}  // namespace tfq::kernels
