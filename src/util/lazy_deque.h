// src/util/lazy_deque.h — a std::deque that allocates nothing until its first
// element. libstdc++'s deque allocates a 512-byte node and its map on
// construction; a broker with 100,000 idle sessions, each with an in-flight
// window and a queue that are almost always empty, would pay ~100 MB for
// nothing. The storage is released again when the deque empties.
//
// A session that gets a message now and then (most devices of a fleet)
// empties its window again after each one: a deque made and dropped each
// time cost three allocations and three frees per delivery. So an emptied
// deque, with its map and node, is kept for the next one to fill (per
// thread, up to kSpare of them) instead of being freed. Its nodes come from
// PoolAllocator's free lists, for a deque used as a FIFO that never empties.
#pragma once

#include <deque>
#include <memory>

#include "src/util/block_pool.h"
#include "src/util/spare_list.h"

namespace petrel {

template <typename T>
class LazyDeque {
 public:
  using Deque = std::deque<T, PoolAllocator<T>>;
  using iterator = typename Deque::iterator;
  using const_iterator = typename Deque::const_iterator;

  bool empty() const { return !d_ || d_->empty(); }
  size_t size() const { return d_ ? d_->size() : 0; }
  T& front() { return d_->front(); }
  const T& front() const { return d_->front(); }
  T& back() { return d_->back(); }
  T& operator[](size_t i) { return (*d_)[i]; }
  const T& operator[](size_t i) const { return (*d_)[i]; }
  const T& back() const { return d_->back(); }

  void push_back(T&& v) { get().push_back(std::move(v)); }
  void push_back(const T& v) { get().push_back(v); }
  template <typename... Args>
  T& emplace_back(Args&&... args) {
    return get().emplace_back(std::forward<Args>(args)...);
  }
  void push_front(T&& v) { get().push_front(std::move(v)); }
  void pop_front() {
    d_->pop_front();
    if (d_->empty()) release();
  }
  void clear() {
    if (!d_) return;
    d_->clear();
    release();
  }
  iterator erase(iterator it) {
    auto next = d_->erase(it);
    if (d_->empty()) {
      release();
      return end();
    }
    return next;
  }

  // Emptied deques kept for reuse, per thread.
  static constexpr size_t kSpare = 1024;
  static size_t spares() { return Spares::size(); }

  iterator begin() { return d_ ? d_->begin() : empty_.begin(); }
  iterator end() { return d_ ? d_->end() : empty_.end(); }
  const_iterator begin() const { return d_ ? d_->cbegin() : empty_.cbegin(); }
  const_iterator end() const { return d_ ? d_->cend() : empty_.cend(); }

 private:
  using Spares = SpareList<Deque, kSpare>;
  Deque& get() {
    if (!d_) {
      d_ = Spares::take();
      if (!d_) d_ = std::make_unique<Deque>();
    }
    return *d_;
  }
  // d_ is empty: kept for the next deque to fill, or freed.
  void release() { Spares::give(std::move(d_)); }
  std::unique_ptr<Deque> d_;
  // Shared by every empty instance, for begin()/end(); never modified.
  static inline Deque empty_;
};

}  // namespace petrel
