#include "src/util/lazy_deque.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "src/util/block_pool.h"

namespace petrel {
namespace {

// An element the size of a window entry, with a heap part (a leak or a
// double destruction shows under the sanitizer build).
struct Entry {
  uint64_t n = 0;
  std::string s;
  char pad[64] = {};
};

Entry entry(uint64_t n) {
  Entry e;
  e.n = n;
  e.s = "entry number " + std::to_string(n) + " with a heap-allocated text";
  return e;
}

TEST(LazyDeque, BehavesAsADequeFarPastItsNodesAndSpares) {
  // 200,000 random operations against std::deque: FIFO runs much longer
  // than a node, emptied and filled again (through the spares), erasing in
  // the middle, pushing to the front.
  std::mt19937_64 rng(7);
  std::vector<LazyDeque<Entry>> ds(8);
  std::vector<std::deque<uint64_t>> ref(8);
  uint64_t next = 1;
  for (int op = 0; op < 200'000; ++op) {
    const size_t k = rng() % ds.size();
    auto& d = ds[k];
    auto& r = ref[k];
    const unsigned what = rng() % 100;
    if (what < 50) {
      d.push_back(entry(next));
      r.push_back(next++);
    } else if (what < 53) {
      d.push_front(entry(next));
      r.push_front(next++);
    } else if (what < 95) {
      if (!r.empty()) {
        ASSERT_EQ(d.front().n, r.front());
        d.pop_front();
        r.pop_front();
      }
    } else if (what < 98) {
      if (!r.empty()) {
        const size_t i = rng() % r.size();
        auto it = d.begin() + static_cast<std::ptrdiff_t>(i);
        ASSERT_EQ(it->n, r[i]);
        d.erase(it);
        r.erase(r.begin() + static_cast<std::ptrdiff_t>(i));
      }
    } else if (what < 99) {
      d.clear();
      r.clear();
    } else {
      // A long burst, then drained to empty.
      for (int i = 0; i < 5000; ++i) {
        d.push_back(entry(next));
        r.push_back(next++);
      }
      while (!r.empty()) {
        ASSERT_EQ(d.front().n, r.front());
        ASSERT_EQ(d.back().n, r.back());
        d.pop_front();
        r.pop_front();
      }
    }
    ASSERT_EQ(d.size(), r.size());
    ASSERT_EQ(d.empty(), r.empty());
  }
  for (size_t k = 0; k < ds.size(); ++k) {
    size_t i = 0;
    for (const Entry& e : ds[k]) {
      ASSERT_EQ(e.n, ref[k][i]);
      ASSERT_EQ(e.s, "entry number " + std::to_string(ref[k][i]) + " with a heap-allocated text");
      ++i;
    }
    EXPECT_EQ(i, ref[k].size());
  }
}

TEST(LazyDeque, AnEmptiedDequeIsKeptForTheNextAndTheSparesAreBounded) {
  using D = LazyDeque<Entry>;
  // More deques emptied at once than are kept: the rest are freed.
  std::vector<D> many(D::kSpare * 2);
  for (auto& d : many) d.push_back(entry(1));
  for (auto& d : many) d.pop_front();
  EXPECT_EQ(D::spares(), D::kSpare);
  // The next deque to fill takes one of them, and gives it back when empty.
  D d;
  d.push_back(entry(2));
  EXPECT_EQ(D::spares(), D::kSpare - 1);
  d.pop_front();
  EXPECT_EQ(D::spares(), D::kSpare);
  // An empty deque holds nothing.
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.begin(), d.end());
}

TEST(LazyDeque, NodesComeFromTheFreeListOfTheirSize) {
  using A = PoolAllocator<Entry>;
  constexpr size_t per_node = A::kNodeBytes / sizeof(Entry);
  static_assert(per_node >= 1, "a node holds at least one element");
  A a;
  Entry* n1 = a.allocate(per_node);
  a.deallocate(n1, per_node);
  Entry* n2 = a.allocate(per_node);
  EXPECT_EQ(n1, n2);  // the freed node, handed out again
  a.deallocate(n2, per_node);
  // Another size (a deque's map) is plain operator new and delete.
  PoolAllocator<Entry*> m;
  Entry** map = m.allocate(8);
  m.deallocate(map, 8);
}

}  // namespace
}  // namespace petrel
