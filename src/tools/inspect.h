// src/tools/inspect.h — `petrel inspect --data DIR`: a read-only look into a data
// store for operators, safe while the broker runs (LMDB readers never block
// the writer).
#pragma once

#include <string>

namespace petrel {

// Prints the report to stdout; returns the process exit status.
int inspectStore(const std::string& dir, bool verbose);

}  // namespace petrel
