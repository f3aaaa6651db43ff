// mqtt/encoder.h — serialisation of every packet for each protocol level,
// appended to a byte string (the connection's output buffer), so that many
// packets for one connection end up in one contiguous write.
#pragma once

#include <string>
#include <string_view>

#include "mqtt/packets.h"

namespace petrel::mqtt {

void encode(const Connect& p, std::string& out);
void encode(const Connack& p, Version v, std::string& out);
void encode(const Publish& p, Version v, std::string& out);
void encode(const Ack& p, Version v, std::string& out);
// PUBACK, PUBREC, PUBREL or PUBCOMP in its short form (reason Success, no
// properties; the same 4 bytes for every protocol level): the hot path,
// without building an Ack.
void encodeAck(std::string& out, PacketType type, uint16_t packet_id);
void encode(const Subscribe& p, Version v, std::string& out);
void encode(const Suback& p, Version v, std::string& out);
void encode(const Unsubscribe& p, Version v, std::string& out);
void encode(const Unsuback& p, Version v, std::string& out);
void encode(const Disconnect& p, Version v, std::string& out);
void encode(const Auth& p, std::string& out);
void encodePingreq(std::string& out);
void encodePingresp(std::string& out);

// PUBLISH from its parts, for the broker's delivery path: no Publish struct
// (and no copy of topic and payload) is built per receiver. `props` may be
// null (MQTT 5: an empty property list).
size_t publishSize(Version v, std::string_view topic, uint8_t qos,
                   const Properties* props, size_t payload_len);
void encodePublish(std::string& out, Version v, std::string_view topic,
                   std::string_view payload, uint8_t qos, bool retain, bool dup,
                   uint16_t packet_id, const Properties* props);

// Size of the PUBLISH that encode() would produce, fixed header included:
// used to honour a client's Maximum Packet Size before encoding.
size_t encodedSize(const Publish& p, Version v);

}  // namespace petrel::mqtt
