#include "src/durable/records.h"

#include "mqtt/decoder.h"
#include "mqtt/encoder.h"
#include "mqtt/topic.h"
#include "src/queues/shared_group.h"
#include "src/sessions/session.h"

namespace petrel {

namespace {

bool decodeProps(std::string_view block, mqtt::PropertyContext ctx, mqtt::Properties& out) {
  if (block.empty()) return true;
  size_t pos = 0;
  return mqtt::decodeProperties(reinterpret_cast<const uint8_t*>(block.data()), block.size(), pos,
                                ctx, out) == mqtt::Reason::Success;
}

}  // namespace

persistence::MessageRecord messageRecord(const Message& m) {
  persistence::MessageRecord r;
  r.topic = m.topic;
  r.payload = m.payload;
  r.origin = m.origin;
  r.qos = m.qos;
  r.retain = m.retain;
  r.expires_at_ms = m.expires_at_ms;
  if (m.props) mqtt::encodeProperties(*m.props, r.props);
  return r;
}

std::shared_ptr<Message> messageFromView(const persistence::MessageView& r, uint64_t id) {
  auto m = makeMessage();
  m->topic.assign(r.topic);
  m->payload.assign(r.payload);
  m->origin.assign(r.origin);
  m->qos = r.qos;
  m->retain = r.retain;
  m->expires_at_ms = r.expires_at_ms;
  m->id = id;
  if (!r.props.empty()) {
    mqtt::Properties props;
    decodeProps(r.props, mqtt::PropertyContext::Publish, props);
    if (!props.empty()) m->props = std::make_shared<const mqtt::Properties>(std::move(props));
  }
  return m;
}

std::shared_ptr<Message> messageFromRecord(const persistence::MessageRecord& r, uint64_t id) {
  return messageFromView(persistence::viewOf(r), id);
}

persistence::WillRecord willRecord(const mqtt::Will& w, mqtt::Version v) {
  persistence::WillRecord r;
  r.topic = w.topic;
  r.payload = w.payload;
  r.qos = w.qos;
  r.retain = w.retain;
  if (v == mqtt::Version::V5 && !w.props.empty()) mqtt::encodeProperties(w.props, r.props);
  return r;
}

mqtt::Will willFromRecord(const persistence::WillRecord& r) {
  mqtt::Will w;
  w.topic = r.topic;
  w.payload = r.payload;
  w.qos = r.qos;
  w.retain = r.retain;
  decodeProps(r.props, mqtt::PropertyContext::Will, w.props);
  return w;
}

persistence::SubscriptionRecord subscriptionRecord(std::string_view key, const SubscriptionOptions& o) {
  persistence::SubscriptionRecord r;
  mqtt::SharedFilter sf;
  mqtt::parseSharedFilter(key, sf);
  r.key = std::string(key);
  r.group = std::string(sf.group);
  r.filter = std::string(sf.shared ? sf.filter : key);
  r.qos = o.qos;
  r.no_local = o.no_local;
  r.retain_as_published = o.retain_as_published;
  r.retain_handling = o.retain_handling;
  r.subscription_id = o.subscription_id;
  return r;
}

SubscriptionOptions subscriptionOptions(const persistence::SubscriptionRecord& r) {
  SubscriptionOptions o;
  o.qos = r.qos;
  o.no_local = r.no_local;
  o.retain_as_published = r.retain_as_published;
  o.retain_handling = r.retain_handling;
  o.subscription_id = r.subscription_id;
  return o;
}

persistence::QueueRecord queueRecord(const Delivery& d, uint16_t pid, bool released) {
  persistence::QueueRecord q;
  q.seq = d.seq;
  q.msg_id = d.msg->id;
  q.qos = d.qos;
  q.retain = d.retain;
  q.released = released;
  q.packet_id = pid;
  q.bytes = static_cast<uint32_t>(d.msg->payload.size());
  q.subscription_ids = d.subscription_ids.toVector();
  if (const GroupPlace* g = d.group_place.get()) {
    q.group = g->group->owner();
    q.queued_at_ms = g->queued_at_ms;
    q.deadline_ms = g->deadline_ms;
  }
  return q;
}

persistence::QueueRecord groupQueueRecord(const Message& m, uint64_t seq, int64_t queued_at_ms,
                                          int64_t deadline_ms) {
  persistence::QueueRecord q;
  q.queued_at_ms = queued_at_ms;
  q.deadline_ms = deadline_ms;
  q.seq = seq;
  q.msg_id = m.id;
  q.qos = m.qos;
  q.retain = m.retain;
  q.bytes = static_cast<uint32_t>(m.payload.size());
  return q;
}

}  // namespace petrel
