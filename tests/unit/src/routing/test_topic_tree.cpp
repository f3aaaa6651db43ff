// TopicTree: the subscription index. Checks subscribe/replace/unsubscribe and
// subscriptionCount, matching with `+`, `#` (also the parent level), empty
// levels, `$` topics (no first-level wildcard match [MQTT-4.7.2-1]), one
// report per overlapping subscription, and share groups (findGroup, onGroup
// once per matching group, members, dropGroup). Randomized differential
// tests (fixed seeds) compare the tree's matcher against mqtt::topicMatches.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mqtt/topic.h"
#include "src/queues/shared_group.h"
#include "src/routing/topic_tree.h"
#include "src/sessions/session.h"

namespace petrel {
namespace {

SubscriptionOptions opts(uint32_t id, uint8_t qos = 0) {
  SubscriptionOptions o;
  o.qos = qos;
  o.subscription_id = id;
  return o;
}

// The subscription ids of the plain subscriptions matching `topic`, sorted
// (duplicates kept: each report counts), and the groups reported.
struct Matched {
  std::vector<uint32_t> ids;
  std::vector<const SharedGroup*> groups;
};

Matched matchAll(TopicTree& t, std::string_view topic) {
  Matched m;
  t.match(
      topic, [&](const Subscriber& s) { m.ids.push_back(s.opts.subscription_id); },
      [&](SharedGroup& g) { m.groups.push_back(&g); });
  std::sort(m.ids.begin(), m.ids.end());
  return m;
}

std::vector<uint32_t> ids(TopicTree& t, std::string_view topic) { return matchAll(t, topic).ids; }

using Ids = std::vector<uint32_t>;

TEST(TopicTree, SubscribeReplaceAndUnsubscribe) {
  TopicTree t;
  Session a("a"), b("b");
  EXPECT_EQ(t.subscriptionCount(), 0u);
  EXPECT_FALSE(t.subscribe("x/y", "", &a, opts(1, 0)));
  EXPECT_FALSE(t.subscribe("x/y", "", &b, opts(2, 1)));
  EXPECT_EQ(t.subscriptionCount(), 2u);

  // Same session, same filter: replaced, options updated, count unchanged.
  EXPECT_TRUE(t.subscribe("x/y", "", &a, opts(3, 2)));
  EXPECT_EQ(t.subscriptionCount(), 2u);
  std::map<const Session*, SubscriptionOptions> seen;
  t.match(
      "x/y", [&](const Subscriber& s) { seen[s.session] = s.opts; }, [](SharedGroup&) {});
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[&a].qos, 2);
  EXPECT_EQ(seen[&a].subscription_id, 3u);
  EXPECT_EQ(seen[&b].qos, 1);

  EXPECT_TRUE(t.unsubscribe("x/y", "", &a));
  EXPECT_FALSE(t.unsubscribe("x/y", "", &a));  // already gone
  EXPECT_FALSE(t.unsubscribe("x", "", &b));     // prefix of a filter, not one
  EXPECT_FALSE(t.unsubscribe("x/y/z", "", &b)); // longer than any filter
  EXPECT_FALSE(t.unsubscribe("nope", "", &b));
  EXPECT_FALSE(t.unsubscribe("x/y", "g", &b));  // not a group member
  EXPECT_EQ(t.subscriptionCount(), 1u);
  EXPECT_EQ(ids(t, "x/y"), (Ids{2}));

  EXPECT_TRUE(t.unsubscribe("x/y", "", &b));
  EXPECT_EQ(t.subscriptionCount(), 0u);
  EXPECT_TRUE(ids(t, "x/y").empty());
}

TEST(TopicTree, UnsubscribeKeepsSiblingsAndDescendants) {
  TopicTree t;
  Session a("a");
  t.subscribe("a/b/c", "", &a, opts(1));
  t.subscribe("a/b", "", &a, opts(2));
  t.subscribe("a/d", "", &a, opts(3));
  EXPECT_TRUE(t.unsubscribe("a/b", "", &a));
  EXPECT_EQ(ids(t, "a/b/c"), (Ids{1}));
  EXPECT_EQ(ids(t, "a/d"), (Ids{3}));
  EXPECT_TRUE(ids(t, "a/b").empty());
  EXPECT_TRUE(t.unsubscribe("a/b/c", "", &a));
  EXPECT_EQ(ids(t, "a/d"), (Ids{3}));
  // A pruned branch can be subscribed again.
  EXPECT_FALSE(t.subscribe("a/b/c", "", &a, opts(4)));
  EXPECT_EQ(ids(t, "a/b/c"), (Ids{4}));
  EXPECT_EQ(t.subscriptionCount(), 2u);
}

TEST(TopicTree, ExactAndPlus) {
  TopicTree t;
  Session s("s");
  t.subscribe("sport/tennis/player1", "", &s, opts(1));
  t.subscribe("sport/+/player1", "", &s, opts(2));
  t.subscribe("+/+/+", "", &s, opts(3));
  t.subscribe("sport/+", "", &s, opts(4));
  t.subscribe("+", "", &s, opts(5));
  EXPECT_EQ(ids(t, "sport/tennis/player1"), (Ids{1, 2, 3}));
  EXPECT_EQ(ids(t, "sport/golf/player1"), (Ids{2, 3}));
  EXPECT_EQ(ids(t, "sport/golf/player2"), (Ids{3}));
  EXPECT_EQ(ids(t, "sport/tennis"), (Ids{4}));
  EXPECT_EQ(ids(t, "sport"), (Ids{5}));
  EXPECT_TRUE(ids(t, "sport/tennis/player1/ranking").empty());
  EXPECT_EQ(ids(t, "sportx/tennis/player1"), (Ids{3}));
}

TEST(TopicTree, HashMatchesLevelAndBelowIncludingParent) {
  TopicTree t;
  Session s("s");
  t.subscribe("sport/#", "", &s, opts(1));
  t.subscribe("#", "", &s, opts(2));
  t.subscribe("sport/tennis/#", "", &s, opts(3));
  t.subscribe("+/#", "", &s, opts(4));
  EXPECT_EQ(ids(t, "sport"), (Ids{1, 2, 4}));  // "sport/#" matches "sport"
  EXPECT_EQ(ids(t, "sport/tennis"), (Ids{1, 2, 3, 4}));
  EXPECT_EQ(ids(t, "sport/tennis/player1/x"), (Ids{1, 2, 3, 4}));
  EXPECT_EQ(ids(t, "sportx"), (Ids{2, 4}));
  EXPECT_EQ(ids(t, "other/a"), (Ids{2, 4}));
}

TEST(TopicTree, EmptyLevels) {
  TopicTree t;
  Session s("s");
  t.subscribe("a//b", "", &s, opts(1));
  t.subscribe("a/+/b", "", &s, opts(2));
  t.subscribe("/x", "", &s, opts(3));
  t.subscribe("+/x", "", &s, opts(4));
  t.subscribe("a/", "", &s, opts(5));
  t.subscribe("a/+", "", &s, opts(6));
  EXPECT_EQ(ids(t, "a//b"), (Ids{1, 2}));
  EXPECT_EQ(ids(t, "a/c/b"), (Ids{2}));
  EXPECT_EQ(ids(t, "a/b"), (Ids{6}));  // only "a/+": "a//b" needs the empty level
  EXPECT_EQ(ids(t, "/x"), (Ids{3, 4}));
  EXPECT_EQ(ids(t, "a/"), (Ids{5, 6}));
  EXPECT_EQ(ids(t, "a/c"), (Ids{6}));
  EXPECT_TRUE(ids(t, "a").empty());
}

TEST(TopicTree, DollarTopicsAndFirstLevelWildcards) {
  TopicTree t;
  Session s("s");
  t.subscribe("#", "", &s, opts(1));
  t.subscribe("+/broker/load", "", &s, opts(2));
  t.subscribe("+/#", "", &s, opts(3));
  t.subscribe("$SYS/#", "", &s, opts(4));
  t.subscribe("$SYS/+/load", "", &s, opts(5));
  t.subscribe("$SYS/broker/load", "", &s, opts(6));
  EXPECT_EQ(ids(t, "$SYS/broker/load"), (Ids{4, 5, 6}));
  EXPECT_EQ(ids(t, "$SYS"), (Ids{4}));  // "$SYS/#" matches "$SYS"
  EXPECT_TRUE(ids(t, "$other").empty());
  // Not a `$` topic: every wildcard applies.
  EXPECT_EQ(ids(t, "SYS/broker/load"), (Ids{1, 2, 3}));
  // `$` beyond the first character of the topic is an ordinary character.
  t.subscribe("a/+", "", &s, opts(7));
  EXPECT_EQ(ids(t, "a/$b"), (Ids{1, 3, 7}));
}

TEST(TopicTree, OverlappingSubscriptionsReportedOncePerSubscription) {
  TopicTree t;
  Session a("a"), b("b");
  t.subscribe("a/b", "", &a, opts(1));
  t.subscribe("a/+", "", &a, opts(2));
  t.subscribe("#", "", &a, opts(3));
  t.subscribe("a/#", "", &b, opts(4));
  std::map<const Session*, int> per_session;
  t.match(
      "a/b", [&](const Subscriber& s) { ++per_session[s.session]; }, [](SharedGroup&) {});
  EXPECT_EQ(per_session[&a], 3);
  EXPECT_EQ(per_session[&b], 1);
  EXPECT_EQ(ids(t, "a/b"), (Ids{1, 2, 3, 4}));
}

TEST(TopicTree, FindGroupCreatesOnlyWhenAsked) {
  TopicTree t;
  EXPECT_EQ(t.findGroup("a/+", "g", false), nullptr);
  SharedGroup* g = t.findGroup("a/+", "g", true);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->name, "g");
  EXPECT_EQ(g->filter, "a/+");
  EXPECT_TRUE(g->members.empty());
  EXPECT_EQ(t.findGroup("a/+", "g", false), g);
  EXPECT_EQ(t.findGroup("a/+", "g", true), g);
  EXPECT_EQ(t.findGroup("a/+", "h", false), nullptr);
  EXPECT_EQ(t.findGroup("a", "g", false), nullptr);
  EXPECT_EQ(t.findGroup("a/+/c", "g", false), nullptr);
  SharedGroup* h = t.findGroup("a/+", "h", true);
  ASSERT_NE(h, nullptr);
  EXPECT_NE(h, g);
  EXPECT_EQ(t.subscriptionCount(), 0u);  // groups without members count nothing
}

TEST(TopicTree, GroupsReportedOncePerMatchingGroupWithMembers) {
  TopicTree t;
  Session a("a"), b("b"), c("c");
  EXPECT_FALSE(t.subscribe("s/+", "g1", &a, opts(1)));
  EXPECT_FALSE(t.subscribe("s/+", "g1", &b, opts(2)));
  EXPECT_TRUE(t.subscribe("s/+", "g1", &b, opts(3, 1)));  // replaced in the group
  EXPECT_FALSE(t.subscribe("s/+", "g2", &c, opts(4)));
  EXPECT_FALSE(t.subscribe("s/#", "g1", &c, opts(5)));  // same name, other filter
  EXPECT_FALSE(t.subscribe("s/x", "", &a, opts(6)));    // plain, alongside
  EXPECT_EQ(t.subscriptionCount(), 5u);

  SharedGroup* g1 = t.findGroup("s/+", "g1", false);
  SharedGroup* g2 = t.findGroup("s/+", "g2", false);
  SharedGroup* g3 = t.findGroup("s/#", "g1", false);
  ASSERT_TRUE(g1 && g2 && g3);
  ASSERT_EQ(g1->members.size(), 2u);
  EXPECT_EQ(g1->members[0].session, &a);
  EXPECT_EQ(g1->members[1].session, &b);
  EXPECT_EQ(g1->members[1].opts.subscription_id, 3u);
  EXPECT_EQ(g1->members[1].opts.qos, 1);
  ASSERT_EQ(g2->members.size(), 1u);
  EXPECT_EQ(g2->members[0].session, &c);

  Matched m = matchAll(t, "s/x");
  EXPECT_EQ(m.ids, (Ids{6}));  // group members are not plain matches
  std::multiset<const SharedGroup*> got(m.groups.begin(), m.groups.end());
  EXPECT_EQ(got, (std::multiset<const SharedGroup*>{g1, g2, g3}));

  m = matchAll(t, "s");
  EXPECT_EQ(m.groups, (std::vector<const SharedGroup*>{g3}));  // only "s/#"
  m = matchAll(t, "s/x/y");
  EXPECT_EQ(m.groups, (std::vector<const SharedGroup*>{g3}));
  m = matchAll(t, "t/x");
  EXPECT_TRUE(m.groups.empty());

  int walked = 0;
  t.forEachGroup([&](SharedGroup&) { ++walked; });
  EXPECT_EQ(walked, 3);
}

TEST(TopicTree, GroupsOnWildcardFiltersSkipDollarTopics) {
  TopicTree t;
  Session a("a");
  t.subscribe("#", "g", &a, opts(1));
  t.subscribe("$SYS/#", "g", &a, opts(2));
  SharedGroup* all = t.findGroup("#", "g", false);
  SharedGroup* sys = t.findGroup("$SYS/#", "g", false);
  EXPECT_EQ(matchAll(t, "$SYS/x").groups, (std::vector<const SharedGroup*>{sys}));
  EXPECT_EQ(matchAll(t, "x").groups, (std::vector<const SharedGroup*>{all}));
}

TEST(TopicTree, EmptiedGroupStaysUntilDropped) {
  TopicTree t;
  Session a("a"), b("b");
  t.subscribe("q/+", "g", &a, opts(1));
  t.subscribe("q/+", "g", &b, opts(2));
  SharedGroup* g = t.findGroup("q/+", "g", false);
  ASSERT_NE(g, nullptr);

  // A group with members is in use: dropGroup leaves it.
  t.dropGroup("q/+", "g");
  EXPECT_EQ(t.findGroup("q/+", "g", false), g);

  EXPECT_TRUE(t.unsubscribe("q/+", "g", &a));
  EXPECT_FALSE(t.unsubscribe("q/+", "g", &a));
  EXPECT_FALSE(t.unsubscribe("q/+", "other", &b));
  EXPECT_FALSE(t.unsubscribe("q/+", "", &b));  // not a plain subscription
  EXPECT_TRUE(t.unsubscribe("q/+", "g", &b));
  EXPECT_EQ(t.subscriptionCount(), 0u);

  // No members, but the group (and its queue) stays, and still matches.
  EXPECT_EQ(t.findGroup("q/+", "g", false), g);
  EXPECT_EQ(matchAll(t, "q/1").groups, (std::vector<const SharedGroup*>{g}));

  // Something queued or in flight in its work queue keeps it too.
  GroupQueue work(*g);
  g->work = &work;
  work.inflight = 1;
  t.dropGroup("q/+", "g");
  EXPECT_EQ(t.findGroup("q/+", "g", false), g);
  work.inflight = 0;

  t.dropGroup("q/+", "nope");  // absent group: no effect
  t.dropGroup("r/+", "g");     // absent filter: no effect
  EXPECT_EQ(t.findGroup("q/+", "g", false), g);

  t.dropGroup("q/+", "g");
  EXPECT_EQ(t.findGroup("q/+", "g", false), nullptr);
  EXPECT_TRUE(matchAll(t, "q/1").groups.empty());
  int walked = 0;
  t.forEachGroup([&](SharedGroup&) { ++walked; });
  EXPECT_EQ(walked, 0);
}

TEST(TopicTree, DropGroupKeepsOtherUsersOfThePath) {
  TopicTree t;
  Session a("a");
  t.subscribe("q/r", "", &a, opts(1));
  t.findGroup("q/r/s", "g", true);
  t.findGroup("q", "h", true);
  t.dropGroup("q/r/s", "g");
  EXPECT_EQ(t.findGroup("q/r/s", "g", false), nullptr);
  EXPECT_EQ(ids(t, "q/r"), (Ids{1}));
  EXPECT_NE(t.findGroup("q", "h", false), nullptr);
  t.dropGroup("q", "h");
  EXPECT_EQ(t.findGroup("q", "h", false), nullptr);
  EXPECT_EQ(ids(t, "q/r"), (Ids{1}));
}

// ---------------------------------------------------------------------------
// Differential: the tree against mqtt::topicMatches.

std::string randomFilter(std::mt19937& rng) {
  static const char* const kLevels[] = {"a", "b", "", "$x", "+", "+"};
  const size_t n = 1 + rng() % 4;
  std::string f;
  for (size_t i = 0; i < n; ++i) {
    if (i) f += '/';
    // `#` only as the last level.
    if (i + 1 == n && rng() % 4 == 0) {
      f += '#';
    } else {
      f += kLevels[rng() % std::size(kLevels)];
    }
  }
  return f;
}

std::string randomTopic(std::mt19937& rng) {
  static const char* const kLevels[] = {"a", "b", "", "$x", "c"};
  const size_t n = 1 + rng() % 5;
  std::string t;
  for (size_t i = 0; i < n; ++i) {
    if (i) t += '/';
    t += kLevels[rng() % std::size(kLevels)];
  }
  return t;
}

TEST(TopicTree, DifferentialAgainstTopicMatches) {
  std::mt19937 rng(20240611);
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < 8; ++i) sessions.push_back(std::make_unique<Session>("c" + std::to_string(i)));

  TopicTree t;
  // (filter, session) -> subscription id; (filter, group) -> group members.
  std::map<std::pair<std::string, Session*>, uint32_t> plain;
  std::map<std::pair<std::string, std::string>, std::set<Session*>> groups;
  uint32_t next_id = 1;
  size_t subscribed = 0;
  for (int i = 0; i < 600; ++i) {
    std::string f = randomFilter(rng);
    if (!mqtt::validTopicFilter(f)) continue;
    Session* s = sessions[rng() % sessions.size()].get();
    if (rng() % 5 == 0) {
      std::string g = rng() % 2 ? "g1" : "g2";
      const bool had = groups[{f, g}].count(s) > 0;
      EXPECT_EQ(t.subscribe(f, g, s, opts(0)), had) << f << " " << g;
      groups[{f, g}].insert(s);
      subscribed += !had;
    } else {
      const uint32_t id = next_id++;
      auto [it, added] = plain.insert_or_assign({f, s}, id);
      EXPECT_EQ(t.subscribe(f, "", s, opts(id)), !added) << f;
      subscribed += added;
    }
  }
  ASSERT_EQ(t.subscriptionCount(), subscribed);
  ASSERT_GT(plain.size(), 100u);
  ASSERT_GT(groups.size(), 20u);

  // How much the check exercised: matches found, and `$` topics that a
  // first-level wildcard filter would have matched but for [MQTT-4.7.2-1].
  size_t plain_matches = 0, group_matches = 0, dollar_skips = 0;
  auto check = [&](const std::string& topic) {
    Ids want;
    for (const auto& [key, id] : plain)
      if (mqtt::topicMatches(key.first, topic)) want.push_back(id);
    std::sort(want.begin(), want.end());
    std::multiset<std::pair<std::string, std::string>> want_groups, got_groups;
    for (const auto& [key, members] : groups)
      if (mqtt::topicMatches(key.first, topic)) want_groups.insert(key);

    Matched m = matchAll(t, topic);
    for (const SharedGroup* g : m.groups) got_groups.insert({g->filter, g->name});
    EXPECT_EQ(m.ids, want) << "topic '" << topic << "'";
    EXPECT_EQ(got_groups, want_groups) << "topic '" << topic << "'";
    plain_matches += want.size();
    group_matches += want_groups.size();
    if (topic[0] == '$')
      for (const auto& [key, id] : plain)
        if (key.first[0] == '+' || key.first[0] == '#')
          dollar_skips += mqtt::topicMatches(key.first, topic.substr(1));
  };

  // Random topics, plus every topic of up to three levels over the alphabet.
  std::set<std::string> topics;
  for (int i = 0; i < 3000; ++i) topics.insert(randomTopic(rng));
  static const char* const kLevels[] = {"a", "b", "", "$x", "c"};
  for (const char* l1 : kLevels) {
    topics.insert(l1);
    for (const char* l2 : kLevels) {
      topics.insert(std::string(l1) + "/" + l2);
      for (const char* l3 : kLevels) topics.insert(std::string(l1) + "/" + l2 + "/" + l3);
    }
  }
  topics.erase("");  // not a topic name
  for (const std::string& topic : topics) {
    ASSERT_TRUE(mqtt::validTopicName(topic)) << topic;
    check(topic);
  }
  EXPECT_GT(plain_matches, 10000u);
  EXPECT_GT(group_matches, 2000u);
  EXPECT_GT(dollar_skips, 1000u);

  // Remove half of the plain subscriptions and check again.
  size_t n = 0;
  for (auto it = plain.begin(); it != plain.end();) {
    if (n++ % 2) {
      EXPECT_TRUE(t.unsubscribe(it->first.first, "", it->first.second));
      EXPECT_FALSE(t.unsubscribe(it->first.first, "", it->first.second));
      it = plain.erase(it);
      --subscribed;
    } else {
      ++it;
    }
  }
  EXPECT_EQ(t.subscriptionCount(), subscribed);
  for (const std::string& topic : topics) check(topic);

  // Unsubscribe everything: nothing is counted and nothing matches.
  for (const auto& [key, id] : plain) EXPECT_TRUE(t.unsubscribe(key.first, "", key.second));
  for (const auto& [key, members] : groups)
    for (Session* s : members) EXPECT_TRUE(t.unsubscribe(key.first, key.second, s));
  EXPECT_EQ(t.subscriptionCount(), 0u);
  for (const std::string& topic : topics) {
    Matched m = matchAll(t, topic);
    EXPECT_TRUE(m.ids.empty()) << topic;
    for (const SharedGroup* g : m.groups) EXPECT_TRUE(g->members.empty());
  }
  // The emptied groups remain until dropped; dropping them all leaves no group.
  for (const auto& [key, members] : groups) t.dropGroup(key.first, key.second);
  int walked = 0;
  t.forEachGroup([&](SharedGroup&) { ++walked; });
  EXPECT_EQ(walked, 0);
  for (const std::string& topic : topics) EXPECT_TRUE(matchAll(t, topic).groups.empty());
}

// The walk compares each of a node's few children with the topic where it
// stands (a name matches when the topic has it and then `/` or its end),
// and past four children looks the level up in a hash table. Levels that
// are prefixes of one another, of lengths around the 4- and 8-byte words
// the comparison reads, in trees with nodes of both kinds.
TEST(TopicTree, DifferentialWithLevelsThatArePrefixesOfOneAnother) {
  static const char* const kPool[] = {"",         "a",         "ab",       "abc",
                                      "abcd",     "abcde",     "abcdefg",  "abcdefgh",
                                      "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "b",
                                      "bcdefghi"};
  std::mt19937 rng(20261204);
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < 4; ++i) sessions.push_back(std::make_unique<Session>("c" + std::to_string(i)));
  std::vector<std::string> topics;  // every topic of one to three levels over the pool
  for (const char* l1 : kPool) {
    topics.emplace_back(l1);
    for (const char* l2 : kPool) {
      topics.push_back(std::string(l1) + "/" + l2);
      for (const char* l3 : kPool) topics.push_back(std::string(l1) + "/" + l2 + "/" + l3);
    }
  }
  std::erase(topics, std::string());  // not a topic name
  size_t matches = 0, scanned_nodes = 0, hashed_nodes = 0;
  for (int round = 0; round < 40; ++round) {
    // This round's levels: 2 to 8 of the pool.
    std::vector<std::string> levels(std::begin(kPool), std::end(kPool));
    std::shuffle(levels.begin(), levels.end(), rng);
    levels.resize(2 + rng() % 7);
    TopicTree t;
    std::map<std::pair<std::string, Session*>, uint32_t> plain;
    std::set<std::string> filters;
    uint32_t next_id = 1;
    for (int i = 0; i < 40; ++i) {
      const size_t n = 1 + rng() % 3;
      std::string f;
      for (size_t k = 0; k < n; ++k) {
        if (k) f += '/';
        const unsigned pick = rng() % 8;
        f += k + 1 == n && pick == 0 ? "#" : pick == 1 ? "+" : levels[rng() % levels.size()];
      }
      Session* s = sessions[rng() % sessions.size()].get();
      const uint32_t id = next_id++;
      const bool added = plain.insert_or_assign({f, s}, id).second;
      EXPECT_EQ(t.subscribe(f, "", s, opts(id)), !added) << f;
      filters.insert(f);
    }
    // Children per node: how many distinct levels follow each prefix.
    std::map<std::string, std::set<std::string>> children;
    for (const std::string& f : filters) {
      std::string prefix;
      size_t pos = 0;
      while (true) {
        const size_t end = f.find('/', pos);
        children[prefix].insert(f.substr(pos, end - pos));
        if (end == std::string::npos) break;
        prefix = f.substr(0, end + 1);
        pos = end + 1;
      }
    }
    for (const auto& [prefix, names] : children) (names.size() <= 4 ? scanned_nodes : hashed_nodes)++;
    for (const std::string& topic : topics) {
      Ids want;
      for (const auto& [key, id] : plain)
        if (mqtt::topicMatches(key.first, topic)) want.push_back(id);
      std::sort(want.begin(), want.end());
      ASSERT_EQ(ids(t, topic), want) << "topic '" << topic << "', round " << round;
      matches += want.size();
    }
  }
  EXPECT_GT(matches, 20000u);
  EXPECT_GT(scanned_nodes, 100u);
  EXPECT_GT(hashed_nodes, 20u);
}

// A node keeps up to four children in a vector and moves them to a hash
// table when a fifth comes; they stay there as they leave. Siblings come
// and go across that edge, with `+` and `#` among them, and each topic
// matches exactly what is subscribed at every step.
TEST(TopicTree, ChildrenAcrossTheScanLimit) {
  Session s("c");
  const std::vector<std::string> filters = {"d/0", "d/1", "d/+", "d/22", "d/3",
                                            "d/#", "d/4", "d/55", "d/6", "d/777"};
  const std::vector<std::string> topics = {"d/0", "d/1", "d/22", "d/2", "d/3", "d/4", "d/55",
                                           "d/5", "d/6", "d/777", "d/77", "d/8", "d", "d/0/x"};
  TopicTree t;
  std::map<std::string, uint32_t> subscribed;
  auto checkAll = [&](const std::string& step) {
    for (const std::string& topic : topics) {
      Ids want;
      for (const auto& [f, id] : subscribed)
        if (mqtt::topicMatches(f, topic)) want.push_back(id);
      std::sort(want.begin(), want.end());
      ASSERT_EQ(ids(t, topic), want) << "topic '" << topic << "' after " << step;
    }
  };
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < filters.size(); ++i) {
      const uint32_t id = static_cast<uint32_t>(100 * pass + i + 1);
      EXPECT_FALSE(t.subscribe(filters[i], "", &s, opts(id)));
      subscribed[filters[i]] = id;
      checkAll("subscribing " + filters[i]);
    }
    EXPECT_EQ(t.subscriptionCount(), filters.size());
    // Leave in another order than they came.
    for (size_t k = 0; k < filters.size(); ++k) {
      const std::string& f = filters[(k * 7 + 3) % filters.size()];
      EXPECT_TRUE(t.unsubscribe(f, "", &s)) << f;
      subscribed.erase(f);
      checkAll("unsubscribing " + f);
    }
    EXPECT_EQ(t.subscriptionCount(), 0u);
  }
}

// The interest hook (a cluster's subscriptions): a filter is reported when
// it gains its first subscription or share group, and when it loses its
// last; an emptied group counts until it is dropped.
TEST(TopicTree, InterestHookReportsFirstAndLastPerFilter) {
  TopicTree t;
  std::vector<std::pair<std::string, bool>> seen;
  t.setInterestHook([&](std::string_view f, bool on) { seen.emplace_back(std::string(f), on); });
  Session a("a"), b("b");
  using V = std::vector<std::pair<std::string, bool>>;
  t.subscribe("x/#", "", &a, opts(0));
  t.subscribe("x/#", "", &b, opts(0));
  t.subscribe("x/#", "", &a, opts(1));  // a replacement
  t.subscribe("x/+/y", "", &a, opts(0));
  EXPECT_EQ(seen, (V{{"x/#", true}, {"x/+/y", true}}));
  seen.clear();
  t.unsubscribe("x/#", "", &a);
  EXPECT_TRUE(seen.empty());  // b is still there
  t.unsubscribe("x/#", "", &b);
  t.unsubscribe("x/#", "", &b);  // no such subscription: nothing said
  EXPECT_EQ(seen, (V{{"x/#", false}}));
  seen.clear();
  // A share group on a filter with a plain subscription adds nothing; on
  // its own filter it is the interest, kept while the group is.
  t.subscribe("x/+/y", "g", &b, opts(0));
  t.subscribe("jobs/#", "g", &a, opts(0));
  t.subscribe("jobs/#", "h", &b, opts(0));
  EXPECT_EQ(seen, (V{{"jobs/#", true}}));
  seen.clear();
  t.unsubscribe("jobs/#", "g", &a);
  t.unsubscribe("jobs/#", "h", &b);
  EXPECT_TRUE(seen.empty());  // the groups stay, with their queues
  t.dropGroup("jobs/#", "g");
  EXPECT_TRUE(seen.empty());  // "h" is still there
  t.dropGroup("jobs/#", "h");
  EXPECT_EQ(seen, (V{{"jobs/#", false}}));
  seen.clear();
  t.unsubscribe("x/+/y", "", &a);
  EXPECT_TRUE(seen.empty());  // group "g" holds the filter
  t.unsubscribe("x/+/y", "g", &b);
  t.dropGroup("x/+/y", "g");
  EXPECT_EQ(seen, (V{{"x/+/y", false}}));
}

}  // namespace
}  // namespace petrel
