// fuzz_properties: mqtt::decodeProperties on arbitrary bytes, in every
// PropertyContext. What decodes must round-trip: encodeProperties writes
// exactly encodedPropertiesSize() bytes, and decoding that in the same context
// succeeds, consumes all of it and gives back an equal Properties. Only
// properties allowed in the context may come out of a successful decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mqtt/properties.h"

using namespace petrel::mqtt;

namespace {

// The Properties fields set in `p` must all be allowed in `ctx`.
void checkAllowed(const Properties& p, PropertyContext ctx) {
  auto need = [ctx](bool set, PropertyId id) {
    if (set && !propertyAllowed(id, ctx)) abort();
  };
  need(p.payload_format_indicator.has_value(), PropertyId::PayloadFormatIndicator);
  need(p.message_expiry_interval.has_value(), PropertyId::MessageExpiryInterval);
  need(p.content_type.has_value(), PropertyId::ContentType);
  need(p.response_topic.has_value(), PropertyId::ResponseTopic);
  need(p.correlation_data.has_value(), PropertyId::CorrelationData);
  need(!p.subscription_identifiers.empty(), PropertyId::SubscriptionIdentifier);
  need(p.session_expiry_interval.has_value(), PropertyId::SessionExpiryInterval);
  need(p.assigned_client_identifier.has_value(), PropertyId::AssignedClientIdentifier);
  need(p.server_keep_alive.has_value(), PropertyId::ServerKeepAlive);
  need(p.authentication_method.has_value(), PropertyId::AuthenticationMethod);
  need(p.authentication_data.has_value(), PropertyId::AuthenticationData);
  need(p.request_problem_information.has_value(), PropertyId::RequestProblemInformation);
  need(p.will_delay_interval.has_value(), PropertyId::WillDelayInterval);
  need(p.request_response_information.has_value(), PropertyId::RequestResponseInformation);
  need(p.response_information.has_value(), PropertyId::ResponseInformation);
  need(p.server_reference.has_value(), PropertyId::ServerReference);
  need(p.reason_string.has_value(), PropertyId::ReasonString);
  need(p.receive_maximum.has_value(), PropertyId::ReceiveMaximum);
  need(p.topic_alias_maximum.has_value(), PropertyId::TopicAliasMaximum);
  need(p.topic_alias.has_value(), PropertyId::TopicAlias);
  need(p.maximum_qos.has_value(), PropertyId::MaximumQos);
  need(p.retain_available.has_value(), PropertyId::RetainAvailable);
  need(!p.user_properties.empty(), PropertyId::UserProperty);
  need(p.maximum_packet_size.has_value(), PropertyId::MaximumPacketSize);
  need(p.wildcard_subscription_available.has_value(), PropertyId::WildcardSubscriptionAvailable);
  need(p.subscription_identifier_available.has_value(), PropertyId::SubscriptionIdentifierAvailable);
  need(p.shared_subscription_available.has_value(), PropertyId::SharedSubscriptionAvailable);
  if (ctx == PropertyContext::Subscribe && p.subscription_identifiers.size() > 1) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (uint8_t c = 0; c <= static_cast<uint8_t>(PropertyContext::Auth); ++c) {
    const auto ctx = static_cast<PropertyContext>(c);
    Properties p;
    size_t pos = 0;
    if (decodeProperties(data, size, pos, ctx, p) != Reason::Success) continue;
    if (pos == 0 || pos > size) abort();
    checkAllowed(p, ctx);

    std::string wire;
    encodeProperties(p, wire);
    if (wire.size() != encodedPropertiesSize(p)) abort();
    if (p.empty() != (wire.size() == 1)) abort();

    Properties again;
    size_t pos2 = 0;
    const auto* w = reinterpret_cast<const uint8_t*>(wire.data());
    if (decodeProperties(w, wire.size(), pos2, ctx, again) != Reason::Success) abort();
    if (pos2 != wire.size() || !(again == p)) abort();

    // Decoding from an offset inside a larger buffer stops at the list end.
    std::string padded = "\x7f" + wire + "tail";
    size_t pos3 = 1;
    Properties third;
    const auto* q = reinterpret_cast<const uint8_t*>(padded.data());
    if (decodeProperties(q, padded.size(), pos3, ctx, third) != Reason::Success) abort();
    if (pos3 != 1 + wire.size() || !(third == p)) abort();
  }
  return 0;
}
