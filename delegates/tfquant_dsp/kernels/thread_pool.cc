#include "kernels/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TFQ_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define TFQ_PAUSE() __asm__ __volatile__("yield")
#else
#define TFQ_PAUSE() ((void)0)
#endif

namespace tfq::kernels {

namespace {
// Spinning before a worker sleeps: long enough to bridge the gap between two ops of an invoke.
// Every kYieldEvery iterations a spinning thread yields its core, so on an oversubscribed
// machine (other processes, or more threads than cores) it does not keep the thread it is
// waiting for off the CPU.
constexpr int kSpinIterations = 8000;
constexpr int kYieldEvery = 64;

thread_local int current_thread = 0;

inline void SpinOrYield(int i) {
  if (i % kYieldEvery == kYieldEvery - 1) {
    std::this_thread::yield();
  } else {
    TFQ_PAUSE();
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunTasks(Job* job) {
  for (;;) {
    const int i = job->next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job->tasks) return;
    try {
      (*job->fn)(i);
    } catch (...) {  // kept for the caller: a throw out of a worker would end the process
      std::lock_guard<std::mutex> lock(job->error_mu);
      if (!job->error) job->error = std::current_exception();
    }
    job->done.fetch_add(1, std::memory_order_acq_rel);
  }
}

int ThreadPool::CurrentThread() { return current_thread; }

void ThreadPool::WorkerLoop(int index) {
  current_thread = index;
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++i) {
      SpinOrYield(i);
    }
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_relaxed);
      job = job_;
    }
    // A job whose tasks are all claimed already (the caller finished it) is a no-op here.
    if (job) RunTasks(job.get());
  }
}

void ThreadPool::ParallelFor(int tasks, const std::function<void(int)>& fn) {
  std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
  if (!busy.owns_lock()) {
    for (int i = 0; i < tasks; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->tasks = tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  RunTasks(job.get());
  for (int i = 0; job->done.load(std::memory_order_acquire) < tasks; ++i) SpinOrYield(i);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (job_ == job) job_.reset();
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace tfq::kernels
