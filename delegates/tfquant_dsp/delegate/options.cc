// The delegate's options (the key / value strings load_delegate passes).
#include <stdlib.h>

#include <string>

#include "delegate/graph.h"

namespace tfq::delegate {
namespace {

bool ParseBool(const std::string& v, bool* out) {
  if (v == "1" || v == "true" || v == "True" || v == "yes") { *out = true; return true; }
  if (v == "0" || v == "false" || v == "False" || v == "no") { *out = false; return true; }
  return false;
}

}  // namespace

bool ParseOptions(const char* const* keys, const char* const* values, size_t n, Options* o,
                  std::string* error) {
  o->isa = isa::Best();
  for (size_t i = 0; i < n; ++i) {
    if (!keys[i] || !values[i]) { *error = "null option"; return false; }
    const std::string k = keys[i], v = values[i];
    if (k == "num_threads") {
      char* end = nullptr;
      const long t = strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || t < 1 || t > 256) {
        *error = "num_threads must be an integer in [1, 256], got '" + v + "'";
        return false;
      }
      o->num_threads = static_cast<int>(t);
    } else if (k == "ops") {
      size_t start = 0;
      while (start <= v.size()) {
        size_t end = v.find(',', start);
        if (end == std::string::npos) end = v.size();
        const std::string name = v.substr(start, end - start);
        if (!name.empty()) {
          const int32_t code = OpCodeByName(name);
          if (code < 0) {
            *error = "ops: unknown or unsupported op '" + name + "'";
            return false;
          }
          o->allowed_ops.push_back(code);
        }
        start = end + 1;
      }
      if (o->allowed_ops.empty()) { *error = "ops: empty allow-list"; return false; }
    } else if (k == "verbose") {
      if (!ParseBool(v, &o->verbose)) { *error = "verbose must be true or false, got '" + v + "'"; return false; }
    } else if (k == "fc_requant") {
      if (v == "fixed_point") o->fc_mode = FcMode::kFixedPoint;
      else if (v == "double") o->fc_mode = FcMode::kDouble;
      else { *error = "fc_requant must be fixed_point or double, got '" + v + "'"; return false; }
    } else if (k == "packed_weights_kb") {
      char* end = nullptr;
      const long long kb = strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || kb < 0 || kb > (1LL << 30)) {
        *error = "packed_weights_kb must be an integer in [0, 2^30], got '" + v + "'";
        return false;
      }
      o->packed_weights_bytes = static_cast<size_t>(kb) * 1024;
    } else if (k == "profile") {
      o->profile = v;
    } else if (k == "isa") {
      if (v != "auto") {
        o->isa = isa::ByName(v.c_str());
        if (!o->isa) {
          char known[512];
          isa::DescribeIsas(known, sizeof(known));
          *error = "isa must be auto or an ISA this CPU runs, got '" + v + "' (known: " +
                   known + ")";
          return false;
        }
      }
    } else {
      *error = "unknown option '" + k + "' (known: num_threads, ops, verbose, fc_requant, isa, packed_weights_kb, profile)";
      return false;
    }
  }
  return true;
}


}  // namespace tfq::delegate
