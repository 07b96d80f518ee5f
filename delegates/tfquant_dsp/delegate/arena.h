// Memory planning of a partition's intermediate tensors: one arena, each tensor at an offset,
// tensors whose lifetimes overlap never sharing bytes.
#ifndef TFQUANT_DSP_DELEGATE_ARENA_H_
#define TFQUANT_DSP_DELEGATE_ARENA_H_

#include <stddef.h>

#include <vector>

namespace tfq::delegate {

constexpr size_t kArenaAlignment = 64;
// Bytes after each tensor that kernels may read past its end (partial vectors).
constexpr size_t kArenaSlack = 64;

struct ArenaItem {
  int tensor;
  size_t bytes;
  int first, last;    // the ops that produce it and read it last (inclusive)
  size_t offset = 0;  // set by PlanArena
};

// Greedy by size (TFLite's own arena planner does the same): the largest tensors first, each at
// the lowest offset that fits between the tensors already placed that are alive at the same
// time; offsets aligned, each tensor followed by kArenaSlack bytes. Returns the arena size.
size_t PlanArena(std::vector<ArenaItem>* items);

}  // namespace tfq::delegate

#endif  // TFQUANT_DSP_DELEGATE_ARENA_H_
