// Result<T>: a value or a positive errno (the number fuse_reply_err takes).
// The core reports every failure this way; nothing throws across the FUSE boundary.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace unionfs {

/// An error is a positive errno value.
struct Errno {
  int value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Errno e) : v_(e) { assert(e.value > 0); }  // NOLINT

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] int error() const { return ok() ? 0 : std::get<1>(v_).value; }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Errno> v_;
};

/// Result of an operation that returns nothing: 0 or a positive errno.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errno e) : err_(e.value) {}  // NOLINT
  static Status from_errno(int e) { return e == 0 ? Status() : Status(Errno{e}); }
  [[nodiscard]] bool ok() const { return err_ == 0; }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] int error() const { return err_; }

 private:
  int err_ = 0;
};

inline constexpr Status kOk{};

}  // namespace unionfs

/// Propagate an error from a Status or Result expression.
#define UNIONFS_TRY(expr)                                \
  do {                                                   \
    auto&& unionfs_try_r_ = (expr);                      \
    if (!unionfs_try_r_.ok())                            \
      return ::unionfs::Errno{unionfs_try_r_.error()};   \
  } while (0)

/// Evaluate a Result expression; on error return it, else bind the value.
#define UNIONFS_CONCAT_(a, b) a##b
#define UNIONFS_CONCAT(a, b) UNIONFS_CONCAT_(a, b)
#define UNIONFS_ASSIGN_OR_RETURN(lhs, expr) \
  UNIONFS_ASSIGN_OR_RETURN_IMPL(UNIONFS_CONCAT(unionfs_r_, __LINE__), lhs, expr)
#define UNIONFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return ::unionfs::Errno{tmp.error()}; \
  lhs = std::move(tmp).value()
