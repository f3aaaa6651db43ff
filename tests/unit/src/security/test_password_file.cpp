// Password hashes as mosquitto_passwd (2.0.11, Debian 12) wrote them.
#include <gtest/gtest.h>

#include "src/security/password_file.h"

namespace petrel {
namespace {

// mosquitto_passwd -c -b pw alice secret
// mosquitto_passwd -H sha512 -b pw bob hunter2
// mosquitto_passwd -b pw carol 'pä ss'
constexpr const char* kMosquittoFile =
    "alice:$7$101$WwpEckHGJeMa4khk$kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==\n"
    "bob:$6$EFxhZNU8oE1A9xWd$5q8P1k/FGec6IR5YjvBgQDmevQwJdGHQploZeSLY9LyXthBAqMBUUZX8cIGp19D0LAqC272cIQvFvs1hJ7tyXA==\n"
    "carol:$7$101$oYOlPaJ9vFYIHGon$MtswcfztVbanoginNWtQUpEXh1HGQsDhRpooYN6R2D8CbpzZfyc3ZDemoMzWy6j8GohHO0rkYp3pOouP8MUG8w==\n";

TEST(PasswordFile, AcceptsMosquittoPasswdHashes) {
  PasswordFile pw;
  pw.parse(kMosquittoFile, "pw");
  EXPECT_EQ(pw.size(), 3u);
  EXPECT_TRUE(pw.warnings().empty());
  EXPECT_EQ(pw.check("alice", "secret"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("bob", "hunter2"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("carol", "pä ss"), PasswordFile::Result::Ok);
}

TEST(PasswordFile, RefusesWrongPasswordsAndUnknownUsers) {
  PasswordFile pw;
  pw.parse(kMosquittoFile, "pw");
  EXPECT_EQ(pw.check("alice", "Secret"), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("alice", ""), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("bob", "hunter"), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("bob", std::string("hunter2\0", 8)), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("mallory", "secret"), PasswordFile::Result::UnknownUser);
  EXPECT_EQ(pw.check("Alice", "secret"), PasswordFile::Result::UnknownUser);
}

TEST(PasswordFile, SkipsCommentsBadLinesAndDuplicates) {
  PasswordFile pw;
  pw.parse(
      "# a comment\n"
      "\n"
      "no-colon-here\n"
      "plain:clear-text-password\n"
      "short:$6$c2FsdA==$AAAA\n"
      "alice:$7$101$WwpEckHGJeMa4khk$kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==\r\n"
      "alice:$6$EFxhZNU8oE1A9xWd$5q8P1k/FGec6IR5YjvBgQDmevQwJdGHQploZeSLY9LyXthBAqMBUUZX8cIGp19D0LAqC272cIQvFvs1hJ7tyXA==\n"
      "zero:$7$0$WwpEckHGJeMa4khk$kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==\n",
      "pw");
  EXPECT_EQ(pw.size(), 1u);
  EXPECT_EQ(pw.warnings().size(), 5u);
  EXPECT_EQ(pw.check("alice", "secret"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("plain", "clear-text-password"), PasswordFile::Result::UnknownUser);
}

TEST(PasswordFile, HashPasswordWritesVerifiablePbkdf2) {
  const std::string h = PasswordFile::hashPassword("correct horse", 150);
  ASSERT_EQ(h.rfind("$7$150$", 0), 0u) << h;
  EXPECT_TRUE(PasswordFile::verify(h, "correct horse"));
  EXPECT_FALSE(PasswordFile::verify(h, "correct horsE"));
  EXPECT_NE(PasswordFile::hashPassword("x"), PasswordFile::hashPassword("x"));  // salted
  EXPECT_FALSE(PasswordFile::verify("$5$abc$def", "x"));
}

TEST(PasswordFile, LoadKeepsOldEntriesWhenTheFileIsMissing) {
  PasswordFile pw;
  pw.parse(kMosquittoFile, "pw");
  std::string err;
  EXPECT_FALSE(pw.load("/nonexistent/petrel-passwd", err));
  EXPECT_NE(err.find("/nonexistent/petrel-passwd"), std::string::npos);
  EXPECT_EQ(pw.size(), 3u);
}

}  // namespace
}  // namespace petrel
