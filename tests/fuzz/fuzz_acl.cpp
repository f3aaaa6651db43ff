// fuzz_acl: petrel::Acl::parse on arbitrary ACL file text, then lookups
// against what was parsed: the user names and filters found in the text,
// anonymous clients, and client ids with and without wildcards.
//
// Checks: parsing and lookups never crash; a failed parse names
// "NAME:LINE: "; a failed parse keeps the previous rules; for a topic name
// (no wildcards) allowsSubscribe() agrees with allows(..., kRead).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/topic.h"
#include "src/security/acl.h"

using petrel::Acl;
namespace mqtt = petrel::mqtt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Acl acl;
  std::string error;
  if (!acl.parse("topic read fixed/#\n", "base", error)) abort();
  if (!acl.parse(text, "acl", error)) {
    if (error.compare(0, 4, "acl:") != 0) abort();
    if (acl.ruleCount() != 1) abort();  // the old rules stay
  }

  // Users and subjects: the last word of each line (a user name or a filter).
  std::vector<std::optional<std::string>> users{std::nullopt, std::string("u")};
  std::vector<std::string> subjects{"fixed/a", "a/b", "$SYS/x", "#", "a/+"};
  for (size_t pos = 0; pos < text.size() && subjects.size() < 16;) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    const size_t sp = line.find_last_of(" \t");
    const std::string_view last = sp == std::string_view::npos ? line : line.substr(sp + 1);
    if (last.empty()) continue;
    if (line.substr(0, 5) == "user " && users.size() < 4) users.emplace_back(std::string(last));
    subjects.emplace_back(last);
    // A pattern's %c / %u levels, filled in with ids used below.
    std::string filled(last);
    for (size_t p; (p = filled.find('%')) != std::string::npos;) filled.erase(p, 1);
    if (filled != last) subjects.push_back(std::move(filled));
  }

  const char* client_ids[] = {"c", "u", "dev+1", ""};
  for (const auto& user : users) {
    for (const char* cid : client_ids) {
      for (const std::string& s : subjects) {
        const bool r = acl.allows(user, cid, s, Acl::kRead);
        (void)acl.allows(user, cid, s, Acl::kWrite);
        (void)acl.allows(user, cid, s, Acl::kReadWrite);
        if (!mqtt::validTopicFilter(s)) continue;
        const bool sub = acl.allowsSubscribe(user, cid, s);
        if (mqtt::validTopicName(s) && sub != r) abort();
      }
    }
  }
  return 0;
}
