#include <gtest/gtest.h>

#include "tls/crypto.h"

namespace petrel::tls {
namespace {

TEST(Crypto, Base64RoundTripAndPadding) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  std::string out;
  ASSERT_TRUE(base64Decode("Zm9vYg==", out));
  EXPECT_EQ(out, "foob");
  ASSERT_TRUE(base64Decode("Zm9vYg", out));
  EXPECT_EQ(out, "foob");
  EXPECT_FALSE(base64Decode("Zm9v!", out));
  EXPECT_FALSE(base64Decode("Z", out));
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  ASSERT_TRUE(base64Decode(base64Encode(all), out));
  EXPECT_EQ(out, all);
}

TEST(Crypto, Sha512KnownVector) {
  // FIPS 180-2 "abc", fed as two parts.
  EXPECT_EQ(base64Encode(sha512("a", "bc")),
            "3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==");
}

TEST(Crypto, Sha1KnownVectors) {
  // FIPS 180-1 "abc", and the WebSocket handshake example of RFC 6455 §1.3.
  EXPECT_EQ(base64Encode(sha1("ab", "c")), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
  EXPECT_EQ(base64Encode(sha1("dGhlIHNhbXBsZSBub25jZQ==", "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Crypto, Pbkdf2Sha512KnownVector) {
  // Produced by mosquitto_passwd 2.0.11: alice:$7$101$WwpEckHGJeMa4khk$kaG0...
  std::string salt;
  ASSERT_TRUE(base64Decode("WwpEckHGJeMa4khk", salt));
  EXPECT_EQ(base64Encode(pbkdf2Sha512("secret", salt, 101, 64)),
            "kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==");
  EXPECT_EQ(pbkdf2Sha512("x", salt, 0, 64), "");
}

TEST(Crypto, ConstantTimeEqualAndRandom) {
  EXPECT_TRUE(constantTimeEqual("abc", "abc"));
  EXPECT_FALSE(constantTimeEqual("abc", "abd"));
  EXPECT_FALSE(constantTimeEqual("abc", "ab"));
  EXPECT_EQ(randomBytes(12).size(), 12u);
  EXPECT_NE(randomBytes(16), randomBytes(16));
}

}  // namespace
}  // namespace petrel::tls
