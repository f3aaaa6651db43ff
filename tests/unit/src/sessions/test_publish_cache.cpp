// Encode once: the shared encoding with its packet id put in is byte for
// byte what encoding the PUBLISH for that receiver gives.
#include <gtest/gtest.h>

#include "mqtt/encoder.h"
#include "src/sessions/publish_cache.h"

namespace petrel {
namespace {

TEST(PublishCache, SharedEncodingEqualsAPerReceiverEncoding) {
  for (size_t payload : {0u, 10u, 200u, 20000u}) {  // remaining length of 1, 2 and 3 bytes
    Message m;
    m.topic = "sensors/room-1/temperature";
    m.payload.assign(payload, 'x');
    auto props = std::make_shared<mqtt::Properties>();
    props->content_type = "text/plain";
    m.props = props;
    PublishCache cache;
    cache.begin(m);
    for (auto v : {mqtt::Version::V31, mqtt::Version::V311, mqtt::Version::V5}) {
      for (uint8_t qos = 0; qos <= 2; ++qos) {
        for (bool retain : {false, true}) {
          const mqtt::Properties* props = v == mqtt::Version::V5 ? m.props.get() : nullptr;
          for (uint16_t pid : {uint16_t(1), uint16_t(0x1234), uint16_t(65535)}) {
            const uint16_t id = qos ? pid : 0;
            std::string want, got = "prefix";
            mqtt::encodePublish(want, v, m.topic, m.payload, qos, retain, false, id, props);
            PublishCache::append(got, cache.get(v, qos, retain, props), qos, id);
            EXPECT_EQ(got, "prefix" + want) << "level " << int(v) << " qos " << int(qos) << " payload " << payload;
          }
        }
      }
    }
    cache.end();
    EXPECT_FALSE(cache.active(m));
  }
}

TEST(PublishCache, ANewMessageIsEncodedAfresh) {
  Message a, b;
  a.topic = "a";
  a.payload = "1";
  b.topic = "bb";
  b.payload = "22";
  PublishCache cache;
  cache.begin(a);
  std::string out;
  PublishCache::append(out, cache.get(mqtt::Version::V311, 1, false, nullptr), 1, 7);
  cache.end();
  cache.begin(b);
  EXPECT_TRUE(cache.active(b));
  EXPECT_FALSE(cache.active(a));
  std::string got, want;
  PublishCache::append(got, cache.get(mqtt::Version::V311, 1, false, nullptr), 1, 7);
  mqtt::encodePublish(want, mqtt::Version::V311, b.topic, b.payload, 1, false, false, 7, nullptr);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace petrel
