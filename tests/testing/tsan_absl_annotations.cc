// ThreadSanitizer builds only (make test-tsan): makes Debian's absl::Mutex,
// CondVar and Notification visible to TSan.
//
// Debian's libabsl_synchronization is not built with -fsanitize=thread, so
// its lock and unlock are atomics TSan never sees: every field guarded by an
// absl::Mutex in our code would be reported as a race (a two-thread counter
// under absl::MutexLock is enough). Suppressing those reports would hide real
// races in our code, so instead this file interposes the library's entry
// points: the executable's definitions win over the shared library's, each
// calls the real one (dlsym RTLD_NEXT) and tells TSan about the
// happens-before edge (__tsan_acquire after taking the lock, __tsan_release
// before giving it up). gRPC's own absl mutexes resolve here too.
//
// absl evaluates a waiter's Condition inside the library, on whichever
// thread holds the lock at that moment (the unlocker, or the waiter before
// it returns): those reads are under the lock but between our annotations,
// so the real calls run with this thread's accesses ignored (Quietly). A
// Condition's own races go unchecked; the code around it does not.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

namespace {

#define INFERD_STRINGIFY2(x) #x
#define INFERD_STRINGIFY(x) INFERD_STRINGIFY2(x)

// "_ZN[K]4absl<len><inline namespace>" + rest: the Itanium mangling of the
// (const) member absl::<inline namespace>::rest.
std::string Mangled(const char* rest, bool is_const) {
  const std::string ns = INFERD_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(is_const ? "_ZNK" : "_ZN") + "4absl" + std::to_string(ns.size()) + ns + rest;
}

template <typename F>
F Real(const char* rest, bool is_const = false) {
  const std::string name = Mangled(rest, is_const);
  void* symbol = dlsym(RTLD_NEXT, name.c_str());
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_absl_annotations: %s not found in libabsl: %s\n", name.c_str(), dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(symbol);
}

// Runs the real entry point with this thread's memory accesses ignored.
template <typename F>
auto Quietly(F call) {
  struct Ignore {
    Ignore() { __tsan_ignore_thread_begin(); }
    ~Ignore() { __tsan_ignore_thread_end(); }
  } ignore;
  return call();
}

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex4LockEv");
  Quietly([&] { return real(this); });
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex6UnlockEv");
  __tsan_release(this);
  Quietly([&] { return real(this); });
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  const bool locked = Quietly([&] { return real(this); });
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  Quietly([&] { return real(this); });
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  __tsan_release(this);
  Quietly([&] { return real(this); });
}

bool Mutex::ReaderTryLock() {
  static auto real = Real<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  const bool locked = Quietly([&] { return real(this); });
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  Quietly([&] { return real(this, cond); });
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool met = Quietly([&] { return real(this, cond, timeout); });
  __tsan_acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static auto real =
      Real<bool (*)(Mutex*, const Condition&, Time)>("5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool met = Quietly([&] { return real(this, cond, deadline); });
  __tsan_acquire(this);
  return met;
}

// Await releases the lock while it waits and takes it again.
void Mutex::Await(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  Quietly([&] { return real(this, cond); });
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_release(this);
  const bool met = Quietly([&] { return real(this, cond, timeout); });
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static auto real =
      Real<bool (*)(Mutex*, const Condition&, Time)>("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_release(this);
  const bool met = Quietly([&] { return real(this, cond, deadline); });
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  Quietly([&] { return real(this, mu); });
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static auto real =
      Real<bool (*)(CondVar*, Mutex*, Duration)>("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = Quietly([&] { return real(this, mu, timeout); });
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static auto real =
      Real<bool (*)(CondVar*, Mutex*, Time)>("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = Quietly([&] { return real(this, mu, deadline); });
  __tsan_acquire(mu);
  return timed_out;
}

// Notify happens before every wait that returns after it. (HasBeenNotified
// alone, an inline atomic load, gets no edge: our code waits instead.)
void Notification::Notify() {
  static auto real = Real<void (*)(Notification*)>("12Notification6NotifyEv");
  __tsan_release(this);
  Quietly([&] { return real(this); });
}

void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>("12Notification19WaitForNotificationEv", true);
  Quietly([&] { return real(this); });
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static auto real = Real<bool (*)(const Notification*, Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  const bool notified = Quietly([&] { return real(this, timeout); });
  __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static auto real = Real<bool (*)(const Notification*, Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  const bool notified = Quietly([&] { return real(this, deadline); });
  __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
