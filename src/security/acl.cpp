// src/security/acl.cpp — parsing and evaluating mosquitto-style ACL files.
#include "src/security/acl.h"
#include "src/util/text.h"

#include <fstream>
#include <sstream>

#include "mqtt/topic.h"

namespace petrel {

namespace {

// Splits off the first space-separated word.
std::string_view nextWord(std::string_view& s) {
  s = trim(s);
  size_t end = s.find_first_of(" \t");
  std::string_view w = s.substr(0, end);
  s = end == std::string_view::npos ? std::string_view{} : trim(s.substr(end));
  return w;
}

// A pattern with its %c / %u levels replaced. Returns false when it needs
// a user name the client does not have.
bool substitute(std::string_view pattern, const std::string* username, std::string_view client_id,
                std::string& out) {
  out.clear();
  bool first = true;
  for (std::string_view level : split(pattern, '/')) {
    if (!first) out.push_back('/');
    first = false;
    if (level == "%c") {
      out.append(client_id);
    } else if (level == "%u") {
      if (!username) return false;
      out.append(*username);
    } else {
      out.append(level);
    }
  }
  return true;
}

}  // namespace

bool aclCovers(std::string_view acl, std::string_view filter) {
  // [MQTT-4.7.2-1]: wildcards at the start never reach '$' topics.
  if (!filter.empty() && filter.front() == '$' && !acl.empty() && (acl.front() == '+' || acl.front() == '#'))
    return false;
  const auto a = split(acl, '/');
  const auto f = split(filter, '/');
  for (size_t i = 0;; ++i) {
    if (i == a.size()) return i == f.size();
    if (a[i] == "#") return true;
    if (i == f.size()) return false;
    if (f[i] == "#") return false;
    if (a[i] == "+") continue;
    if (f[i] == "+" || a[i] != f[i]) return false;
  }
}

bool Acl::load(const std::string& path, std::string& error) {
  const auto text = readFile(path);
  if (!text) {
    error = path + ": cannot open the ACL file";
    return false;
  }
  return parse(*text, path, error);
}

bool Acl::parse(std::string_view text, const std::string& name, std::string& error) {
  List anonymous;
  std::map<std::string, List, std::less<>> users;
  List patterns;
  size_t rules = 0;
  List* current = &anonymous;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](const std::string& why) {
      error = name + ":" + std::to_string(line_no) + ": " + why;
      return false;
    };
    std::string_view rest = line;
    const std::string_view keyword = nextWord(rest);
    if (keyword == "user") {
      if (rest.empty()) return fail("'user' without a user name");
      current = &users[std::string(rest)];
      continue;
    }
    if (keyword != "topic" && keyword != "pattern")
      return fail("unknown keyword '" + std::string(keyword) + "' (topic, pattern or user)");
    std::string_view after = rest;
    const std::string_view word = nextWord(after);
    Access access = kReadWrite;
    std::string_view filter = rest;
    if (!after.empty()) {
      if (word == "read") access = kRead;
      else if (word == "write") access = kWrite;
      else if (word == "readwrite") access = kReadWrite;
      else if (word == "deny") access = kNone;
      else return fail("invalid access '" + std::string(word) + "' (read, write, readwrite or deny)");
      filter = after;
    }
    if (filter.empty()) return fail("'" + std::string(keyword) + "' without a topic");
    if (!mqtt::validTopicFilter(filter)) return fail("invalid topic filter '" + std::string(filter) + "'");
    List& target = keyword == "pattern" ? patterns : *current;
    (access == kNone ? target.deny : target.grant).push_back({std::string(filter), access});
    ++rules;
  }
  anonymous_ = std::move(anonymous);
  users_ = std::move(users);
  patterns_ = std::move(patterns);
  rules_ = rules;
  return true;
}

int Acl::decide(const List& list, std::string_view subject, Access access, Mode mode,
                const std::string* username, std::string_view client_id, bool pattern) {
  std::string expanded;
  auto matches = [&](const Entry& e) {
    std::string_view filter = e.filter;
    if (pattern) {
      if (!substitute(e.filter, username, client_id, expanded)) return false;
      filter = expanded;
    }
    return mode == Mode::Topic ? mqtt::topicMatches(filter, subject) : aclCovers(filter, subject);
  };
  for (const Entry& e : list.deny)
    if (matches(e)) return -1;
  for (const Entry& e : list.grant)
    if ((e.access & access) && matches(e)) return 1;
  return 0;
}

bool Acl::check(const std::optional<std::string>& username, std::string_view client_id,
                std::string_view subject, Access access, Mode mode) const {
  const std::string* user = username ? &*username : nullptr;
  const List* own = nullptr;
  if (!user) {
    own = &anonymous_;
  } else if (auto it = users_.find(*user); it != users_.end()) {
    own = &it->second;
  }
  if (own) {
    const int d = decide(*own, subject, access, mode, user, client_id, false);
    if (d != 0) return d > 0;
  }
  if (patterns_.deny.empty() && patterns_.grant.empty()) return false;
  // A client id or user name with a wildcard could widen a pattern.
  if (client_id.find_first_of("+#") != std::string_view::npos) return false;
  if (user && user->find_first_of("+#") != std::string::npos) return false;
  return decide(patterns_, subject, access, mode, user, client_id, true) > 0;
}

bool Acl::allows(const std::optional<std::string>& username, std::string_view client_id,
                 std::string_view topic, Access access) const {
  return check(username, client_id, topic, access, Mode::Topic);
}

bool Acl::allowsSubscribe(const std::optional<std::string>& username, std::string_view client_id,
                          std::string_view filter) const {
  return check(username, client_id, filter, kRead, Mode::Subscribe);
}

}  // namespace petrel
