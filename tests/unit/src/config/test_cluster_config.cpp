// The `cluster:` section: absent by default, its values, and errors naming
// the key and its line.
#include <gtest/gtest.h>

#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

TEST(ClusterConfig, AbsentMeansAlone) {
  LoadedConfig l = loadText("log_level: info\n");
  ASSERT_TRUE(l.ok) << l.error;
  EXPECT_FALSE(l.cfg.cluster.enabled);
}

TEST(ClusterConfig, Values) {
  LoadedConfig l = loadText(
      "cluster:\n"
      "  servers: [nats://10.0.0.1:4222, tls://nats.example:4443]\n"
      "  name: fleet-eu_1\n"
      "  node: broker-7\n"
      "  user: petrel\n"
      "  password: secret\n"
      "  ca_file: ca.pem\n"
      "  cert_file: node.pem\n"
      "  key_file: node.key\n"
      "  max_pending_mb: 8\n"
      "  jetstream: false\n"
      "  store_replica: false\n"
      "  replicas: 3\n"
      "  group_ack_wait: 5\n");
  ASSERT_TRUE(l.ok) << l.error;
  const ClusterConfig& c = l.cfg.cluster;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.servers, (std::vector<std::string>{"nats://10.0.0.1:4222", "tls://nats.example:4443"}));
  EXPECT_EQ(c.name, "fleet-eu_1");
  EXPECT_EQ(c.node, "broker-7");
  EXPECT_EQ(c.user, "petrel");
  EXPECT_EQ(c.password, "secret");
  EXPECT_EQ(c.ca_file, "ca.pem");
  EXPECT_EQ(c.cert_file, "node.pem");
  EXPECT_EQ(c.key_file, "node.key");
  EXPECT_EQ(c.max_pending_bytes, 8ull << 20);
  EXPECT_FALSE(c.jetstream);
  EXPECT_FALSE(c.store_replica);
  EXPECT_EQ(c.replicas, 3);
  EXPECT_EQ(c.group_ack_wait_s, 5u);
}

TEST(ClusterConfig, Defaults) {
  LoadedConfig l = loadText("cluster:\n  servers: [nats://127.0.0.1:4222]\n");
  ASSERT_TRUE(l.ok) << l.error;
  EXPECT_EQ(l.cfg.cluster.name, "petrel");
  EXPECT_EQ(l.cfg.cluster.node, "");  // the host name, at start-up
  EXPECT_EQ(l.cfg.cluster.max_pending_bytes, 64ull << 20);
  EXPECT_TRUE(l.cfg.cluster.jetstream);
  EXPECT_TRUE(l.cfg.cluster.store_replica);
  EXPECT_EQ(l.cfg.cluster.replicas, 1);
  EXPECT_EQ(l.cfg.cluster.group_ack_wait_s, 30u);
}

TEST(ClusterConfig, ErrorsNameTheKeyAndLine) {
  expectRefused({
      {"cluster:\n  node: a\n", "cluster.servers: at least one NATS server URL is needed"},
      {"cluster:\n", "cluster: expected a mapping with servers"},
      {"cluster:\n  servers: []\n", ":2: cluster.servers: expected a list of NATS server URLs"},
      {"cluster:\n  servers:\n    - nats://a:1\n    - http://b:2\n",
       ":4: cluster.servers[1]: 'http://b:2' is not a NATS URL"},
      {"cluster:\n  servers: [nats://a:1]\n  name: my.cluster\n", ":3: cluster.name: 'my.cluster' must be"},
      {"cluster:\n  servers: [nats://a:1]\n  name: \"\"\n", ":3: cluster.name: '' must be"},
      {"cluster:\n  servers: [nats://a:1]\n  node: \"\"\n", ":3: cluster.node: must not be empty"},
      {"cluster:\n  servers: [nats://a:1]\n  password: p\n", "cluster.password: needs user"},
      {"cluster:\n  servers: [nats://a:1]\n  user: u\n  token: t\n", "cluster.token: use either"},
      {"cluster:\n  servers: [nats://a:1]\n  cert_file: c.pem\n", "cluster: cert_file and key_file go together"},
      {"cluster:\n  servers: [nats://a:1]\n  max_pending_mb: 0\n", ":3: cluster.max_pending_mb: 0 is out of range"},
      {"cluster:\n  servers: [nats://a:1]\n  max_pending_mb: 4096\n", ":3: cluster.max_pending_mb: 4096 is out of range 1..4095"},
      {"cluster:\n  servers: [nats://a:1]\n  replica: 3\n", ":3: cluster.replica: unknown key"},
      {"cluster:\n  servers: [nats://a:1]\n  store_replica: maybe\n", ":3: cluster.store_replica: "},
      {"cluster:\n  servers: [nats://a:1]\n  replicas: 0\n", ":3: cluster.replicas: 0 is out of range 1..5"},
      {"cluster:\n  servers: [nats://a:1]\n  replicas: 7\n", ":3: cluster.replicas: 7 is out of range 1..5"},
      {"cluster:\n  servers: [nats://a:1]\n  jetstream: maybe\n", ":3: cluster.jetstream:"},
      {"cluster:\n  servers: [nats://a:1]\n  group_ack_wait: 2\n", ":3: cluster.group_ack_wait: 2 is out of range 3..86400"},
      {"cluster:\n  servers: [nats://a:1]\n  group_ack_wait: 30s\n", ":3: cluster.group_ack_wait: "},
  });
}

}  // namespace
}  // namespace petrel
