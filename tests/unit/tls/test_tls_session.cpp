// A client SSL (plain OpenSSL, memory BIOs) and the broker's server-side
// TlsSession exchanging bytes in-process: handshakes, split records, large
// payloads, client certificates, refused versions, reloads.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <fstream>
#include <memory>
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
  KeyCert client = makeCert("device-17", 200, &ca, false);
  KeyCert other_ca = makeCert("Other CA", 2, nullptr, true);
  KeyCert stranger = makeCert("stranger", 300, &other_ca, false);
  Pki() {
    testing::writeCert(dir + "/ca.pem", ca);
    testing::writeCert(dir + "/server.pem", server);
    testing::writeKey(dir + "/server.key", server);
  }
  TlsConfig config() const {
    TlsConfig c;
    c.cert_file = dir + "/server.pem";
    c.key_file = dir + "/server.key";
    c.ca_file = dir + "/ca.pem";
    return c;
  }
};

// The client end: an SSL in connect state over its own memory BIOs.
class Client {
 public:
  explicit Client(const Pki& pki, const KeyCert* cert = nullptr, int max_version = 0,
                  const char* alpn = nullptr) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_.get()), pki.ca.cert);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    if (max_version) {
      SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_VERSION);
      SSL_CTX_set_max_proto_version(ctx_.get(), max_version);
      SSL_CTX_set_cipher_list(ctx_.get(), "DEFAULT:@SECLEVEL=0");
    }
    if (cert) {
      SSL_CTX_use_certificate(ctx_.get(), cert->cert);
      SSL_CTX_use_PrivateKey(ctx_.get(), cert->key);
    }
    ssl_.reset(SSL_new(ctx_.get()));
    if (alpn) {
      std::string wire(1, static_cast<char>(std::strlen(alpn)));
      wire += alpn;
      SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio_, -1);
    SSL_set_bio(ssl_.get(), rbio_, wbio_);
    SSL_set_connect_state(ssl_.get());
    SSL_set_tlsext_host_name(ssl_.get(), "localhost");
  }
  SSL* ssl() { return ssl_.get(); }
  // Bytes the client wants to send.
  std::string takeOutput() {
    std::string out;
    char buf[4096];
    int n;
    while ((n = BIO_read(wbio_, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  void give(const std::string& bytes) {
    if (!bytes.empty()) BIO_write(rbio_, bytes.data(), static_cast<int>(bytes.size()));
  }
  int handshakeStep() { return SSL_do_handshake(ssl_.get()); }
  std::string readAll() {
    std::string out;
    char buf[16384];
    size_t n = 0;
    while (SSL_read_ex(ssl_.get(), buf, sizeof buf, &n) == 1) out.append(buf, n);
    ERR_clear_error();
    return out;
  }
  void write(const std::string& s) { SSL_write(ssl_.get(), s.data(), static_cast<int>(s.size())); }

 private:
  struct CtxFree { void operator()(SSL_CTX* c) const { SSL_CTX_free(c); } };
  struct SslFree { void operator()(SSL* s) const { SSL_free(s); } };
  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
  std::unique_ptr<SSL, SslFree> ssl_;
  BIO* rbio_;
  BIO* wbio_;
};

// Pumps bytes both ways until the handshake settles. `chunk` splits every
// transfer into pieces of that size, to exercise partial records.
TlsSession::Result handshake(Client& c, TlsSession& s, std::string& plain, size_t chunk = 0) {
  TlsSession::Result r = TlsSession::Result::Ok;
  auto sink = [&](const uint8_t* d, size_t n) {
    plain.append(reinterpret_cast<const char*>(d), n);
    return true;
  };
  for (int round = 0; round < 20; ++round) {
    c.handshakeStep();
    std::string to_server = c.takeOutput();
    if (chunk == 0) {
      r = s.feed(reinterpret_cast<const uint8_t*>(to_server.data()), to_server.size(), sink);
    } else {
      for (size_t i = 0; i < to_server.size() && r == TlsSession::Result::Ok; i += chunk)
        r = s.feed(reinterpret_cast<const uint8_t*>(to_server.data()) + i,
                   std::min(chunk, to_server.size() - i), sink);
    }
    std::string to_client;
    s.drainOutput(to_client);
    c.give(to_client);
    if (r != TlsSession::Result::Ok) return r;
    if (s.handshakeDone() && SSL_is_init_finished(c.ssl()) && to_server.empty() && to_client.empty())
      break;
  }
  return r;
}

TEST(TlsSession, HandshakeAndEchoBothWays) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok) << s.error();
  EXPECT_TRUE(s.handshakeDone());
  EXPECT_FALSE(s.hasPeerCommonName());
  EXPECT_EQ(SSL_version(c.ssl()), TLS1_3_VERSION);

  c.write("\x10\x0c hello");
  std::string bytes = c.takeOutput();
  auto sink = [&](const uint8_t* d, size_t n) {
    plain.append(reinterpret_cast<const char*>(d), n);
    return true;
  };
  ASSERT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), sink),
            TlsSession::Result::Ok);
  EXPECT_EQ(plain, "\x10\x0c hello");

  std::string out;
  ASSERT_TRUE(s.write("answer", 6, out));
  c.give(out);
  EXPECT_EQ(c.readAll(), "answer");
}

TEST(TlsSession, RecordsSplitIntoSingleBytes) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain, 1), TlsSession::Result::Ok) << s.error();
  c.write("0123456789");
  c.write("abcdefghij");
  const std::string bytes = c.takeOutput();
  size_t calls = 0;
  for (size_t i = 0; i < bytes.size(); ++i)
    ASSERT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()) + i, 1,
                     [&](const uint8_t* d, size_t n) {
                       ++calls;
                       plain.append(reinterpret_cast<const char*>(d), n);
                       return true;
                     }),
              TlsSession::Result::Ok);
  EXPECT_EQ(plain, "0123456789abcdefghij");
  EXPECT_EQ(calls, 2u);  // one per record, once each record is complete
}

TEST(TlsSession, LargePayloadsBothWays) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok);

  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  c.write(big);
  const std::string bytes = c.takeOutput();
  ASSERT_GT(bytes.size(), big.size());
  ASSERT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                   [&](const uint8_t* d, size_t n) {
                     plain.append(reinterpret_cast<const char*>(d), n);
                     return true;
                   }),
            TlsSession::Result::Ok);
  EXPECT_TRUE(plain == big);

  std::string out;
  ASSERT_TRUE(s.write(big.data(), big.size(), out));
  c.give(out);
  EXPECT_TRUE(c.readAll() == big);
}

TEST(TlsSession, SinkCanStopDecryption) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok);
  c.write("first");
  const std::string bytes = c.takeOutput();
  int calls = 0;
  EXPECT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                   [&](const uint8_t*, size_t) { return ++calls, false; }),
            TlsSession::Result::Ok);
  EXPECT_EQ(calls, 1);
}

TEST(TlsSession, GarbageIsAFatalError) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(s.feed(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(),
                   [](const uint8_t*, size_t) { return true; }),
            TlsSession::Result::Error);
  EXPECT_FALSE(s.error().empty());
  EXPECT_FALSE(s.handshakeDone());
}

TEST(TlsSession, GarbageAfterTheHandshakeIsAFatalError) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok);
  const std::string junk(64, '\x17');
  EXPECT_EQ(s.feed(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(),
                   [](const uint8_t*, size_t) { return true; }),
            TlsSession::Result::Error);
}

TEST(TlsSession, CloseNotifyIsReportedAsClosed) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok);
  SSL_shutdown(c.ssl());
  const std::string bytes = c.takeOutput();
  EXPECT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                   [](const uint8_t*, size_t) { return true; }),
            TlsSession::Result::Closed);
}

TEST(TlsSession, ClientCertificateRequiredAndItsCommonNameKnown) {
  Pki pki;
  TlsConfig cfg = pki.config();
  cfg.require_certificate = true;
  std::string err;
  auto ctx = TlsContext::create(cfg, err);
  ASSERT_TRUE(ctx) << err;
  {
    TlsSession s(*ctx);
    Client c(pki, &pki.client);
    std::string plain;
    ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok) << s.error();
    ASSERT_TRUE(s.hasPeerCommonName());
    EXPECT_EQ(s.peerCommonName(), "device-17");
  }
  {
    TlsSession s(*ctx);
    Client c(pki);  // no certificate
    std::string plain;
    EXPECT_EQ(handshake(c, s, plain), TlsSession::Result::Error);
    EXPECT_NE(s.error().find("certificate"), std::string::npos) << s.error();
  }
  {
    TlsSession s(*ctx);
    Client c(pki, &pki.stranger);  // signed by a CA the broker does not trust
    std::string plain;
    EXPECT_EQ(handshake(c, s, plain), TlsSession::Result::Error);
    EXPECT_NE(s.error().find("certificate"), std::string::npos) << s.error();
  }
}

TEST(TlsSession, Tls11IsRefused) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki, nullptr, TLS1_1_VERSION);
  std::string plain;
  EXPECT_EQ(handshake(c, s, plain), TlsSession::Result::Error);
  EXPECT_NE(s.error().find("unsupported protocol"), std::string::npos) << s.error();
}

TEST(TlsSession, MinVersion13RefusesTls12) {
  Pki pki;
  TlsConfig cfg = pki.config();
  cfg.min_version = "1.3";
  std::string err;
  auto ctx = TlsContext::create(cfg, err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki, nullptr, TLS1_2_VERSION);
  std::string plain;
  EXPECT_EQ(handshake(c, s, plain), TlsSession::Result::Error);
}

TEST(TlsSession, AlpnMqttIsSelected) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki, nullptr, 0, "mqtt");
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok);
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(c.ssl(), &proto, &len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(proto), len), "mqtt");
}

TEST(TlsSession, RenegotiationIsRefusedWithoutHarm) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  TlsSession s(*ctx);
  Client c(pki, nullptr, TLS1_2_VERSION);
  std::string plain;
  ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok) << s.error();
  ASSERT_EQ(SSL_version(c.ssl()), TLS1_2_VERSION);
  ASSERT_EQ(SSL_renegotiate(c.ssl()), 1);
  c.handshakeStep();
  std::string bytes = c.takeOutput();
  ASSERT_FALSE(bytes.empty());
  // The server declines (a no_renegotiation warning) and stays usable.
  EXPECT_EQ(s.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                   [](const uint8_t*, size_t) { return true; }),
            TlsSession::Result::Ok)
      << s.error();
  std::string out;
  EXPECT_TRUE(s.write("still here", 10, out));
}

TEST(TlsContext, BadFilesAreRefusedWithTheFileName) {
  Pki pki;
  TlsConfig cfg = pki.config();
  cfg.cert_file = pki.dir + "/missing.pem";
  std::string err;
  EXPECT_FALSE(TlsContext::create(cfg, err));
  EXPECT_NE(err.find("missing.pem"), std::string::npos) << err;

  cfg = pki.config();
  cfg.min_version = "1.1";
  EXPECT_FALSE(TlsContext::create(cfg, err));

  cfg = pki.config();
  cfg.ciphers = "NOT-A-CIPHER";
  EXPECT_FALSE(TlsContext::create(cfg, err));
  EXPECT_NE(err.find("ciphers"), std::string::npos) << err;

  cfg = pki.config();
  cfg.ca_file.clear();
  cfg.require_certificate = true;
  EXPECT_FALSE(TlsContext::create(cfg, err));
}

TEST(TlsContext, ReloadSwapsOnlyOnSuccessAndOpenSessionsKeepWorking) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  EXPECT_EQ(ctx->certSerial(), "64");  // 100

  TlsSession old_session(*ctx);
  Client old_client(pki);
  std::string plain;
  ASSERT_EQ(handshake(old_client, old_session, plain), TlsSession::Result::Ok);

  // A broken certificate file: refused, the old context stays.
  { std::ofstream(pki.dir + "/server.pem") << "-----BEGIN CERTIFICATE-----\nnonsense\n"; }
  EXPECT_FALSE(ctx->reload(err));
  EXPECT_EQ(ctx->certSerial(), "64");
  {
    TlsSession s(*ctx);
    Client c(pki);
    EXPECT_EQ(handshake(c, s, plain), TlsSession::Result::Ok) << s.error();
  }

  // A new certificate (and key): new sessions see it.
  KeyCert renewed = makeCert("localhost", 101, &pki.ca, false);
  testing::writeCert(pki.dir + "/server.pem", renewed);
  testing::writeKey(pki.dir + "/server.key", renewed);
  ASSERT_TRUE(ctx->reload(err)) << err;
  EXPECT_EQ(ctx->certSerial(), "65");
  {
    TlsSession s(*ctx);
    Client c(pki);
    ASSERT_EQ(handshake(c, s, plain), TlsSession::Result::Ok) << s.error();
    X509* peer = SSL_get0_peer_certificate(c.ssl());
    ASSERT_NE(peer, nullptr);
    EXPECT_EQ(ASN1_INTEGER_get(X509_get0_serialNumber(peer)), 101);
  }

  // The session opened before both reloads still works.
  old_client.write("still alive");
  const std::string bytes = old_client.takeOutput();
  plain.clear();
  ASSERT_EQ(old_session.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                             [&](const uint8_t* d, size_t n) {
                               plain.append(reinterpret_cast<const char*>(d), n);
                               return true;
                             }),
            TlsSession::Result::Ok);
  EXPECT_EQ(plain, "still alive");
}

TEST(TlsContext, FilesChangedNeedsAStableChange) {
  Pki pki;
  std::string err;
  auto ctx = TlsContext::create(pki.config(), err);
  ASSERT_TRUE(ctx) << err;
  EXPECT_FALSE(ctx->filesChanged());
  KeyCert renewed = makeCert("localhost", 102, &pki.ca, false);
  testing::writeCert(pki.dir + "/server.pem", renewed);
  testing::writeKey(pki.dir + "/server.key", renewed);
  EXPECT_FALSE(ctx->filesChanged());  // just changed: wait one more check
  EXPECT_TRUE(ctx->filesChanged());   // unchanged since: reload now
  ASSERT_TRUE(ctx->reload(err)) << err;
  EXPECT_FALSE(ctx->filesChanged());
}

}  // namespace
}  // namespace petrel::tls
