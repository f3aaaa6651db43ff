#include "src/routing/topic_tree.h"

#include "src/queues/shared_group.h"

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

TopicTree::Node* TopicTree::Children::find(std::string_view level) const {
  // A filter's level has no `/`: only a name equal to it matches.
  const char* stop = nullptr;
  return findAt(level.data(), level.data() + level.size(), stop);
}

TopicTree::Node* TopicTree::Children::add(std::string_view level, bool& made) {
  made = false;
  if (Node* c = find(level)) return c;
  made = true;
  auto node = std::make_unique<Node>();
  Node* const c = node.get();
  if (!many_ && few_.size() < kScan) {
    few_.push_back(Entry{std::string(level), std::move(node)});
    return c;
  }
  if (!many_) {
    many_ = std::make_unique<Map>();
    for (Entry& e : few_) many_->emplace(std::move(e.name), std::move(e.node));
    std::vector<Entry>().swap(few_);
  }
  many_->emplace(std::string(level), std::move(node));
  return c;
}

std::unique_ptr<TopicTree::Node> TopicTree::Children::take(std::string_view level) {
  std::unique_ptr<Node> taken;
  if (many_) {
    auto it = many_->find(level);
    if (it != many_->end()) {
      taken = std::move(it->second);
      many_->erase(it);
    }
    return taken;
  }
  for (auto it = few_.begin(); it != few_.end(); ++it) {
    if (it->name == level) {
      taken = std::move(it->node);
      few_.erase(it);
      break;
    }
  }
  return taken;
}

TopicTree::Node* TopicTree::Node::addChild(std::string_view level) {
  if (!children) children = std::make_unique<Children>();
  bool made = false;
  Node* c = children->add(level, made);
  if (made) {
    if (level == "+") plus = c;
    else if (level == "#") hash = c;
  }
  return c;
}

void TopicTree::Node::eraseChild(std::string_view level) {
  if (!children) return;
  const std::unique_ptr<Node> c = children->take(level);
  if (c.get() == plus) plus = nullptr;
  if (c.get() == hash) hash = nullptr;
}

TopicTree::Node* TopicTree::nodeOf(std::string_view filter) {
  Node* n = root_.get();
  forEachLevel(filter, [&](std::string_view level) { n = n->addChild(level); });
  return n;
}

SharedGroup* TopicTree::findGroup(std::string_view filter, std::string_view group, bool create) {
  Node* n = root_.get();
  bool missing = false;
  forEachLevel(filter, [&](std::string_view level) {
    if (missing) return;
    Node* c = n->child(level);
    if (!c) {
      if (!create) {
        missing = true;
        return;
      }
      c = n->addChild(level);
    }
    n = c;
  });
  if (missing) return nullptr;
  if (n->groups) {
    auto g = n->groups->find(group);
    if (g != n->groups->end()) return g->second.get();
  }
  if (!create) return nullptr;
  const bool had = n->interested();
  if (!n->groups) n->groups = std::make_unique<Node::Groups>();
  auto g = std::make_unique<SharedGroup>();
  g->name = std::string(group);
  g->filter = std::string(filter);
  SharedGroup* made = n->groups->emplace(std::string(group), std::move(g)).first->second.get();
  if (!had && interest_) interest_(filter, true);
  return made;
}

bool TopicTree::subscribe(std::string_view filter, std::string_view group, Session* s,
                          const SubscriptionOptions& opts) {
  std::vector<Subscriber>* list;
  if (!group.empty()) {
    SharedGroup* g = findGroup(filter, group, true);
    g->handing_over = false;  // a member here again
    list = &g->members;
  } else {
    Node* n = nodeOf(filter);
    list = &n->subs;
    if (!n->interested() && interest_) interest_(filter, true);
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

bool TopicTree::removeFrom(Node& n, std::string_view rest, std::string_view group, Session* s, bool& lost) {
  const size_t end = rest.find('/');
  const std::string_view level = rest.substr(0, end);
  Node* const found = n.child(level);
  if (!found) return false;
  Node& child = *found;
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
        auto& m = g->second->members;
        for (size_t i = 0; i < m.size(); ++i) {
          if (m[i].session == s) {
            m.erase(m.begin() + i);
            removed = true;
            break;
          }
        }
        // An emptied group stays: its queue waits for members (dropGroup).
      }
    }
    lost = removed && !child.interested();
  } else {
    removed = removeFrom(child, rest.substr(end + 1), group, s, lost);
  }
  if (child.empty()) n.eraseChild(level);  // prune empty branches
  return removed;
}

void TopicTree::dropGroup(std::string_view filter, std::string_view group) {
  // Walk down remembering the path, then prune empty nodes bottom-up.
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* n = root_.get();
  bool missing = false;
  forEachLevel(filter, [&](std::string_view level) {
    if (missing) return;
    Node* c = n->child(level);
    if (!c) {
      missing = true;
      return;
    }
    path.emplace_back(n, level);
    n = c;
  });
  if (missing || !n->groups) return;
  auto g = n->groups->find(group);
  if (g == n->groups->end() || !g->second->unused()) return;
  n->groups->erase(g);
  if (!n->interested() && interest_) interest_(filter, false);
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    Node* parent = it->first;
    Node* child = parent->child(it->second);
    if (!child || !child->empty()) break;
    parent->eraseChild(it->second);
  }
}

bool TopicTree::unsubscribe(std::string_view filter, std::string_view group, Session* s) {
  bool lost = false;
  const bool removed = removeFrom(*root_, filter, group, s, lost);
  if (removed) --count_;
  if (lost && interest_) interest_(filter, false);
  return removed;
}

}  // namespace petrel
