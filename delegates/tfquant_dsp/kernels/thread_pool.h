// A pool of worker threads created once per delegate (option num_threads) and reused by every
// kernel of every partition: ParallelFor hands out task indices to the workers and the calling
// thread. Workers spin briefly between tasks (ops follow each other within microseconds) and
// then sleep on a condition variable, so an idle pool costs no CPU.
#ifndef TFQUANT_DSP_KERNELS_THREAD_POOL_H_
#define TFQUANT_DSP_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tfq::kernels {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads - 1 workers plus the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // The calling thread's index in its pool: 1 .. threads() - 1 on a worker, 0 on any other
  // thread (a caller of ParallelFor). Kernels index per-thread scratch with it.
  static int CurrentThread();
  // Runs fn(i) for every i in [0, tasks), each exactly once, and returns when all are done.
  // If the pool is already running a job for another thread (several interpreters sharing
  // the delegate), everything runs on the caller instead: never blocks on another job.
  // An exception thrown by a task (std::bad_alloc) never escapes a worker thread: the first
  // one is rethrown here, on the caller, after every task has finished.
  void ParallelFor(int tasks, const std::function<void(int)>& fn);

 private:
  struct Job {
    const std::function<void(int)>* fn;
    int tasks;
    std::atomic<int> next{0}, done{0};
    std::mutex error_mu;
    std::exception_ptr error;  // the first task's exception
  };
  static void RunTasks(Job* job);
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the thread whose job the pool runs
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
};

// ParallelFor on `pool` if there is one (and more than one task), else a plain loop.
inline void ParallelFor(ThreadPool* pool, int tasks, const std::function<void(int)>& fn) {
  if (pool == nullptr || pool->threads() < 2 || tasks < 2) {
    for (int i = 0; i < tasks; ++i) fn(i);
  } else {
    pool->ParallelFor(tasks, fn);
  }
}

}  // namespace tfq::kernels

#endif  // TFQUANT_DSP_KERNELS_THREAD_POOL_H_
