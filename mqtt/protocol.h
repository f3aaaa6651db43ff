// mqtt/protocol.h — the vocabulary of MQTT 3.1, 3.1.1 and 5.0: packet types,
// protocol levels, reason codes. Shared by the decoder, the encoder and the
// broker. No I/O here.
#pragma once

#include <cstdint>
#include <string_view>

namespace petrel::mqtt {

enum class PacketType : uint8_t {
  Reserved = 0,
  Connect = 1,
  Connack = 2,
  Publish = 3,
  Puback = 4,
  Pubrec = 5,
  Pubrel = 6,
  Pubcomp = 7,
  Subscribe = 8,
  Suback = 9,
  Unsubscribe = 10,
  Unsuback = 11,
  Pingreq = 12,
  Pingresp = 13,
  Disconnect = 14,
  Auth = 15,
};

// Protocol level byte of CONNECT.
enum class Version : uint8_t {
  V31 = 3,   // "MQIsdp"
  V311 = 4,  // "MQTT"
  V5 = 5,    // "MQTT"
};

// MQTT 5 reason codes (§2.4). MQTT 3.1.1 CONNACK return codes are mapped from
// these by connackCodeV3().
enum class Reason : uint8_t {
  Success = 0x00,  // also Normal disconnection, Granted QoS 0
  GrantedQos1 = 0x01,
  GrantedQos2 = 0x02,
  DisconnectWithWill = 0x04,
  NoMatchingSubscribers = 0x10,
  NoSubscriptionExisted = 0x11,
  ContinueAuthentication = 0x18,
  ReAuthenticate = 0x19,
  UnspecifiedError = 0x80,
  MalformedPacket = 0x81,
  ProtocolError = 0x82,
  ImplementationSpecificError = 0x83,
  UnsupportedProtocolVersion = 0x84,
  ClientIdentifierNotValid = 0x85,
  BadUserNameOrPassword = 0x86,
  NotAuthorized = 0x87,
  ServerUnavailable = 0x88,
  ServerBusy = 0x89,
  Banned = 0x8A,
  ServerShuttingDown = 0x8B,
  BadAuthenticationMethod = 0x8C,
  KeepAliveTimeout = 0x8D,
  SessionTakenOver = 0x8E,
  TopicFilterInvalid = 0x8F,
  TopicNameInvalid = 0x90,
  PacketIdentifierInUse = 0x91,
  PacketIdentifierNotFound = 0x92,
  ReceiveMaximumExceeded = 0x93,
  TopicAliasInvalid = 0x94,
  PacketTooLarge = 0x95,
  MessageRateTooHigh = 0x96,
  QuotaExceeded = 0x97,
  AdministrativeAction = 0x98,
  PayloadFormatInvalid = 0x99,
  RetainNotSupported = 0x9A,
  QosNotSupported = 0x9B,
  UseAnotherServer = 0x9C,
  ServerMoved = 0x9D,
  SharedSubscriptionsNotSupported = 0x9E,
  ConnectionRateExceeded = 0x9F,
  MaximumConnectTime = 0xA0,
  SubscriptionIdentifiersNotSupported = 0xA1,
  WildcardSubscriptionsNotSupported = 0xA2,
};

// True for the codes §2.4 defines; anything else in a received packet is a
// Protocol Error.
bool isKnownReason(uint8_t code);

// Human-readable name of a reason code, for logs.
std::string_view reasonName(Reason r);

// MQTT 3.1/3.1.1 CONNACK return code for a v5 reason (§3.2.2.3 of 3.1.1):
// 1 unacceptable protocol version, 2 identifier rejected, 3 server
// unavailable, 4 bad user name or password, 5 not authorized.
uint8_t connackCodeV3(Reason r);

std::string_view packetTypeName(PacketType t);

// The largest packet the protocol can express: a 4-byte Remaining Length of
// 268,435,455 plus the 1-byte type and 4 length bytes.
inline constexpr uint32_t kMaxRemainingLength = 268'435'455;
inline constexpr uint32_t kMaxPacketSize = kMaxRemainingLength + 5;

}  // namespace petrel::mqtt
