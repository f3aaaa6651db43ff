// src/tools/passwd_command.h — `petrel passwd`: creates and updates password
// files in the mosquitto_passwd format (entries written as $7$ PBKDF2).
#pragma once

namespace petrel {

// argv[0] is "passwd". Returns the process exit status.
int passwdCommand(int argc, char** argv);

}  // namespace petrel
