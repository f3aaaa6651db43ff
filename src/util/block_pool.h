// src/util/block_pool.h — an allocator that keeps freed blocks of one size
// for the next allocation, per thread. For objects made and dropped once
// per message (the shared Message with its reference count): the loop
// frees them in bursts (a batch of acknowledgements), which fills malloc's
// per-thread cache at once and sends the rest down its slow path, the most
// expensive step of a QoS 1 message in a profile. A thread keeps at most
// kKeep blocks of each size; the rest go back to malloc.
#pragma once

#include <cstddef>
#include <new>

namespace petrel {

template <size_t Size>
class BlockFreeList {
 public:
  static constexpr size_t kKeep = 4096;

  static void* take() {
    List& l = list();
    if (!l.head) return ::operator new(Size);  // (also once the thread is ending)
    Block* b = l.head;
    l.head = b->next;
    --l.count;
    return b;
  }
  static void give(void* p) {
    List& l = list();
    if (l.count >= kKeep || l.gone) {
      ::operator delete(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = l.head;
    l.head = b;
    ++l.count;
  }

 private:
  struct Block {
    Block* next;
  };
  static_assert(Size >= sizeof(Block), "a block holds the list link while free");
  struct List {
    Block* head = nullptr;
    size_t count = 0;
    bool gone = false;  // the thread is ending: blocks freed now go to malloc
    ~List() {
      gone = true;
      while (head) {
        Block* b = head;
        head = b->next;
        ::operator delete(b);
      }
    }
  };
  static List& list() {
    thread_local List l;
    return l;
  }
};

// An allocator whose blocks of two sizes come from the free lists of their
// sizes (rounded up to 16 bytes), anything else from operator new:
// - single objects: for std::allocate_shared (the shared Message with its
//   reference count);
// - a std::deque's nodes: a deque used as a FIFO (a session's in-flight
//   window, its queue) allocates a node as its back fills one and frees one
//   as its front leaves it behind, every few messages. libstdc++ makes a node
//   512 bytes' worth of elements (one element when larger); the deque's map
//   is of another size, and so would its nodes be if that rule changed.
template <typename T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <typename U>
  PoolAllocator(const PoolAllocator<U>&) {}  // NOLINT: rebinding, as allocators do

  static constexpr size_t kBlock = (sizeof(T) + 15) / 16 * 16;
  static constexpr size_t kNodeBytes = sizeof(T) < 512 ? 512 / sizeof(T) * sizeof(T) : sizeof(T);
  static constexpr size_t kNodeBlock = (kNodeBytes + 15) / 16 * 16;

  T* allocate(size_t n) {
    static_assert(alignof(T) <= alignof(std::max_align_t), "over-aligned types are not pooled");
    if (n == 1) return static_cast<T*>(BlockFreeList<kBlock>::take());
    if (n * sizeof(T) == kNodeBytes) return static_cast<T*>(BlockFreeList<kNodeBlock>::take());
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n == 1) BlockFreeList<kBlock>::give(p);
    else if (n * sizeof(T) == kNodeBytes) BlockFreeList<kNodeBlock>::give(p);
    else ::operator delete(p);
  }
  template <typename U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const PoolAllocator<U>&) const { return false; }
};

}  // namespace petrel
