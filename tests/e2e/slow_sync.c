/* A slow disk for the end-to-end tests, preloaded into the broker
 * (LD_PRELOAD): fsync() and fdatasync() first sleep for the number of
 * milliseconds written in the file named by PETREL_TEST_SYNC_DELAY_FILE
 * (read at every call, so a test can slow the disk down and speed it up
 * while the broker runs; no file, or 0, means no delay), then flush as
 * usual. Built by the test that uses it (test_16_flow_at_scale.py). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void sync_delay(void) {
  const char* path = getenv("PETREL_TEST_SYNC_DELAY_FILE");
  if (!path) return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  long ms = strtol(buf, NULL, 10);
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  sync_delay();
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  sync_delay();
  return real(fd);
}
