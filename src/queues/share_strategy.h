// src/queues/share_strategy.h — which member of a share group gets a
// message (shared.strategy): a pure choice over the group's members, so it
// is tested without a broker (tests/unit/src/queues).
//
// The caller says what it knows about each member:
//   ready(Subscriber&)   online with room in its window and output, and
//                        allowed to read the topic: it can take it now
//   online(Subscriber&)  connected (it may be busy)
//   allowed(Subscriber&) allowed to read the topic (ACL)
// Null means "nobody now": the message waits in the group queue.
#pragma once

#include <functional>
#include <random>
#include <string>

#include "src/queues/shared_group.h"
#include "src/sessions/session.h"

namespace petrel {

template <typename Ready, typename Online, typename Allowed>
Subscriber* pickMember(SharedGroup& g, const Message& m, Ready&& ready, Online&& online, Allowed&& allowed) {
  const size_t n = g.members.size();
  if (n == 0) return nullptr;
  auto roundRobin = [&](bool advance) -> Subscriber* {
    for (size_t i = 0; i < n; ++i) {
      const size_t idx = (g.cursor + i) % n;
      if (ready(g.members[idx])) {
        g.cursor = advance ? idx + 1 : idx;
        return &g.members[idx];
      }
    }
    return nullptr;
  };
  switch (g.strategy) {
    case ShareStrategy::RoundRobin:
      return roundRobin(true);
    case ShareStrategy::Sticky: {
      Subscriber& cur = g.members[g.cursor % n];
      if (ready(cur)) return &cur;
      // Stay with the current member while it is online and only busy.
      if (online(cur)) return nullptr;
      return roundRobin(false);
    }
    case ShareStrategy::Random: {
      static std::mt19937 rng{std::random_device{}()};
      size_t ready_count = 0;
      for (auto& x : g.members) ready_count += ready(x);
      if (!ready_count) return nullptr;
      size_t k = std::uniform_int_distribution<size_t>(0, ready_count - 1)(rng);
      for (auto& x : g.members)
        if (ready(x) && k-- == 0) return &x;
      return nullptr;
    }
    case ShareStrategy::HashClientId:
    case ShareStrategy::HashTopic: {
      const std::string& key = g.strategy == ShareStrategy::HashTopic ? m.topic : m.origin;
      Subscriber& t = g.members[std::hash<std::string>{}(key) % n];
      // Affinity: wait for the member of this key while it is online; only
      // an offline member's keys move to another member.
      if (online(t) && allowed(t)) return ready(t) ? &t : nullptr;
      return roundRobin(true);
    }
    case ShareStrategy::LeastInflight: {
      Subscriber* best = nullptr;
      size_t best_free = 0;
      for (auto& x : g.members) {
        if (!ready(x)) continue;
        const size_t free = x.session->windowFree();
        if (!best || free > best_free) {
          best = &x;
          best_free = free;
        }
      }
      return best;
    }
  }
  return nullptr;
}

}  // namespace petrel
