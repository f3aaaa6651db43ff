// src/durable/records.h — the one place where broker objects become store
// records and back (persistence/records.h defines the records and their
// byte encoding).
#pragma once

#include <memory>
#include <string>

#include "mqtt/packets.h"
#include "persistence/records.h"
#include "src/routing/message.h"
#include "src/routing/topic_tree.h"

namespace petrel {

struct Delivery;

persistence::MessageRecord messageRecord(const Message& m);
// The message of a record read back under store id `id`.
std::shared_ptr<Message> messageFromRecord(const persistence::MessageRecord& r, uint64_t id);
// The same from a record's views (a read from the store's pages): the
// fields are copied into a recycled message's buffers.
std::shared_ptr<Message> messageFromView(const persistence::MessageView& r, uint64_t id);

persistence::WillRecord willRecord(const mqtt::Will& w, mqtt::Version v);
mqtt::Will willFromRecord(const persistence::WillRecord& r);

// `key` as subscribed ("$share/g/f" or a plain filter).
persistence::SubscriptionRecord subscriptionRecord(std::string_view key, const SubscriptionOptions& o);
SubscriptionOptions subscriptionOptions(const persistence::SubscriptionRecord& r);

// A session's queue entry: `pid` 0 while queued, the packet id once sent;
// `released` after PUBREC (QoS 2).
persistence::QueueRecord queueRecord(const Delivery& d, uint16_t pid, bool released);
// A share group's queue entry.
// A declared queue's entry carries when it was queued and its deadline.
persistence::QueueRecord groupQueueRecord(const Message& m, uint64_t seq, int64_t queued_at_ms = 0,
                                          int64_t deadline_ms = 0);

}  // namespace petrel
