// src/util/check.h — PETREL_CHECK: an invariant of the broker's own state,
// checked in every build (see src/README.md, "Error policy"). Only for what
// the broker itself guarantees -- never for what a peer, a file or the disk
// can cause, which is handled. Keep the condition cheap.
#pragma once

#include <cstdio>
#include <cstdlib>

#define PETREL_CHECK(cond)                                                               \
  do {                                                                                   \
    if (__builtin_expect(!(cond), 0)) {                                                  \
      std::fprintf(stderr, "petrel: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                               \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
