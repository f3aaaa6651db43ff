#include "src/cluster/remote_interest.h"

#include <functional>
#include <vector>

#include "src/util/keyed_hash.h"

namespace petrel::cluster {

struct FilterSet::Node {
  // Looked up by string_view: a match allocates nothing. Levels come
  // from clients' filters: hashed with this process's secret key.
  std::unordered_map<std::string, std::unique_ptr<Node>, KeyedHash, std::equal_to<>> children;
  uint32_t here = 0;  // adds of the filter that ends at this node
  Node* plus = nullptr;
  Node* hash = nullptr;

  const Node* child(std::string_view level) const {
    auto it = children.find(level);
    return it == children.end() ? nullptr : it->second.get();
  }
  bool empty() const { return here == 0 && children.empty(); }
};

namespace {

std::string_view levelAt(std::string_view s, size_t pos, size_t& end) {
  end = s.find('/', pos);
  return s.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
}

}  // namespace

FilterSet::FilterSet() : root_(std::make_unique<Node>()) {}
FilterSet::~FilterSet() = default;

void FilterSet::add(std::string_view filter) {
  Node* n = root_.get();
  size_t pos = 0, end = 0;
  while (true) {
    const std::string_view level = levelAt(filter, pos, end);
    auto found = n->children.find(level);
    if (found == n->children.end()) found = n->children.emplace(std::string(level), nullptr).first;
    auto& slot = found->second;
    if (!slot) {
      slot = std::make_unique<Node>();
      if (level == "+") n->plus = slot.get();
      if (level == "#") n->hash = slot.get();
    }
    n = slot.get();
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  if (n->here++ == 0) ++size_;
}

void FilterSet::remove(std::string_view filter) {
  std::vector<std::pair<Node*, std::string>> path;
  Node* n = root_.get();
  size_t pos = 0, end = 0;
  while (true) {
    const std::string level(levelAt(filter, pos, end));
    auto it = n->children.find(level);
    if (it == n->children.end()) return;
    path.emplace_back(n, level);
    n = it->second.get();
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  if (n->here == 0) return;
  if (--n->here == 0) --size_;
  // Prune what is left empty, bottom up.
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    Node* parent = it->first;
    auto c = parent->children.find(it->second);
    if (!c->second->empty()) break;
    if (c->second.get() == parent->plus) parent->plus = nullptr;
    if (c->second.get() == parent->hash) parent->hash = nullptr;
    parent->children.erase(c);
  }
}

namespace {

template <typename N>
bool matchNode(const N& n, std::string_view topic, size_t pos, bool root) {
  // [MQTT-4.7.2-1] wildcards in the first level never match a '$' topic.
  const bool dollar = root && !topic.empty() && topic[0] == '$';
  if (!dollar && n.hash && n.hash->here) return true;  // '#' also matches the parent level
  size_t end = 0;
  const std::string_view level = levelAt(topic, pos, end);
  auto visit = [&](const N& c) {
    if (end == std::string_view::npos) return c.here > 0 || (c.hash && c.hash->here > 0);
    return matchNode(c, topic, end + 1, false);
  };
  if (const N* exact = n.child(level))
    if (visit(*exact)) return true;
  return !dollar && n.plus && visit(*n.plus);
}

}  // namespace

bool FilterSet::matches(std::string_view topic) const {
  return size_ > 0 && matchNode(*root_, topic, 0, true);
}

RemoteInterest::Node& RemoteInterest::heard(uint64_t node, int64_t now_ms) {
  Node& n = nodes_[node];
  n.heard_ms = now_ms;
  return n;
}

void RemoteInterest::add(uint64_t node, uint64_t gen, std::string_view filter, int64_t now_ms) {
  Node& n = heard(node, now_ms);
  auto [it, added] = n.filters.try_emplace(std::string(filter), gen);
  if (added) {
    filters_.add(filter);
    n.set.add(filter);
  } else if (it->second < gen) it->second = gen;
}

void RemoteInterest::remove(uint64_t node, std::string_view filter, int64_t now_ms) {
  Node& n = heard(node, now_ms);
  auto it = n.filters.find(std::string(filter));
  if (it == n.filters.end()) return;
  filters_.remove(filter);
  n.set.remove(filter);
  n.filters.erase(it);
}

void RemoteInterest::all(uint64_t node, uint64_t gen, int64_t now_ms) {
  Node& n = heard(node, now_ms);
  if (n.all_gen == 0) ++all_nodes_;
  if (n.all_gen < gen) n.all_gen = gen;
}

void RemoteInterest::end(uint64_t node, uint64_t gen, int64_t now_ms) {
  Node& n = heard(node, now_ms);
  for (auto it = n.filters.begin(); it != n.filters.end();) {
    if (it->second < gen) {
      filters_.remove(it->first);
      n.set.remove(it->first);
      it = n.filters.erase(it);
    } else {
      ++it;
    }
  }
  if (n.all_gen != 0 && n.all_gen < gen) {
    n.all_gen = 0;
    --all_nodes_;
  }
}

void RemoteInterest::drop(Node& n) {
  for (const auto& [filter, gen] : n.filters) {
    filters_.remove(filter);
    n.set.remove(filter);
  }
  n.filters.clear();
  if (n.all_gen != 0) --all_nodes_;
  n.all_gen = 0;
}

void RemoteInterest::expire(int64_t before_ms) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (it->second.heard_ms < before_ms) {
      drop(it->second);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
}

void RemoteInterest::forget(uint64_t node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  drop(it->second);
  nodes_.erase(it);
}

}  // namespace petrel::cluster
