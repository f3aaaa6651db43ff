// `petrel passwd [-c] [-D] [-b] [-I N] FILE USER [PASSWORD]`: the broker's
// own mosquitto_passwd. The file is rewritten through a temporary file and
// rename(), so a crash never leaves it half-written; other lines (comments,
// other users) are kept as they are.
#include "src/tools/passwd_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "src/security/password_file.h"

namespace petrel {

namespace {

void usage(FILE* f) {
  std::fprintf(f,
      "Usage: petrel passwd [-c | -D] [-I ITERATIONS] FILE USER\n"
      "       petrel passwd [-c] [-I ITERATIONS] -b FILE USER PASSWORD\n"
      "\n"
      "Adds USER to FILE or changes its password (the file is created if needed).\n"
      "The password is asked twice on a terminal, otherwise read as one line from\n"
      "standard input; -b takes it from the command line (it is then visible to\n"
      "other users of the machine).\n"
      "\n"
      "  -c            start a new file, replacing FILE if it exists\n"
      "  -D            delete USER from FILE\n"
      "  -b            batch mode: the password is the last argument\n"
      "  -I N          PBKDF2 iterations (default %u; mosquitto_passwd uses 101)\n"
      "\n"
      "Entries are written as $7$ (PBKDF2-HMAC-SHA512), which mosquitto 2.0 also reads.\n",
      PasswordFile::kDefaultIterations);
}

// Reads a line from the terminal with echo off.
bool promptHidden(const char* prompt, std::string& out) {
  // Echo goes off before the prompt appears, so nothing typed after the
  // prompt is echoed or discarded by the mode change.
  termios old{};
  const bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::fprintf(stderr, "%s", prompt);
  std::fflush(stderr);
  const bool ok = static_cast<bool>(std::getline(std::cin, out));
  if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::fprintf(stderr, "\n");
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return ok;
}

bool readPassword(std::string& password) {
  if (isatty(STDIN_FILENO)) {
    std::string again;
    if (!promptHidden("Password: ", password) || !promptHidden("Reenter password: ", again)) {
      std::fprintf(stderr, "petrel passwd: no password given\n");
      return false;
    }
    if (password != again) {
      std::fprintf(stderr, "petrel passwd: the passwords do not match\n");
      return false;
    }
    return true;
  }
  if (!std::getline(std::cin, password)) {
    std::fprintf(stderr, "petrel passwd: no password on standard input\n");
    return false;
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return true;
}

// The user name of a password-file line, or empty for comments and junk.
std::string userOf(const std::string& line) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  if (i == line.size() || line[i] == '#') return {};
  const size_t colon = line.find(':', i);
  if (colon == std::string::npos) return {};
  size_t end = colon;
  while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
  return line.substr(i, end - i);
}

bool writeAtomically(const std::string& path, const std::string& content) {
  mode_t mode = 0600;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    std::fprintf(stderr, "petrel passwd: cannot write %s: %s\n", tmp.c_str(), std::strerror(errno));
    return false;
  }
  ::fchmod(fd, mode);
  size_t off = 0;
  bool ok = true;
  while (off < content.size()) {
    const ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    off += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::fprintf(stderr, "petrel passwd: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace

int passwdCommand(int argc, char** argv) {
  bool create = false, remove = false, batch = false;
  uint32_t iterations = PasswordFile::kDefaultIterations;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-c") {
      create = true;
    } else if (a == "-D") {
      remove = true;
    } else if (a == "-b") {
      batch = true;
    } else if (a == "-I") {
      if (i + 1 >= argc) return usage(stderr), 2;
      char* end;
      const unsigned long n = std::strtoul(argv[++i], &end, 10);
      if (*end || n == 0 || n > 100000000) {
        std::fprintf(stderr, "petrel passwd: -I: '%s' is not a number of iterations\n", argv[i]);
        return 2;
      }
      iterations = static_cast<uint32_t>(n);
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a.size() > 1 && a[0] == '-') {
      std::fprintf(stderr, "petrel passwd: unknown option '%s'\n", a.c_str());
      return usage(stderr), 2;
    } else {
      args.push_back(a);
    }
  }
  if ((create && remove) || args.size() != (batch ? 3u : 2u) || (batch && remove)) return usage(stderr), 2;
  const std::string& path = args[0];
  const std::string& user = args[1];
  if (user.empty() || user.find(':') != std::string::npos) {
    std::fprintf(stderr, "petrel passwd: a user name must be non-empty and contain no ':'\n");
    return 1;
  }

  std::vector<std::string> lines;
  if (!create) {
    std::ifstream in(path);
    if (in) {
      for (std::string line; std::getline(in, line);) lines.push_back(line);
    } else if (remove) {
      std::fprintf(stderr, "petrel passwd: cannot read %s\n", path.c_str());
      return 1;
    }
  }

  std::string entry;
  if (!remove) {
    std::string password;
    if (batch) {
      password = args[2];
    } else if (!readPassword(password)) {
      return 1;
    }
    if (password.empty()) {
      std::fprintf(stderr, "petrel passwd: the password is empty\n");
      return 1;
    }
    const std::string hash = PasswordFile::hashPassword(password, iterations);
    if (hash.empty()) {
      std::fprintf(stderr, "petrel passwd: hashing failed\n");
      return 1;
    }
    entry = user + ":" + hash;
  }

  bool found = false;
  std::ostringstream out;
  for (const std::string& line : lines) {
    if (userOf(line) == user) {
      if (!found && !remove) out << entry << '\n';
      found = true;
      continue;  // duplicates of the user go too
    }
    out << line << '\n';
  }
  if (remove && !found) {
    std::fprintf(stderr, "petrel passwd: user '%s' is not in %s\n", user.c_str(), path.c_str());
    return 1;
  }
  if (!found && !remove) out << entry << '\n';
  return writeAtomically(path, out.str()) ? 0 : 1;
}

}  // namespace petrel
