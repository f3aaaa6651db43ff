// mqtt/topic.h — topic names and topic filters (§4.7): validation, matching
// and the shared-subscription form `$share/<group>/<filter>` (§4.8.2).
#pragma once

#include <cstddef>
#include <string_view>

namespace petrel::mqtt {

// [MQTT-4.7.3-1] at least one character; [MQTT-4.7.0-1] no wildcards in a
// topic name; at most `max_levels` levels (0: no limit). UTF-8 validity is
// checked by the decoder.
bool validTopicName(std::string_view topic, size_t max_levels = 0);

// [MQTT-4.7.1-2] `#` alone and last; [MQTT-4.7.1-3] `+` alone in its level.
bool validTopicFilter(std::string_view filter, size_t max_levels = 0);

// Whether `topic` matches `filter`, including [MQTT-4.7.2-1]: a filter that
// starts with a wildcard does not match a topic that starts with `$`.
bool topicMatches(std::string_view filter, std::string_view topic);

struct SharedFilter {
  bool shared = false;
  std::string_view group;   // the share name
  std::string_view filter;  // the filter after the share name
};

// Splits `$share/<group>/<filter>`. Returns false for a malformed shared
// filter (empty or wildcard share name, missing filter) [MQTT-4.8.2-1/2].
bool parseSharedFilter(std::string_view f, SharedFilter& out);

}  // namespace petrel::mqtt
