#include "src/delayed/delayed_window.h"

#include <algorithm>

#include "src/util/check.h"

namespace petrel {

bool DelayedWindow::insert(const Key& k, MessagePtr m) {
  if (k < boundary_) {
    // Before the boundary: in the window, whose last entry goes back to
    // disk-only if the window is over capacity.
    ram_.emplace(k, std::move(m));
    if (ram_.size() > capacity_) {
      ram_.erase(std::prev(ram_.end()));
      ++disk_only_;
      boundary_ = std::prev(ram_.end())->first;
    }
    return ram_.count(k) != 0;
  }
  if (disk_only_ == 0 && ram_.size() < capacity_) {
    // Nothing waits on disk and there is room: the window extends to it.
    ram_.emplace(k, std::move(m));
    boundary_ = k;
    return true;
  }
  ++disk_only_;
  return false;
}

DelayedWindow::Entry DelayedWindow::popFirst() {
  PETREL_CHECK(!ram_.empty());
  auto it = ram_.begin();
  Entry e{it->first, std::move(it->second)};
  ram_.erase(it);
  return e;
}

void DelayedWindow::refill(std::vector<Entry>&& next, bool all) {
  const size_t take = std::min(next.size(), capacity_);
  for (size_t i = 0; i < take; ++i) {
    PETREL_CHECK(boundary_ < next[i].first);  // read after the boundary, in order
    boundary_ = next[i].first;
    ram_.emplace(next[i].first, std::move(next[i].second));
  }
  const uint64_t left_read = next.size() - take;
  if (all) {
    disk_only_ = left_read;
  } else {
    disk_only_ = std::max<uint64_t>(disk_only_ > take ? disk_only_ - take : 0, left_read);
  }
}

}  // namespace petrel
