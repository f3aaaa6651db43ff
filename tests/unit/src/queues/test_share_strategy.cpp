// pickMember: which member of a share group gets a message under each
// strategy, given which members are ready, online and allowed.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <vector>

#include "src/queues/share_strategy.h"

namespace petrel {
namespace {

struct Group {
  std::vector<std::unique_ptr<Session>> sessions;
  SharedGroup g;
  std::set<const Session*> busy, offline, denied;

  explicit Group(size_t n, ShareStrategy st) {
    g.strategy = st;
    for (size_t i = 0; i < n; ++i) {
      sessions.push_back(std::make_unique<Session>("m" + std::to_string(i)));
      sessions.back()->client_receive_max = 10;
      g.members.push_back(Subscriber{sessions.back().get(), {}});
    }
  }
  Session* pick(const Message& m) {
    auto online = [&](const Subscriber& x) { return !offline.count(x.session); };
    auto allowed = [&](const Subscriber& x) { return !denied.count(x.session); };
    auto ready = [&](const Subscriber& x) { return online(x) && allowed(x) && !busy.count(x.session); };
    Subscriber* s = pickMember(g, m, ready, online, allowed);
    return s ? s->session : nullptr;
  }
  Session* at(size_t i) { return sessions[i].get(); }
};

Message msg(std::string topic, std::string origin = "pub") {
  Message m;
  m.topic = std::move(topic);
  m.origin = std::move(origin);
  return m;
}

TEST(ShareStrategy, NoMembersNoPick) {
  Group t(0, ShareStrategy::RoundRobin);
  EXPECT_EQ(t.pick(msg("a")), nullptr);
}

TEST(ShareStrategy, RoundRobinTakesTurnsAndSkipsBusyMembers) {
  Group t(3, ShareStrategy::RoundRobin);
  const Message m = msg("a");
  EXPECT_EQ(t.pick(m), t.at(0));
  EXPECT_EQ(t.pick(m), t.at(1));
  EXPECT_EQ(t.pick(m), t.at(2));
  EXPECT_EQ(t.pick(m), t.at(0));
  t.busy.insert(t.at(1));
  EXPECT_EQ(t.pick(m), t.at(2));
  t.busy = {t.at(0), t.at(1), t.at(2)};
  EXPECT_EQ(t.pick(m), nullptr);  // everyone busy: the message waits
}

TEST(ShareStrategy, StickyStaysWithABusyOnlineMemberAndMovesOnWhenItLeaves) {
  Group t(3, ShareStrategy::Sticky);
  const Message m = msg("a");
  EXPECT_EQ(t.pick(m), t.at(0));
  EXPECT_EQ(t.pick(m), t.at(0));
  t.busy.insert(t.at(0));
  EXPECT_EQ(t.pick(m), nullptr);  // waits for its member
  t.offline.insert(t.at(0));
  EXPECT_EQ(t.pick(m), t.at(1));
  EXPECT_EQ(t.pick(m), t.at(1));  // and sticks to the new one
}

TEST(ShareStrategy, RandomPicksOnlyReadyMembers) {
  Group t(4, ShareStrategy::Random);
  t.busy = {t.at(0), t.at(2)};
  std::set<Session*> seen;
  for (int i = 0; i < 200; ++i) seen.insert(t.pick(msg("a")));
  EXPECT_EQ(seen, (std::set<Session*>{t.at(1), t.at(3)}));
}

TEST(ShareStrategy, HashClientIdKeepsOnePublisherOnOneMember) {
  Group t(4, ShareStrategy::HashClientId);
  for (const char* pub : {"p1", "p2", "p3", "p4", "p5"}) {
    Session* first = t.pick(msg("x", pub));
    ASSERT_NE(first, nullptr);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(t.pick(msg("y" + std::to_string(i), pub)), first);
    // Its member busy but online: wait rather than reorder.
    t.busy.insert(first);
    EXPECT_EQ(t.pick(msg("x", pub)), nullptr);
    // Its member gone: another one takes the key.
    t.offline.insert(first);
    Session* next = t.pick(msg("x", pub));
    EXPECT_NE(next, nullptr);
    EXPECT_NE(next, first);
    t.busy.clear();
    t.offline.clear();
  }
}

TEST(ShareStrategy, HashTopicKeepsOneTopicOnOneMember) {
  Group t(3, ShareStrategy::HashTopic);
  Session* a = t.pick(msg("sensors/1", "p1"));
  for (const char* pub : {"p2", "p3", "p4"}) EXPECT_EQ(t.pick(msg("sensors/1", pub)), a);
}

TEST(ShareStrategy, HashSkipsAMemberNotAllowedToReadTheTopic) {
  Group t(2, ShareStrategy::HashTopic);
  Session* owner = t.pick(msg("t"));
  t.denied.insert(owner);
  Session* other = t.pick(msg("t"));
  EXPECT_NE(other, nullptr);
  EXPECT_NE(other, owner);
}

TEST(ShareStrategy, LeastInflightPrefersTheMostFreeWindow) {
  Group t(3, ShareStrategy::LeastInflight);
  auto fill = [](Session* s, uint16_t n) {
    for (uint16_t id = 1; id <= n; ++id) s->inflight.push_back(InflightOut{id, Delivery{}, false});
  };
  fill(t.at(0), 5);
  fill(t.at(1), 2);
  fill(t.at(2), 7);
  EXPECT_EQ(t.pick(msg("a")), t.at(1));
  t.busy.insert(t.at(1));
  EXPECT_EQ(t.pick(msg("a")), t.at(0));
}

}  // namespace
}  // namespace petrel
