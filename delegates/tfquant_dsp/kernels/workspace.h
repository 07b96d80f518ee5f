// The scratch memory of kernel runs (im2col rows, padded inputs, weights packed for the GEMM),
// reserved before the runs: the delegate reserves, in Prepare, the largest need of any kernel
// of a partition at the prepared shapes, so no kernel allocates while it runs.
#ifndef TFQUANT_DSP_KERNELS_WORKSPACE_H_
#define TFQUANT_DSP_KERNELS_WORKSPACE_H_

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace tfq::kernels {

// Bytes one kernel run needs: one region its tasks share, and one region per thread of the
// pool (each thread's tasks run one after the other, so they may reuse it).
struct ScratchNeed {
  size_t shared = 0;
  size_t per_thread = 0;
  void Include(const ScratchNeed& o) {
    if (o.shared > shared) shared = o.shared;
    if (o.per_thread > per_thread) per_thread = o.per_thread;
  }
};

class Workspace {
 public:
  static constexpr size_t kAlignment = 64;
  // n rounded up to kAlignment: the offset of a region that follows n bytes of another.
  static size_t Align(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }
  // Room for `need` on `threads` threads (ThreadPool::CurrentThread() < threads); keeps what is
  // there if it is enough. Contents are undefined. Throws std::bad_alloc.
  void Reserve(const ScratchNeed& need, int threads);
  // Throws std::length_error if a run needing `need` does not fit (a shape that changed since
  // the reservation): the delegate reports it instead of writing past the end.
  void Check(const ScratchNeed& need) const;
  uint8_t* shared() const { return base_; }
  // The calling thread's region (ThreadPool::CurrentThread()).
  uint8_t* thread() const;
  size_t bytes() const { return memory_.size(); }

 private:
  std::vector<uint8_t> memory_;
  uint8_t* base_ = nullptr;  // memory_.data() aligned
  size_t shared_ = 0, per_thread_ = 0;
  int threads_ = 0;
};

}  // namespace tfq::kernels

#endif  // TFQUANT_DSP_KERNELS_WORKSPACE_H_
