#include "kernels/workspace.h"

#include <stdexcept>

#include "kernels/thread_pool.h"

namespace tfq::kernels {

void Workspace::Reserve(const ScratchNeed& need, int threads) {
  const size_t shared = Align(need.shared), per_thread = Align(need.per_thread);
  if (threads < 1) threads = 1;
  if (base_ && shared <= shared_ && per_thread <= per_thread_ && threads <= threads_) return;
  memory_.clear();
  memory_.shrink_to_fit();  // the old block goes before the new one is allocated
  memory_.resize(shared + per_thread * threads + kAlignment);
  const uintptr_t p = reinterpret_cast<uintptr_t>(memory_.data());
  base_ = memory_.data() + (kAlignment - p % kAlignment) % kAlignment;
  shared_ = shared;
  per_thread_ = per_thread;
  threads_ = threads;
}

void Workspace::Check(const ScratchNeed& need) const {
  if (need.shared > shared_ || need.per_thread > per_thread_ ||
      (need.per_thread > 0 && ThreadPool::CurrentThread() >= threads_)) {
    throw std::length_error("kernel scratch larger than reserved in Prepare");
  }
}

uint8_t* Workspace::thread() const {
  return base_ + shared_ + per_thread_ * ThreadPool::CurrentThread();
}

}  // namespace tfq::kernels
