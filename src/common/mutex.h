// Mutex and MutexLock: std::mutex with Abseil's thread-safety annotations, so
// that clang's -Wthread-safety checks ABSL_GUARDED_BY members.
//
// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer, so
// TSan cannot see absl::Mutex's locking and reports every access it guards
// as a race. std::mutex goes through pthread, which TSan intercepts.
//
// Used by components whose threads TSan must see (health, mps). Thread-safe, as a mutex is.
#pragma once

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace gdp {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace gdp
