// C half of the cgostuck scenario: every function records the calling thread's
// TID in a slot before it blocks, so the generator can print ground truth that
// Go's own dump does not contain (which OS thread runs which scenario).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "_cgo_export.h"
#include "scenario.h"

static volatile long tids[SC_MAX];
static volatile int hold_ready;
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cv = PTHREAD_COND_INITIALIZER;

static void mark(int slot) { tids[slot] = syscall(SYS_gettid); }

long scenario_tid(int slot) { return tids[slot]; }
void scenario_mark(int slot) { mark(slot); }
int holder_ready(void) { return hold_ready; }

static void sleep_forever(void) {
	for (;;) sleep(100000);
}

void block_read(int slot) {
	int fds[2];
	char c;
	if (pipe(fds) != 0) abort();
	mark(slot);
	read(fds[0], &c, 1);
}

void block_cond(int slot) {
	pthread_mutex_lock(&cond_mu);
	mark(slot);
	for (;;) pthread_cond_wait(&never_cv, &cond_mu);
}

void hold_mutex_then_sleep(int slot) {
	pthread_mutex_lock(&shared_mu);
	mark(slot);
	hold_ready = 1;
	sleep_forever();
}

void block_mutex(int slot) {
	mark(slot);
	pthread_mutex_lock(&shared_mu);
}

void block_sleep(int slot) {
	mark(slot);
	sleep_forever();
}

void block_accept(int slot) {
	struct sockaddr_in addr;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0) abort();
	mark(slot);
	accept(fd, NULL, NULL);
}

void block_pause(int slot) {
	mark(slot);
	for (;;) pause();
}

void call_back_into_go(int slot) {
	mark(slot);
	goCallbackBlock(slot);
}

static void *extra_parked_main(void *arg) {
	int slot = (int)(intptr_t)arg;
	mark(slot);
	goParkForever(slot);
	return NULL;
}

static void *extra_in_c_main(void *arg) {
	int slot = (int)(intptr_t)arg;
	goPing(slot);
	mark(slot);
	sleep_forever();
	return NULL;
}

static void *foreign_main(void *arg) {
	int slot = (int)(intptr_t)arg;
	mark(slot);
	sleep_forever();
	return NULL;
}

static void spawn(void *(*fn)(void *), int slot) {
	pthread_t t;
	if (pthread_create(&t, NULL, fn, (void *)(intptr_t)slot) != 0) abort();
	pthread_detach(t);
}

void start_extra_parked(int slot) { spawn(extra_parked_main, slot); }
void start_extra_in_c(int slot) { spawn(extra_in_c_main, slot); }
void start_foreign(int slot) { spawn(foreign_main, slot); }
