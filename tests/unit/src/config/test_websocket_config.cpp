// The `websocket:` key of a listener: defaults (the frame limit follows
// limits.max_packet_size wherever it is written), values, and errors naming
// the key and its line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

TEST(WebSocketConfig, DefaultsFollowTheMaximumPacketSize) {
  LoadedConfig l = loadText(
      "listeners:\n"
      "  - port: 1883\n"
      "  - port: 8080\n"
      "    websocket:\n"
      "limits:\n"
      "  max_packet_size: 20000\n");
  ASSERT_TRUE(l.ok) << l.error;
  ASSERT_EQ(l.cfg.listeners.size(), 2u);
  EXPECT_FALSE(l.cfg.listeners[0].websocket);
  ASSERT_TRUE(l.cfg.listeners[1].websocket);
  const WebSocketConfig& w = *l.cfg.listeners[1].websocket;
  EXPECT_EQ(w.path, "/mqtt");
  EXPECT_EQ(w.max_frame_size, 20000u + WebSocketConfig::kFrameSlack);
  EXPECT_EQ(w.max_header_bytes, 8192u);
  EXPECT_EQ(w.handshake_timeout_ms, 10000u);
  EXPECT_FALSE(l.cfg.listeners[1].tls);
}

TEST(WebSocketConfig, ValuesAndTls) {
  LoadedConfig l = loadText(
      "listeners:\n"
      "  - port: 8443\n"
      "    tls: {cert_file: c.pem, key_file: k.pem}\n"
      "    websocket: {path: /ws/mqtt, max_frame_size: 4096, max_header_bytes: 2048,\n"
      "                handshake_timeout_ms: 500}\n");
  ASSERT_TRUE(l.ok) << l.error;
  const ListenerConfig& lc = l.cfg.listeners[0];
  ASSERT_TRUE(lc.websocket);
  EXPECT_TRUE(lc.tls);
  EXPECT_EQ(lc.websocket->path, "/ws/mqtt");
  EXPECT_EQ(lc.websocket->max_frame_size, 4096u);
  EXPECT_EQ(lc.websocket->max_header_bytes, 2048u);
  EXPECT_EQ(lc.websocket->handshake_timeout_ms, 500u);
}

TEST(WebSocketConfig, ErrorsNameTheKeyAndLine) {
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"listeners:\n  - port: 8080\n    websocket: {path: mqtt}\n",
       ":3: listeners[0].websocket.path: 'mqtt' is not a path"},
      {"listeners:\n  - port: 8080\n    websocket: {path: \"/a b\"}\n", "websocket.path: '/a b' is not a path"},
      {"listeners:\n  - port: 8080\n    websocket: {path: \"/a?b\"}\n", "websocket.path: '/a?b' is not a path"},
      {"listeners:\n  - port: 8080\n    websocket: {max_frame_size: 10}\n",
       "listeners[0].websocket.max_frame_size: 10 is out of range"},
      {"listeners:\n  - port: 8080\n    websocket: {handshake_timeout_ms: 0}\n",
       "websocket.handshake_timeout_ms: 0 is out of range"},
      {"listeners:\n  - port: 8080\n    websocket:\n      pth: /x\n", ":4: listeners[0].websocket.pth: unknown key"},
      {"listeners:\n  - port: 8080\n    websocket: true\n", "listeners[0].websocket: expected a mapping of keys"},
  };
  for (const Case& c : cases) {
    LoadedConfig l = loadText(c.yaml);
    EXPECT_FALSE(l.ok) << c.yaml;
    EXPECT_NE(l.error.find(c.error), std::string::npos) << "got: " << l.error << "\nwant: " << c.error;
  }
}

}  // namespace
}  // namespace petrel
