// ThreadScratch (kernels/kernels.h): the per-thread scratch buffer of kernel runs.
#include <stdint.h>

#include <vector>

#include "kernels/kernels.h"

namespace tfq::kernels {

uint8_t* ThreadScratch(size_t bytes) {
  // Never freed while the thread lives: one buffer per thread that runs kernels.
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < bytes) {
    scratch.clear();
    scratch.shrink_to_fit();  // the old buffer goes before the larger one is allocated
    scratch.resize(bytes);
  }
  return scratch.data();
}

}  // namespace tfq::kernels
