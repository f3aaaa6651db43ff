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
  std::string err;
  ASSERT_TRUE(pw.parse(kMosquittoFile, "pw", err)) << err;
  EXPECT_EQ(pw.size(), 3u);
  EXPECT_EQ(pw.check("alice", "secret"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("bob", "hunter2"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("carol", "pä ss"), PasswordFile::Result::Ok);
}

TEST(PasswordFile, RefusesWrongPasswordsAndUnknownUsers) {
  PasswordFile pw;
  std::string err;
  ASSERT_TRUE(pw.parse(kMosquittoFile, "pw", err)) << err;
  EXPECT_EQ(pw.check("alice", "Secret"), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("alice", ""), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("bob", "hunter"), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("bob", std::string("hunter2\0", 8)), PasswordFile::Result::WrongPassword);
  EXPECT_EQ(pw.check("mallory", "secret"), PasswordFile::Result::UnknownUser);
  EXPECT_EQ(pw.check("Alice", "secret"), PasswordFile::Result::UnknownUser);
}

TEST(PasswordFile, CommentsAndBlankLinesAreIgnored) {
  PasswordFile pw;
  std::string err;
  ASSERT_TRUE(pw.parse(std::string("# users\n\n   \n") + kMosquittoFile + "# end\n", "pw", err)) << err;
  EXPECT_EQ(pw.size(), 3u);
}

// A file that does not parse completely is refused as a whole: a broken
// file must never replace a good one (a reload) or start the broker.
TEST(PasswordFile, AnyBadLineRefusesTheWholeFileAndKeepsTheOldEntries) {
  const std::string alice =
      "alice:$7$101$WwpEckHGJeMa4khk$kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==\n";
  struct Case {
    std::string text;
    std::string error;
  } cases[] = {
      {alice + "no-colon-here\n", "pw:2: not a 'user:hash' line"},
      {alice + "plain:clear-text-password\n", "pw:2: user 'plain': not a $6$ or $7$ hash"},
      {"short:$6$c2FsdA==$AAAA\n" + alice, "pw:1: user 'short': not a $6$ or $7$ hash"},
      {alice + "alice:$6$EFxhZNU8oE1A9xWd$5q8P1k/FGec6IR5YjvBgQDmevQwJdGHQploZeSLY9LyXthBAqMBUUZX8cIGp19D0LAqC272cIQvFvs1hJ7tyXA==\n",
       "pw:2: user 'alice' appears twice"},
      {alice + ":$6$EFxhZNU8oE1A9xWd$5q8P1k/FGec6IR5YjvBgQDmevQwJdGHQploZeSLY9LyXthBAqMBUUZX8cIGp19D0LAqC272cIQvFvs1hJ7tyXA==\n",
       "pw:2: empty user name"},
      {"zero:$7$0$WwpEckHGJeMa4khk$kaG0lrcI2uXP2+owC9vAJ/NtsczhE5TIYPbrWH3kaCgwbW//W0H4kwsEkZGe9vxCXAm1/KudfyN6sJ0i6OD6yg==\n",
       "pw:1: user 'zero': not a $6$ or $7$ hash"},
      {alice.substr(0, 60), "pw:1: user 'alice': not a $6$ or $7$ hash"},  // truncated
      {"garbage\n", "pw:1: not a 'user:hash' line"},
      {"", "pw: no users"},
      {"# only a comment\n", "pw: no users"},
  };
  for (const Case& c : cases) {
    PasswordFile pw;
    std::string err;
    ASSERT_TRUE(pw.parse(kMosquittoFile, "pw", err));
    EXPECT_FALSE(pw.parse(c.text, "pw", err)) << c.text;
    EXPECT_EQ(err.rfind(c.error, 0), 0u) << "got: " << err << "\nwant: " << c.error;
    EXPECT_EQ(pw.size(), 3u);  // the previous entries stay
    EXPECT_EQ(pw.check("alice", "secret"), PasswordFile::Result::Ok);
  }
}

TEST(PasswordFile, UnknownUsersAreCheckedAtTheFilesOwnCosts) {
  // A cheap and an expensive user: an unknown name costs one of the two,
  // the same one each time.
  const std::string text = "cheap:" + PasswordFile::hashPassword("a", 101) + "\n" +
                           "dear:" + PasswordFile::hashPassword("b", 20000) + "\n";
  PasswordFile pw;
  std::string err;
  ASSERT_TRUE(pw.parse(text, "pw", err)) << err;
  EXPECT_EQ(pw.check("nobody", "x"), PasswordFile::Result::UnknownUser);
  EXPECT_EQ(pw.check("cheap", "a"), PasswordFile::Result::Ok);
  EXPECT_EQ(pw.check("dear", "b"), PasswordFile::Result::Ok);
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
  std::string err;
  ASSERT_TRUE(pw.parse(kMosquittoFile, "pw", err));
  EXPECT_FALSE(pw.load("/nonexistent/petrel-passwd", err));
  EXPECT_NE(err.find("/nonexistent/petrel-passwd"), std::string::npos);
  EXPECT_EQ(pw.size(), 3u);
}

}  // namespace
}  // namespace petrel
