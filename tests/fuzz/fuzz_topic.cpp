// fuzz_topic: topic names and filters (mqtt/topic.h), shared filters, and the
// broker's subscription trie (src/routing/topic_tree.h) against mqtt::topicMatches.
//
// Input: lines. Lines before the first empty line are subscriptions (a
// filter, possibly `$share/<group>/<filter>`), lines after it are published
// topics; without an empty line every line is both.
//
// Checks (abort on violation):
//  - a valid topic name is a valid filter and matches itself;
//  - `#` matches every topic name not starting with '$';
//  - parseSharedFilter: a shared filter has a non-empty group without '/',
//    '+' or '#', and a valid filter;
//  - TopicTree::match reports exactly the subscriptions (and share groups)
//    whose filter topicMatches the topic, before and after unsubscribing
//    half of them; subscriptionCount() stays right and everything can be
//    removed again;
//  - aclCovers(acl, f) && topicMatches(f, t) implies topicMatches(acl, t).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqtt/topic.h"
#include "src/security/acl.h"
#include "src/queues/shared_group.h"
#include "src/routing/topic_tree.h"

using namespace petrel;

namespace {

struct Sub {
  std::string filter;  // without the share prefix
  std::string group;   // empty: a plain subscription
  Session* session;
  bool active = true;
};

Session* fakeSession(size_t i) { return reinterpret_cast<Session*>(uintptr_t(i + 1) * 64); }

void checkString(std::string_view s) {
  const bool name = mqtt::validTopicName(s);
  const bool filter = mqtt::validTopicFilter(s);
  if (name && !filter) abort();
  if (name && !mqtt::topicMatches(s, s)) abort();
  if (name && mqtt::topicMatches("#", s) != (s[0] != '$')) abort();
  for (size_t levels = 1; levels <= 3; ++levels) {
    if (mqtt::validTopicName(s, levels) && !name) abort();
    if (mqtt::validTopicFilter(s, levels) && !filter) abort();
  }
  mqtt::SharedFilter sf;
  if (mqtt::parseSharedFilter(s, sf) && sf.shared) {
    if (sf.group.empty() || sf.group.find_first_of("/+#") != std::string_view::npos) abort();
    if (!mqtt::validTopicFilter(sf.filter)) abort();
  }
}

// Compares the trie's answer for `topic` with a brute-force scan.
void checkMatch(TopicTree& tree, const std::vector<Sub>& subs, std::string_view topic) {
  std::multiset<Session*> got;
  std::multiset<std::pair<std::string, std::string>> got_groups;
  tree.match(
      topic, [&](const Subscriber& s) { got.insert(s.session); },
      [&](SharedGroup& g) {
        if (!mqtt::topicMatches(g.filter, topic)) abort();
        got_groups.emplace(g.filter, g.name);
      });
  std::multiset<Session*> want;
  std::set<std::pair<std::string, std::string>> want_groups;
  for (const Sub& s : subs) {
    if (!mqtt::topicMatches(s.filter, topic)) continue;
    if (!s.group.empty()) want_groups.emplace(s.filter, s.group);  // groups outlive members
    else if (s.active) want.insert(s.session);
  }
  if (got != want) abort();
  if (got_groups.size() != want_groups.size()) abort();
  for (const auto& g : want_groups)
    if (!got_groups.count(g)) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> filters, topics;
  bool split = false;
  for (size_t pos = 0; pos <= in.size();) {
    size_t nl = in.find('\n', pos);
    if (nl == std::string_view::npos) nl = in.size();
    const std::string_view line = in.substr(pos, nl - pos);
    pos = nl + 1;
    checkString(line);
    if (line.empty() && !split) {
      split = true;
      continue;
    }
    if (!split && filters.size() < 16) filters.push_back(line);
    if (split && topics.size() < 16) topics.push_back(line);
  }
  if (!split) topics = filters;

  TopicTree tree;
  std::vector<Sub> subs;
  for (std::string_view f : filters) {
    mqtt::SharedFilter sf;
    if (!mqtt::parseSharedFilter(f, sf)) continue;
    const std::string_view plain = sf.shared ? sf.filter : f;
    if (!mqtt::validTopicFilter(plain)) continue;
    Sub s{std::string(plain), std::string(sf.group), fakeSession(subs.size())};
    SubscriptionOptions o;
    o.qos = subs.size() % 3;
    if (tree.subscribe(s.filter, s.group, s.session, o)) abort();  // every session is new
    subs.push_back(std::move(s));
  }
  if (tree.subscriptionCount() != subs.size()) abort();

  std::vector<std::string_view> names;
  for (std::string_view t : topics)
    if (mqtt::validTopicName(t)) names.push_back(t);
  for (std::string_view t : names) checkMatch(tree, subs, t);

  // Unsubscribe every other subscription, then compare again.
  size_t active = subs.size();
  for (size_t i = 0; i < subs.size(); i += 2) {
    if (!tree.unsubscribe(subs[i].filter, subs[i].group, subs[i].session)) abort();
    if (tree.unsubscribe(subs[i].filter, subs[i].group, subs[i].session)) abort();
    subs[i].active = false;
    --active;
  }
  if (tree.subscriptionCount() != active) abort();
  for (std::string_view t : names) checkMatch(tree, subs, t);
  for (Sub& s : subs) {
    if (s.active && !tree.unsubscribe(s.filter, s.group, s.session)) abort();
    s.active = false;
  }
  if (tree.subscriptionCount() != 0) abort();
  for (const Sub& s : subs) {
    if (s.group.empty()) continue;
    tree.dropGroup(s.filter, s.group);
    if (tree.findGroup(s.filter, s.group, false)) abort();
  }
  for (std::string_view t : names) checkMatch(tree, {}, t);

  // aclCovers is the subscription check of the ACL: whatever the covered
  // filter matches, the covering one must match too.
  for (std::string_view a : filters) {
    if (!mqtt::validTopicFilter(a)) continue;
    for (std::string_view f : filters) {
      if (!mqtt::validTopicFilter(f) || !aclCovers(a, f)) continue;
      for (std::string_view t : names)
        if (mqtt::topicMatches(f, t) && !mqtt::topicMatches(a, t)) abort();
    }
  }
  return 0;
}
