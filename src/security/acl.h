// src/security/acl.h — topic access control from an ACL file in mosquitto's format:
//
//   # comment
//   topic [read|write|readwrite|deny] <filter>   (no keyword = readwrite)
//   user <name>                                  (following topics are that user's)
//   pattern [read|write|readwrite|deny] <filter> (every client; levels that are
//                                                 exactly %c / %u become the client
//                                                 id / user name)
//
// Topic lines before the first `user` line apply to anonymous clients.
// Decisions follow mosquitto's: the client's own entries first, then the
// patterns; within each list a matching `deny` wins over any grant, and
// otherwise an entry granting the access decides; nothing matching means
// denied. Patterns never match clients whose id or user name contains a
// wildcard character, and %u patterns never match anonymous clients.
//
// Subscriptions are checked too: a filter is granted when a read entry
// covers every topic it can match (`a/#` covers `a/+/b`), and refused when a
// deny entry covers it. Deliveries are still checked one by one, so a
// subscription that overlaps a deny entry only partly never receives the
// denied topics.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace petrel {

class Acl {
 public:
  enum Access : uint8_t { kNone = 0, kRead = 1, kWrite = 2, kReadWrite = 3 };

  // Replaces the rules with those of `path`; on failure the old rules stay
  // and `error` names the file and line.
  bool load(const std::string& path, std::string& error);
  // The same from text (`name` is used in error messages).
  bool parse(std::string_view text, const std::string& name, std::string& error);

  // May this client publish to (kWrite) / receive from (kRead) `topic`?
  // `username` is empty for an anonymous client.
  bool allows(const std::optional<std::string>& username, std::string_view client_id,
              std::string_view topic, Access access) const;
  // May this client subscribe to `filter` (the part after $share/<group>/)?
  bool allowsSubscribe(const std::optional<std::string>& username, std::string_view client_id,
                       std::string_view filter) const;

  size_t ruleCount() const { return rules_; }

 private:
  struct Entry {
    std::string filter;
    Access access;
  };
  struct List {
    std::vector<Entry> deny;   // checked first
    std::vector<Entry> grant;  // in file order
  };
  enum class Mode { Topic, Subscribe };
  // 1 = allowed, -1 = denied, 0 = no entry decided.
  static int decide(const List& list, std::string_view subject, Access access, Mode mode,
                    const std::string* username, std::string_view client_id, bool pattern);
  bool check(const std::optional<std::string>& username, std::string_view client_id,
             std::string_view subject, Access access, Mode mode) const;

  List anonymous_;
  std::map<std::string, List, std::less<>> users_;
  List patterns_;
  size_t rules_ = 0;
};

// Whether every topic matched by `filter` is also matched by `acl` (both are
// topic filters; `acl` levels "%c"/"%u" are replaced first when given).
bool aclCovers(std::string_view acl, std::string_view filter);

}  // namespace petrel
