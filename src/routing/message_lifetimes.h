// src/routing/message_lifetimes.h — how long a message lives when its
// publisher did not say (the `message_expiry:` rules of the configuration:
// topic filter -> seconds, the first matching rule wins) and the longest
// lifetime any message gets (`mqtt.max_message_expiry`). What
// Message::expires_at_ms becomes for a PUBLISH and for a will.
//
// With no rules and no cap (the default) lifetime() is one comparison. The
// rules are few (dozens at most): their filters are split into levels once,
// at load, and a topic is split once per lookup and compared with each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace petrel {

class MessageLifetimes {
 public:
  struct Rule {
    std::string filter;
    // 0: messages on these topics get no lifetime (an exception to the
    // rules after it).
    uint32_t seconds = 0;
  };

  // Appends a rule, tried after those added before it. False (nothing
  // added) when `filter` is not a valid topic filter, or is a shared one.
  bool add(std::string filter, uint32_t seconds);
  // The longest lifetime in seconds, asked for or by a rule; 0 = no cap.
  void setCap(uint32_t seconds) { cap_ = seconds; }
  uint32_t cap() const { return cap_; }
  const std::vector<Rule>& rules() const { return rules_; }

  // The lifetime in seconds of a message on `topic` whose publisher asked
  // for `asked` (an MQTT 5 Message Expiry Interval), or nothing (every
  // MQTT 3.1.1 message); nullopt: the message never expires.
  std::optional<uint32_t> lifetime(std::string_view topic, std::optional<uint32_t> asked) const {
    if (rules_.empty() && cap_ == 0) return asked;  // nothing configured
    return resolve(topic, asked);
  }
  // The first rule matching `topic`, or null.
  const Rule* match(std::string_view topic) const;

 private:
  std::optional<uint32_t> resolve(std::string_view topic, std::optional<uint32_t> asked) const;

  std::vector<Rule> rules_;
  std::vector<std::vector<std::string>> levels_;  // each rule's filter, split at '/'
  uint32_t cap_ = 0;
};

}  // namespace petrel
