// src/util/spare_list.h — objects kept for reuse, per thread, instead of
// being freed: an emptied deque of a session's window (lazy_deque.h), a
// dropped message with its strings' buffers (routing/message.h). The list
// holds at most N, reserved up front, so keeping one never allocates. Once
// the thread's list is destroyed (the thread is ending), what is given
// back is freed at once.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace petrel {

template <typename T, size_t N>
class SpareList {
 public:
  // One kept object, or null when none is.
  static std::unique_ptr<T> take() {
    List& l = list();
    if (l.gone || l.free.empty()) return nullptr;
    std::unique_ptr<T> p = std::move(l.free.back());
    l.free.pop_back();
    return p;
  }
  // Kept, or freed when N are kept already or the thread is ending.
  static void give(std::unique_ptr<T> p) {
    List& l = list();
    if (!l.gone && l.free.size() < N) l.free.push_back(std::move(p));
  }
  // give() would keep one now.
  static bool room() {
    const List& l = list();
    return !l.gone && l.free.size() < N;
  }
  static size_t size() { return list().free.size(); }

 private:
  struct List {
    List() { free.reserve(N); }
    ~List() { gone = true; }  // set before `free` frees what it holds
    std::vector<std::unique_ptr<T>> free;
    bool gone = false;
  };
  static List& list() {
    thread_local List l;
    return l;
  }
};

}  // namespace petrel
