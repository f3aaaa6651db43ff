// tests/unit/tls/test_tls_client.cpp — the client side of TlsSession (for
// bridges) against the broker's server side, in-process over memory: the
// server's certificate and name are checked, a client certificate is
// presented when configured, and a bad client configuration is refused.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/tls/test_certs.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace petrel::tls {
namespace {

using testing::KeyCert;
using testing::makeCert;

struct Pki {
  testing::TempDir scratch;
  std::string dir = scratch.path();
  KeyCert ca = makeCert("Test CA", 1, nullptr, true);
  KeyCert server = makeCert("localhost", 100, &ca, false);
  KeyCert client = makeCert("bridge-1", 200, &ca, false);
  KeyCert other_ca = makeCert("Other CA", 2, nullptr, true);
  Pki() {
    testing::writeCert(dir + "/ca.pem", ca);
    testing::writeCert(dir + "/other_ca.pem", other_ca);
    testing::writeCert(dir + "/server.pem", server);
    testing::writeKey(dir + "/server.key", server);
    testing::writeCert(dir + "/client.pem", client);
    testing::writeKey(dir + "/client.key", client);
  }
  TlsConfig serverConfig() const {
    TlsConfig c;
    c.cert_file = dir + "/server.pem";
    c.key_file = dir + "/server.key";
    c.ca_file = dir + "/ca.pem";
    return c;
  }
  TlsConfig clientConfig(const std::string& ca_file) const {
    TlsConfig c;
    c.ca_file = dir + "/" + ca_file;
    return c;
  }
};

struct Pair {
  Pair(TlsSession& c, TlsSession& s) : client(c), server(s) {}
  TlsSession& client;
  TlsSession& server;
  std::string to_client_plain, to_server_plain;
  TlsSession::Result client_result = TlsSession::Result::Ok;
  TlsSession::Result server_result = TlsSession::Result::Ok;

  // Moves ciphertext both ways until neither side has anything to send.
  void pump() {
    auto into = [](std::string& s) {
      return [&s](const uint8_t* d, size_t n) {
        s.append(reinterpret_cast<const char*>(d), n);
        return true;
      };
    };
    for (int round = 0; round < 20; ++round) {
      std::string c2s, s2c;
      client.drainOutput(c2s);
      if (!c2s.empty() && server_result == TlsSession::Result::Ok)
        server_result = server.feed(reinterpret_cast<const uint8_t*>(c2s.data()), c2s.size(),
                                    into(to_server_plain));
      server.drainOutput(s2c);
      if (!s2c.empty() && client_result == TlsSession::Result::Ok)
        client_result = client.feed(reinterpret_cast<const uint8_t*>(s2c.data()), s2c.size(),
                                    into(to_client_plain));
      if (c2s.empty() && s2c.empty()) return;
    }
  }
  // The client's first flight comes from an empty feed.
  void start() {
    client_result = client.feed(nullptr, 0, [](const uint8_t*, size_t) { return true; });
    pump();
  }
};

TEST(TlsClient, HandshakeChecksTheServerNameAndCarriesDataBothWays) {
  Pki pki;
  std::string err;
  auto sctx = TlsContext::create(pki.serverConfig(), err);
  ASSERT_TRUE(sctx) << err;
  auto cctx = TlsContext::createClient(pki.clientConfig("ca.pem"), err);
  ASSERT_TRUE(cctx) << err;
  EXPECT_TRUE(cctx->isClient());
  EXPECT_FALSE(sctx->isClient());

  TlsSession server(*sctx);
  TlsSession client(*cctx);
  EXPECT_TRUE(client.isClient());
  ASSERT_TRUE(client.setServerName("localhost"));
  Pair p(client, server);
  p.start();
  ASSERT_EQ(p.client_result, TlsSession::Result::Ok) << client.error();
  ASSERT_EQ(p.server_result, TlsSession::Result::Ok) << server.error();
  EXPECT_TRUE(client.handshakeDone());
  EXPECT_TRUE(server.handshakeDone());
  ASSERT_TRUE(client.hasPeerCommonName());
  EXPECT_EQ(client.peerCommonName(), "localhost");
  EXPECT_FALSE(server.hasPeerCommonName());  // no client certificate

  std::string wire;
  ASSERT_TRUE(client.write("CONNECT", 7, wire));
  server.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(),
              [&](const uint8_t* d, size_t n) {
                p.to_server_plain.append(reinterpret_cast<const char*>(d), n);
                return true;
              });
  EXPECT_EQ(p.to_server_plain, "CONNECT");
  wire.clear();
  ASSERT_TRUE(server.write("CONNACK", 7, wire));
  client.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(),
              [&](const uint8_t* d, size_t n) {
                p.to_client_plain.append(reinterpret_cast<const char*>(d), n);
                return true;
              });
  EXPECT_EQ(p.to_client_plain, "CONNACK");
}

TEST(TlsClient, AnIpAddressIsCheckedAgainstTheCertificatesAddresses) {
  Pki pki;
  std::string err;
  auto sctx = TlsContext::create(pki.serverConfig(), err);
  auto cctx = TlsContext::createClient(pki.clientConfig("ca.pem"), err);
  ASSERT_TRUE(sctx && cctx) << err;
  TlsSession server(*sctx), client(*cctx);
  ASSERT_TRUE(client.setServerName("127.0.0.1"));
  Pair p(client, server);
  p.start();
  EXPECT_EQ(p.client_result, TlsSession::Result::Ok) << client.error();
  EXPECT_TRUE(client.handshakeDone());
}

TEST(TlsClient, AWrongServerNameFailsTheHandshake) {
  Pki pki;
  std::string err;
  auto sctx = TlsContext::create(pki.serverConfig(), err);
  auto cctx = TlsContext::createClient(pki.clientConfig("ca.pem"), err);
  ASSERT_TRUE(sctx && cctx) << err;
  TlsSession server(*sctx), client(*cctx);
  ASSERT_TRUE(client.setServerName("broker.example.com"));
  Pair p(client, server);
  p.start();
  EXPECT_EQ(p.client_result, TlsSession::Result::Error);
  EXPECT_FALSE(client.handshakeDone());
  EXPECT_NE(client.error().find("hostname mismatch"), std::string::npos) << client.error();
}

TEST(TlsClient, AServerFromAnotherCaIsRefused) {
  Pki pki;
  std::string err;
  auto sctx = TlsContext::create(pki.serverConfig(), err);
  auto cctx = TlsContext::createClient(pki.clientConfig("other_ca.pem"), err);
  ASSERT_TRUE(sctx && cctx) << err;
  TlsSession server(*sctx), client(*cctx);
  ASSERT_TRUE(client.setServerName("localhost"));
  Pair p(client, server);
  p.start();
  EXPECT_EQ(p.client_result, TlsSession::Result::Error);
  EXPECT_NE(client.error().find("certificate verify failed"), std::string::npos) << client.error();
}

TEST(TlsClient, PresentsItsCertificateToAServerThatRequiresOne) {
  Pki pki;
  std::string err;
  TlsConfig scfg = pki.serverConfig();
  scfg.require_certificate = true;
  auto sctx = TlsContext::create(scfg, err);
  ASSERT_TRUE(sctx) << err;
  TlsConfig ccfg = pki.clientConfig("ca.pem");
  ccfg.cert_file = pki.dir + "/client.pem";
  ccfg.key_file = pki.dir + "/client.key";
  auto cctx = TlsContext::createClient(ccfg, err);
  ASSERT_TRUE(cctx) << err;
  TlsSession server(*sctx), client(*cctx);
  ASSERT_TRUE(client.setServerName("localhost"));
  Pair p(client, server);
  p.start();
  ASSERT_EQ(p.server_result, TlsSession::Result::Ok) << server.error();
  ASSERT_TRUE(server.hasPeerCommonName());
  EXPECT_EQ(server.peerCommonName(), "bridge-1");
}

TEST(TlsClient, ConfigurationErrors) {
  Pki pki;
  std::string err;
  TlsConfig c = pki.clientConfig("ca.pem");
  c.cert_file = pki.dir + "/client.pem";  // without its key
  EXPECT_FALSE(TlsContext::createClient(c, err));
  EXPECT_NE(err.find("go together"), std::string::npos) << err;

  c = pki.clientConfig("missing.pem");
  EXPECT_FALSE(TlsContext::createClient(c, err));
  EXPECT_NE(err.find("missing.pem"), std::string::npos) << err;

  // A server context still needs its certificate.
  EXPECT_FALSE(TlsContext::create(TlsConfig{}, err));
  EXPECT_NE(err.find("required"), std::string::npos) << err;

  // Names are for the client side only.
  auto sctx = TlsContext::create(pki.serverConfig(), err);
  ASSERT_TRUE(sctx) << err;
  TlsSession server(*sctx);
  EXPECT_FALSE(server.setServerName("localhost"));
}

}  // namespace
}  // namespace petrel::tls
