/* The C program that loads the Go library (linked against it) and calls
 * into Go from two threads of its own; its main thread never enters Go and
 * sleeps to an absolute deadline (as Python's time.sleep does). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>
#include "libcgostuck.h"

static void *locked(void *a) { (void)a; CgoLockedBlockInC(); return 0; }
static void *parked(void *a) { (void)a; CgoParkInGo(); return 0; }

int main(void) {
  pthread_t a, b;
  setvbuf(stdout, 0, _IOLBF, 0);
  printf("SCENARIO cshared_host_main tid=%ld goid=0\n", (long)syscall(SYS_gettid));
  pthread_create(&a, 0, locked, 0);
  pthread_create(&b, 0, parked, 0);
  sleep(1);
  printf("READY\n");
  for (;;) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1000000;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, 0);
  }
}
