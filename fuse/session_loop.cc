// See session_loop.h.
#include "fuse/session_loop.h"

#include <linux/fuse.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/blocking.h"

namespace unionfs::fuse {

namespace {

// Requests the leader answers itself: metadata that the core answers from memory or with a
// few system calls (it calls about_to_block before anything longer).
bool answered_inline(const fuse_buf& buf) {
  if ((buf.flags & FUSE_BUF_IS_FD) || buf.size < sizeof(fuse_in_header)) return false;
  switch (static_cast<const fuse_in_header*>(buf.mem)->opcode) {
    case FUSE_LOOKUP:
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_GETATTR:
    case FUSE_READLINK:
    case FUSE_STATFS:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_ACCESS:
    case FUSE_OPEN:
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FLUSH:
    case FUSE_INTERRUPT:
    case FUSE_INIT:
      return true;
    default:
      return false;
  }
}

class Loop {
 public:
  Loop(fuse_session* se, unsigned max_threads, int max_idle)
      : se_(se), max_threads_(max_threads < 1 ? 1 : max_threads), max_idle_(max_idle) {}

  int run() {
    pthread_sigmask(SIG_SETMASK, nullptr, &caller_mask_);
    follower_mask_ = caller_mask_;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&follower_mask_, sig);
    current_ = this;
    set_blocking_handler(&Loop::on_block);
    {
      std::lock_guard lock(mu_);
      threads_ = 1;
      // One follower waits from the start: the first hand-over (a deep directory's first use,
      // the first write) then wakes it instead of creating a thread, which took 0.2-0.35 ms
      // of that request here (measured pinned, first stat into a 256-layer directory). It is
      // started with SIGINT, SIGTERM and SIGHUP blocked, as every follower: only the reading
      // thread takes them.
      if (max_threads_ > 1 && max_idle_ != 0) {
        take_signals(false);
        start_follower();
      }
    }
    work(true);
    // The others end once they see exit_ (those busy with a request finish it first); they are
    // joined, not detached, so that libfuse's per-thread state is gone before the session is.
    std::vector<Worker> workers;
    {
      std::unique_lock lock(mu_);
      ended_.wait(lock, [&] { return threads_ == 1; });
      workers.swap(workers_);
    }
    for (Worker& w : workers) w.thread.join();
    set_blocking_handler(nullptr);
    current_ = nullptr;
    pthread_sigmask(SIG_SETMASK, &caller_mask_, nullptr);
    fuse_session_reset(se_);
    return error_;
  }

 private:
  // Gives the reading up: wakes an idle follower, or starts one while under max_threads_.
  // mu_ held.
  void hand_over() {
    reading_ = false;
    if (idle_ > 0) {
      cv_.notify_one();
    } else if (threads_ < max_threads_ && !exit_) {
      start_follower();
    }
  }

  // Starts a thread that waits for the reading. mu_ held.
  void start_follower() {
    // Join the threads -o idle_threads ended (their thread-local state, such as libfuse's
    // splice pipe, is released only once they have exited), then start one.
    std::erase_if(workers_, [](Worker& w) {
      if (!w.done->load()) return false;
      w.thread.join();
      return true;
    });
    ++threads_;
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers_.push_back(Worker{std::thread([this, done] {
                                work(false);
                                done->store(true);
                              }),
                              done});
  }

  // about_to_block on a leader answering inline: hand the reading over first.
  static void on_block() {
    if (!t_leading_ || !current_) return;
    t_leading_ = false;
    current_->take_signals(false);
    std::lock_guard lock(current_->mu_);
    current_->hand_over();
  }

  // Lets this thread take SIGINT/SIGTERM/SIGHUP (libfuse's handlers end the session) only while
  // it reads: the signal then interrupts the read, and a thread that starts reading after it
  // came sees it at once. Callers that block them (the volumes mode) keep them blocked.
  void take_signals(bool yes) {
    pthread_sigmask(SIG_SETMASK, yes ? &caller_mask_ : &follower_mask_, nullptr);
  }

  void work(bool main) {
    take_signals(false);
    fuse_buf buf{};
    std::unique_lock lock(mu_);
    for (;;) {
      // -o idle_threads=N: a started thread with N idle ones beside it ends.
      if (!main && max_idle_ >= 0 && reading_ && !exit_ &&
          idle_ >= static_cast<unsigned>(max_idle_)) {
        break;
      }
      while (reading_ && !exit_) {
        ++idle_;
        cv_.wait(lock);
        --idle_;
      }
      if (exit_) break;
      reading_ = true;
      lock.unlock();
      take_signals(true);
      bool again = true;  // leading: read, answer quick requests, read again
      while (again) {
        const int res = fuse_session_exited(se_) ? 0 : fuse_session_receive_buf(se_, &buf);
        if (res == -EINTR && !fuse_session_exited(se_)) continue;
        if (res <= 0 || fuse_session_exited(se_)) {
          take_signals(false);
          lock.lock();
          if (res < 0 && res != -EINTR && error_ == 0) error_ = res;
          exit_ = true;
          reading_ = false;
          cv_.notify_all();
          goto done;
        }
        if (answered_inline(buf)) {
          t_leading_ = true;
          fuse_session_process_buf(se_, &buf);
          // Unless the core handed the reading over meanwhile, this thread reads next.
          again = t_leading_;
          t_leading_ = false;
          if (!again) lock.lock();
          continue;
        }
        take_signals(false);
        lock.lock();
        hand_over();
        lock.unlock();
        fuse_session_process_buf(se_, &buf);
        lock.lock();
        again = false;
      }
    }
  done:
    std::free(buf.mem);
    if (!main) {
      --threads_;
      ended_.notify_all();
    }
  }

  fuse_session* se_;
  const unsigned max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;     ///< followers wait here for the reading
  std::condition_variable ended_;  ///< run() waits here for the started threads to end
  const int max_idle_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;  ///< set when it has left work()
  };
  std::vector<Worker> workers_;  ///< the threads started, joined by run() at the end
  sigset_t caller_mask_{};       ///< the signal mask of run()'s caller: a reader's
  sigset_t follower_mask_{};     ///< the same with SIGINT, SIGTERM and SIGHUP blocked
  bool reading_ = false;         ///< a thread reads /dev/fuse, or answers inline and will read next
  bool exit_ = false;
  unsigned idle_ = 0;
  unsigned threads_ = 0;
  int error_ = 0;

  static inline Loop* current_ = nullptr;
  static inline thread_local bool t_leading_ = false;
};

}  // namespace

int run_session_loop(fuse_session* se, unsigned max_threads, int max_idle) {
  Loop loop(se, max_threads, max_idle);
  return loop.run();
}

}  // namespace unionfs::fuse
