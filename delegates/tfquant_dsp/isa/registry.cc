// The ISA registry (isa/hvx.h): every implementation of the emulated ISA, whether this CPU runs
// it, and the run-time choice among them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isa/hvx.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#endif

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

bool CpuHasI8mm() {
#if defined(__aarch64__) && defined(__linux__) && !defined(TFQUANT_DSP_NO_SIMD)
  return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#else
  return false;
#endif
}

namespace {

bool Always() { return true; }
bool OnAarch64() {
#if defined(__aarch64__)
  return true;  // ASIMD is part of the base aarch64 architecture
#else
  return false;
#endif
}

const IsaEntry kRegistry[] = {
    {"scalar", Scalar, Always, 0},
    {"avx2", Avx2, CpuHasAvx2, 20},
    {"avx512", Avx512, CpuHasAvx512Vnni, 30},
    {"neon", Neon, OnAarch64, 20},
    {"neon_i8mm", NeonI8mm, CpuHasI8mm, 30},
};
constexpr int kCount = sizeof(kRegistry) / sizeof(kRegistry[0]);

const IsaEntry* Find(const char* name) {
  for (const IsaEntry& e : kRegistry) {
    if (name && strcmp(e.name, name) == 0) return &e;
  }
  return nullptr;
}

}  // namespace

int IsaCount() { return kCount; }
const IsaEntry& IsaAt(int i) { return kRegistry[i]; }
bool Runnable(const IsaEntry& e) { return e.table() != nullptr && e.supported(); }

const Ops* ByName(const char* name) {
  const IsaEntry* e = Find(name);
  return e && Runnable(*e) ? e->table() : nullptr;
}

const Ops* Best() {
  const IsaEntry* cap = Find(getenv("TFQUANT_DSP_ISA"));
  const IsaEntry* best = &kRegistry[0];
  for (const IsaEntry& e : kRegistry) {
    if (Runnable(e) && e.priority > best->priority && (!cap || e.priority <= cap->priority)) {
      best = &e;
    }
  }
  return best->table();
}

void DescribeIsas(char* buffer, size_t size) {
  if (size == 0) return;
  buffer[0] = '\0';
  size_t used = 0;
  for (int i = 0; i < kCount && used < size; ++i) {
    const int n = snprintf(buffer + used, size - used, "%s%s (%s)", i ? ", " : "",
                           kRegistry[i].name,
                           Runnable(kRegistry[i]) ? "runnable" :
                           kRegistry[i].table() ? "not on this CPU" : "not compiled in");
    if (n < 0) break;
    used += static_cast<size_t>(n);
  }
}

}  // namespace tfq::isa
