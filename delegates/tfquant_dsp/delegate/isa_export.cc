// tfquant_dsp_isas: the delegate library's ISA registry (isa/registry.cc) for the Python loader
// (tfquant.delegate.isas / best_isa), one of the library's three exported symbols.
#include <string.h>

#include <string>

#include "isa/hvx.h"

extern "C" {

// The ISA registry for the Python loader: "name:status:priority" entries (status 0: not
// runnable here, 1: runnable, 2: the one isa=auto picks, Best()) separated by ',' into buffer
// (NUL-terminated, truncated to size); returns the full length.
__attribute__((visibility("default"))) int tfquant_dsp_isas(char* buffer, int size) {
  std::string text;
  try {
    const tfq::isa::Ops* best = tfq::isa::Best();
    for (int i = 0; i < tfq::isa::IsaCount(); ++i) {
      const tfq::isa::IsaEntry& e = tfq::isa::IsaAt(i);
      const bool runnable = tfq::isa::Runnable(e);
      const char* status = runnable && e.table() == best ? "2" : runnable ? "1" : "0";
      text += (i ? "," : "") + std::string(e.name) + ":" + status + ":" +
              std::to_string(e.priority);
    }
  } catch (...) {  // out of memory: no exception crosses the C boundary
    return -1;
  }
  if (buffer && size > 0) {
    const size_t n = text.size() < static_cast<size_t>(size - 1) ? text.size() : size - 1;
    memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
  }
  return static_cast<int>(text.size());
}

}  // extern "C"
