// src/delayed/delayed_window.h — which pending delayed publishes are in RAM.
//
// The pending entries are ordered by key (due time, then message id). The
// window holds every pending entry up to boundary(), at most `capacity` of
// them; every entry after it waits only in the store (diskOnly()). A new
// entry that sorts before the boundary goes into the window (pushing the
// window's last one back to disk-only when it is full); a later one goes to
// disk only, unless nothing waits on disk and the window has room. When the
// window has drained and entries wait on disk, the owner reads the next ones
// after boundary() from the store and hands them to refill().
//
// Without a store the capacity is unbounded: every entry stays in RAM.
// Pure bookkeeping: no store, no timer, no clock (unit-tested on its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "persistence/records.h"
#include "src/routing/message.h"

namespace petrel {

class DelayedWindow {
 public:
  using Key = persistence::DelayedKey;
  // A pending entry: its message when it is in RAM, null when it must be
  // read from the store.
  using Entry = std::pair<Key, MessagePtr>;

  explicit DelayedWindow(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  size_t capacity() const { return capacity_; }
  uint64_t pending() const { return ram_.size() + disk_only_; }
  size_t inRam() const { return ram_.size(); }
  uint64_t diskOnly() const { return disk_only_; }
  bool empty() const { return ram_.empty(); }
  // The earliest entry; only while !empty().
  const Key& first() const { return ram_.begin()->first; }
  // Pending entries after this key are on disk only.
  const Key& boundary() const { return boundary_; }
  // The window is empty and entries wait on disk: refill() it.
  bool needsRefill() const { return ram_.empty() && disk_only_ > 0; }

  // A new pending entry. Returns true when it is kept in RAM.
  bool insert(const Key& k, MessagePtr m);
  // Removes the earliest entry and returns it; only while !empty().
  Entry popFirst();
  // At start-up: `n` entries wait in the store, none in RAM.
  void setDiskOnly(uint64_t n) { disk_only_ = n; }
  // The entries read from the store after boundary(), in key order, none of
  // them in RAM; `all` when the read reached the end of the store (the
  // count of disk-only entries is then corrected to what is there). The
  // first `capacity` of them fill the window.
  void refill(std::vector<Entry>&& next, bool all);

  // The entries in RAM, in key order (tests, reports).
  const std::map<Key, MessagePtr>& ram() const { return ram_; }

 private:
  size_t capacity_;
  std::map<Key, MessagePtr> ram_;
  uint64_t disk_only_ = 0;
  Key boundary_{};  // below every real key: due times are after the epoch
};

}  // namespace petrel
