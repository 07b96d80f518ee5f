#include "delegate/arena.h"

#include <algorithm>

namespace tfq::delegate {

size_t PlanArena(std::vector<ArenaItem>* items) {
  std::vector<ArenaItem*> order;
  for (ArenaItem& item : *items) order.push_back(&item);
  std::sort(order.begin(), order.end(), [](const ArenaItem* a, const ArenaItem* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->tensor < b->tensor;
  });
  auto footprint = [](const ArenaItem& item) {
    return (item.bytes + kArenaSlack + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  };
  std::vector<const ArenaItem*> placed;
  size_t total = 0;
  for (ArenaItem* item : order) {
    std::vector<const ArenaItem*> alive;
    for (const ArenaItem* p : placed) {
      if (p->first <= item->last && item->first <= p->last) alive.push_back(p);
    }
    std::sort(alive.begin(), alive.end(),
              [](const ArenaItem* a, const ArenaItem* b) { return a->offset < b->offset; });
    size_t offset = 0;
    for (const ArenaItem* p : alive) {
      if (offset + footprint(*item) <= p->offset) break;
      offset = std::max(offset, p->offset + footprint(*p));
    }
    item->offset = offset;
    total = std::max(total, offset + footprint(*item));
    placed.push_back(item);
  }
  return total;
}

}  // namespace tfq::delegate
