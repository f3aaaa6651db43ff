// The `bridges:` section: defaults, the mosquitto-like rules, and errors
// naming the key and its line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

TEST(BridgeConfig, DefaultsAndRules) {
  LoadedConfig l = loadText(
      "bridges:\n"
      "  - name: hq\n"
      "    address: broker.example.com:8883\n"
      "    topics:\n"
      "      - pattern: sensors/#\n"
      "        remote_prefix: site1/\n"
      "      - pattern: cmd/#\n"
      "        direction: in\n"
      "        qos: 2\n");
  ASSERT_TRUE(l.ok) << l.error;
  ASSERT_EQ(l.cfg.bridges.size(), 1u);
  const BridgeConfig& b = l.cfg.bridges[0];
  EXPECT_EQ(b.name, "hq");
  ASSERT_EQ(b.addresses.size(), 1u);
  EXPECT_EQ(b.addresses[0].host, "broker.example.com");
  EXPECT_EQ(b.addresses[0].port, 8883);
  EXPECT_TRUE(b.v5);
  EXPECT_FALSE(b.clean_start);
  EXPECT_EQ(b.keepalive, 60);
  EXPECT_EQ(b.reconnect_min_ms, 1000u);
  EXPECT_EQ(b.reconnect_max_ms, 60000u);
  ASSERT_EQ(b.topics.size(), 2u);
  EXPECT_TRUE(b.topics[0].out());
  EXPECT_FALSE(b.topics[0].in());
  EXPECT_EQ(b.topics[0].qos, 1);
  EXPECT_EQ(b.topics[0].remoteFilter(), "site1/sensors/#");
  EXPECT_TRUE(b.topics[1].in());
  EXPECT_EQ(b.topics[1].qos, 2);
}

TEST(BridgeConfig, AddressForms) {
  LoadedConfig l = loadText(
      "bridges:\n"
      "  - name: a\n"
      "    addresses: [\"10.0.0.1:1884\", \"[::1]:1885\", \"[fe80::1]\", \"host\"]\n"
      "    topics: [{pattern: \"#\"}]\n");
  ASSERT_TRUE(l.ok) << l.error;
  const auto& a = l.cfg.bridges[0].addresses;
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].host, "10.0.0.1");
  EXPECT_EQ(a[0].port, 1884);
  EXPECT_EQ(a[1].host, "::1");
  EXPECT_EQ(a[1].port, 1885);
  EXPECT_EQ(a[2].host, "fe80::1");
  EXPECT_EQ(a[2].port, 1883);
  EXPECT_EQ(a[3].host, "host");
}

TEST(BridgeConfig, ErrorsNameTheKeyAndLine) {
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"bridges:\n  - name: a\n    address: h\n    topics: [{pattern: \"#\", direction: up}]\n",
       ":4: bridges[0].topics[0].direction: 'up' is not one of out, in, both"},
      {"bridges:\n  - name: a\n    address: \"::1:80\"\n    topics: [{pattern: \"#\"}]\n",
       ":3: bridges[0].address: '::1:80': write an IPv6 address as [address]:port"},
      {"bridges:\n  - name: a\n    address: h\n", ".topics: at least one topic rule is needed"},
      {"bridges:\n  - name: a\n    address: h\n    topics: [{qos: 1}]\n", ".pattern: required"},
      {"bridges:\n  - name: a\n    address: h\n    topics: [{pattern: \"#\"}]\n  - name: a\n    address: h\n"
       "    topics: [{pattern: \"#\"}]\n",
       ":5: bridges[1].name: a second bridge named 'a'"},
      {"bridges:\n  - name: a\n    address: h\n    password: p\n    topics: [{pattern: \"#\"}]\n",
       "bridges[0].password: needs username"},
      {"bridges:\n  - name: a\n    address: h\n    tls: {cert_file: c.pem}\n    topics: [{pattern: \"#\"}]\n",
       "bridges[0].tls: cert_file and key_file go together"},
      {"bridges:\n  - name: a\n    address: h\n    reconnect_min_ms: 5000\n    reconnect_max_ms: 100\n"
       "    topics: [{pattern: \"#\"}]\n",
       "reconnect_max_ms: smaller than reconnect_min_ms"},
      {"bridges:\n  - name: a\n    address: h\n    queue: {max_mesages: 1}\n    topics: [{pattern: \"#\"}]\n",
       ":4: bridges[0].queue.max_mesages: unknown key"},
  };
  for (const Case& c : cases) {
    LoadedConfig l = loadText(c.yaml);
    EXPECT_FALSE(l.ok) << c.yaml;
    EXPECT_NE(l.error.find(c.error), std::string::npos) << "got: " << l.error << "\nwant: " << c.error;
  }
}

}  // namespace
}  // namespace petrel
