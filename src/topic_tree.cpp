#include "src/topic_tree.h"

namespace petrel {

TopicTree::TopicTree() : root_(std::make_unique<Node>()) {}
TopicTree::~TopicTree() = default;

namespace {

// Splits on '/' keeping empty levels ("a//b" has three levels).
template <typename F>
void forEachLevel(std::string_view filter, F&& f) {
  size_t pos = 0;
  while (true) {
    const size_t end = filter.find('/', pos);
    if (end == std::string_view::npos) {
      f(filter.substr(pos));
      return;
    }
    f(filter.substr(pos, end - pos));
    pos = end + 1;
  }
}

}  // namespace

bool TopicTree::subscribe(std::string_view filter, std::string_view group, Session* s,
                          const SubscriptionOptions& opts) {
  Node* n = root_.get();
  forEachLevel(filter, [&](std::string_view level) {
    if (!n->children) n->children = std::make_unique<Node::Children>();
    auto it = n->children->find(level);
    if (it == n->children->end())
      it = n->children->emplace(std::string(level), std::make_unique<Node>()).first;
    n = it->second.get();
  });
  std::vector<Subscriber>* list;
  if (group.empty()) {
    list = &n->subs;
  } else {
    if (!n->groups) n->groups = std::make_unique<Node::Groups>();
    auto g = n->groups->find(group);
    if (g == n->groups->end()) g = n->groups->emplace(std::string(group), SharedGroup{}).first;
    list = &g->second.members;
  }
  for (Subscriber& sub : *list) {
    if (sub.session == s) {
      sub.opts = opts;
      return true;
    }
  }
  list->push_back(Subscriber{s, opts});
  ++count_;
  return false;
}

bool TopicTree::removeFrom(Node& n, std::string_view rest, std::string_view group, Session* s) {
  const size_t end = rest.find('/');
  const std::string_view level = rest.substr(0, end);
  if (!n.children) return false;
  auto it = n.children->find(level);
  if (it == n.children->end()) return false;
  Node& child = *it->second;
  bool removed = false;
  if (end == std::string_view::npos) {
    if (group.empty()) {
      for (size_t i = 0; i < child.subs.size(); ++i) {
        if (child.subs[i].session == s) {
          child.subs.erase(child.subs.begin() + i);
          removed = true;
          break;
        }
      }
    } else {
      auto g = child.groups ? child.groups->find(group) : decltype(child.groups->begin()){};
      if (child.groups && g != child.groups->end()) {
        auto& m = g->second.members;
        for (size_t i = 0; i < m.size(); ++i) {
          if (m[i].session == s) {
            m.erase(m.begin() + i);
            removed = true;
            break;
          }
        }
        if (m.empty()) child.groups->erase(g);
      }
    }
  } else {
    removed = removeFrom(child, rest.substr(end + 1), group, s);
  }
  if (child.empty()) n.children->erase(it);  // prune empty branches
  return removed;
}

bool TopicTree::unsubscribe(std::string_view filter, std::string_view group, Session* s) {
  const bool removed = removeFrom(*root_, filter, group, s);
  if (removed) --count_;
  return removed;
}

}  // namespace petrel
