#include "src/util/spare_list.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace petrel {
namespace {

// Counts the objects alive: one kept too many, or one freed twice, shows.
struct Counted {
  static inline int alive = 0;
  Counted() { ++alive; }
  ~Counted() { --alive; }
  int value = 0;
};

// Its own list (the template's arguments name it), so other tests' use of
// a SpareList does not count here.
using Spares = SpareList<Counted, 8>;

TEST(SpareList, KeepsAtMostItsBoundAndHandsTheKeptOnesOutAgain) {
  ASSERT_EQ(Spares::size(), 0u);
  const int before = Counted::alive;
  std::vector<Counted*> given;
  for (int i = 0; i < 100; ++i) {  // far past the bound
    auto p = std::make_unique<Counted>();
    p->value = i;
    if (Spares::room()) given.push_back(p.get());
    Spares::give(std::move(p));
  }
  EXPECT_EQ(Spares::size(), 8u);
  EXPECT_EQ(Counted::alive, before + 8);  // the other 92 were freed at once
  EXPECT_FALSE(Spares::room());
  for (int i = 7; i >= 0; --i) {  // the last one kept comes first
    std::unique_ptr<Counted> p = Spares::take();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p.get(), given[static_cast<size_t>(i)]);
    EXPECT_EQ(p->value, i);
  }
  EXPECT_EQ(Spares::take(), nullptr);
  EXPECT_EQ(Counted::alive, before);
}

TEST(SpareList, WhatAThreadKeptIsFreedWhenItEnds) {
  const int before = Counted::alive;
  std::thread t([] {
    for (int i = 0; i < 5; ++i) Spares::give(std::make_unique<Counted>());
    EXPECT_EQ(Spares::size(), 5u);
  });
  t.join();
  EXPECT_EQ(Counted::alive, before);
  EXPECT_EQ(Spares::size(), 0u);  // this thread's list is another
}

}  // namespace
}  // namespace petrel
