// C half of the cgostuck scenario: every function records the calling thread's
// TID in a slot before it blocks, so the generator can print ground truth that
// Go's own dump does not contain (which OS thread runs which scenario).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "_cgo_export.h"
#include "scenario.h"

// The scenarios that wedge glibc's own locks (malloc arenas, the
// environment, the loader, its resolver's settings) are glibc's: under musl
// (Alpine, static) the program leaves them out and says so.
int scenario_glibc(void) {
#ifdef __GLIBC__
	return 1;
#else
	return 0;
#endif
}

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

// ---- one scenario per blocked-call class (cgocore's classification) ----

static pthread_rwlock_t shared_rw = PTHREAD_RWLOCK_INITIALIZER;
static volatile int rw_ready, flock_ready, loader_ready, stdio_ready;
static sem_t never_sem;
static FILE *shared_file;
static char lock_path[64];

void hold_rwlock_then_sleep(int slot) {
	pthread_rwlock_wrlock(&shared_rw);
	mark(slot);
	rw_ready = 1;
	sleep_forever();
}
int rwlock_ready(void) { return rw_ready; }

void block_rwlock(int slot) {
	mark(slot);
	pthread_rwlock_rdlock(&shared_rw);
}

void block_sem(int slot) {
	sem_init(&never_sem, 0, 0);
	mark(slot);
	for (;;) sem_wait(&never_sem);
}

void block_write(int slot) {
	int fds[2];
	static char buf[4096];
	if (pipe(fds) != 0) abort();
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	while (write(fds[1], buf, sizeof buf) > 0) {
	}
	fcntl(fds[1], F_SETFL, 0);
	mark(slot);
	write(fds[1], buf, sizeof buf);
}

void block_connect(int slot) {
	// A unix listener that never accepts: once its backlog is full, connect blocks.
	struct sockaddr_un addr;
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "cgostuck-%d", (int)getpid());
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, len) != 0 || listen(l, 0) != 0) abort();
	for (int i = 0; i < 64; i++) {
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(c, (struct sockaddr *)&addr, len) != 0) break;
	}
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	mark(slot);
	connect(c, (struct sockaddr *)&addr, len);
}

void block_recv(int slot) {
	int sv[2];
	char c;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
	mark(slot);
	recv(sv[0], &c, 1, 0);
}

void block_send(int slot) {
	int sv[2];
	static char buf[65536];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
	while (send(sv[0], buf, sizeof buf, MSG_DONTWAIT) > 0) {
	}
	mark(slot);
	send(sv[0], buf, sizeof buf, 0);
}

void block_poll(int slot) {
	int fds[2];
	if (pipe(fds) != 0) abort();
	struct pollfd p = {.fd = fds[0], .events = POLLIN};
	mark(slot);
	for (;;) poll(&p, 1, -1);
}

void block_dns(int slot) {
	// A name server that never answers: a bound UDP socket nobody reads.
	struct sockaddr_in ns;
	socklen_t len = sizeof ns;
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&ns, 0, sizeof ns);
	ns.sin_family = AF_INET;
	ns.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (u < 0 || bind(u, (struct sockaddr *)&ns, sizeof ns) != 0 ||
	    getsockname(u, (struct sockaddr *)&ns, &len) != 0)
		abort();
#ifdef __GLIBC__
	res_init();
	_res.nscount = 1;
	_res.nsaddr_list[0] = ns;
	_res.retrans = 3600;
	_res.retry = 1;
#endif
	unsigned char answer[512];
	mark(slot);
	for (;;) res_query("stuck.cgostuck.invalid", ns_c_in, ns_t_a, answer, sizeof answer);
}

void block_wait_child(int slot) {
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) _exit(0);
		for (;;) pause();
	}
	mark(slot);
	waitpid(pid, NULL, 0);
}

void hold_flock_then_sleep(int slot) {
	snprintf(lock_path, sizeof lock_path, "/tmp/cgostuck-%d.lock", (int)getpid());
	int fd = open(lock_path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) != 0) abort();
	mark(slot);
	flock_ready = 1;
	sleep_forever();
}
int flock_holder_ready(void) { return flock_ready; }

void block_flock(int slot) {
	int fd = open(lock_path, O_RDWR);
	if (fd < 0) abort();
	unlink(lock_path);
	mark(slot);
	flock(fd, LOCK_EX);
}

static int sleep_in_phdr_callback(struct dl_phdr_info *info, size_t size, void *data) {
	(void)info;
	(void)size;
	loader_ready = 1;
	sleep_forever();
	return *(int *)data;
}
static int count_phdr(struct dl_phdr_info *info, size_t size, void *data) {
	(void)info;
	(void)size;
	(void)data;
	return 0;
}

void hold_loader_then_sleep(int slot) {
	int zero = 0;
	mark(slot);
	dl_iterate_phdr(sleep_in_phdr_callback, &zero);
}
int loader_holder_ready(void) { return loader_ready; }

void block_loader(int slot) {
	mark(slot);
	dl_iterate_phdr(count_phdr, NULL);
}

void hold_stdio_then_sleep(int slot) {
	shared_file = fopen("/dev/null", "w");
	if (!shared_file) abort();
	flockfile(shared_file);
	mark(slot);
	stdio_ready = 1;
	sleep_forever();
}
int stdio_holder_ready(void) { return stdio_ready; }

void block_stdio(int slot) {
	mark(slot);
	fputs("stuck\n", shared_file);
}

void busy_in_c(int slot) {
	volatile unsigned long n = 0;
	mark(slot);
	for (;;) n++;
}

// A C signal handler that takes a mutex another thread holds: not
// async-signal-safe, and stuck inside the handler.
static void unsafe_handler(int sig) {
	(void)sig;
	pthread_mutex_lock(&shared_mu);
}

void block_in_signal_handler(int slot) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = unsafe_handler;
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	mark(slot);
	pthread_kill(pthread_self(), SIGUSR2);
}

// Two threads taking two mutexes in opposite orders: an ABBA deadlock.
static pthread_mutex_t dl_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t dl_b = PTHREAD_MUTEX_INITIALIZER;
static volatile int dl_a_held, dl_b_held;

void deadlock_ab(int slot) {
	pthread_mutex_lock(&dl_a);
	dl_a_held = 1;
	while (!dl_b_held) usleep(1000);
	mark(slot);
	pthread_mutex_lock(&dl_b);
}

void deadlock_ba(int slot) {
	pthread_mutex_lock(&dl_b);
	dl_b_held = 1;
	while (!dl_a_held) usleep(1000);
	mark(slot);
	pthread_mutex_lock(&dl_a);
}

// A handler that allocates, or sets the environment, interrupting its own
// thread inside malloc/free or setenv: it waits for the C library lock its
// own interrupted code holds (glibc's arena and environment locks are plain
// futex words, no owner recorded). The signal is resent until it lands inside
// the lock. A wedged arena stops every thread that shares it (Go's own thread
// creation mallocs), so the victims start first, in a constructor, each
// claiming an arena of its own, and no arena is shared below M_ARENA_MAX.
static volatile long self_victim_tid[2];
static volatile int self_go[2], self_in[2], self_out[2];
static pthread_t self_victim[2];

static void malloc_in_handler(int sig) {
	(void)sig;
	self_in[0]++;
	void *volatile p = malloc(4096); // past tcache and fastbins: takes the arena lock
	free(p);
	self_out[0]++;
}

static void setenv_in_handler(int sig) {
	(void)sig;
	self_in[1]++;
	setenv("CGOSTUCK_HANDLER", "1", 1);
	self_out[1]++;
}

static void *malloc_victim_main(void *arg) {
	(void)arg;
	self_victim_tid[0] = syscall(SYS_gettid);
	free(malloc(4096)); // this thread's arena, created now, before any other thread
	while (!self_go[0]) usleep(1000);
	// Each its own pointer: a handler landing between the two calls must not
	// free what the loop is about to free (a double free, seen in CI).
	for (;;) {
		void *volatile p = malloc(4096);
		free(p);
	}
	return NULL;
}

static void *setenv_victim_main(void *arg) {
	(void)arg;
	self_victim_tid[1] = syscall(SYS_gettid);
	free(malloc(64));
	while (!self_go[1]) usleep(1000);
	for (unsigned i = 0;; i++) setenv("CGOSTUCK_LOOP", (i & 1) ? "a" : "b", 1);
	return NULL;
}

__attribute__((constructor)) static void start_self_victims(void) {
#ifndef __GLIBC__
	return;
#else
	mallopt(M_ARENA_MAX, 1024);
#endif
	if (pthread_create(&self_victim[0], NULL, malloc_victim_main, NULL) != 0) abort();
	if (pthread_create(&self_victim[1], NULL, setenv_victim_main, NULL) != 0) abort();
}

static void self_deadlock(int slot, int which, int signo, void (*handler)(int)) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sigaction(signo, &sa, NULL);
	while (!self_victim_tid[which]) usleep(100);
	self_go[which] = 1;
	for (int tries = 0; tries < 20000; tries++) {
		int sent = self_in[which];
		pthread_kill(self_victim[which], signo);
		while (self_in[which] == sent) usleep(50);
		usleep(20000);
		if (self_in[which] == self_out[which]) continue;
		// A handler that landed outside the lock only runs slowly (a loaded
		// machine): a wedged one never leaves, so look again later.
		int out = self_out[which];
		usleep(300000);
		if (self_out[which] == out && self_in[which] != self_out[which]) {
			tids[slot] = self_victim_tid[which];
			return;
		}
	}
	abort();
}

void start_malloc_self_deadlock(int slot) {
	self_deadlock(slot, 0, SIGRTMIN + 4, malloc_in_handler);
}

void start_setenv_self_deadlock(int slot) {
	self_deadlock(slot, 1, SIGRTMIN + 5, setenv_in_handler);
}

// Waits for the environment lock the setenv victim holds, as os.Setenv would.
void block_setenv(int slot) {
	mark(slot);
	setenv("CGOSTUCK_WAITER", "1", 1);
}

// CUDA driver calls (through the library named by -cuda): one from an
// unlocked goroutine, one from a locked one.
static int (*cu_ctx_synchronize)(void);

int cuda_open(const char *path) {
	void *h = dlopen(path, RTLD_NOW);
	if (!h) return 0;
	int (*init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
	cu_ctx_synchronize = (int (*)(void))dlsym(h, "cuCtxSynchronize");
	return init && cu_ctx_synchronize && init(0) == 0;
}

void block_cuda(int slot) {
	mark(slot);
	cu_ctx_synchronize();
}

// fork() in a process whose malloc arena is wedged: fork takes malloc's
// list_lock, main_arena's lock and every other arena's in turn, and waits at
// the wedged one for good, holding the rest; a thread that then needs an
// arena of its own (its first malloc) waits for list_lock. From then on most
// allocations in the process hang (Go's thread creation allocates), so this
// comes last and writes the last SCENARIO lines and READY itself, without
// allocating, and never returns.
#define ARENA_CANDIDATES 4
static volatile int fork_go, fork_returned, arena_turn = -1, arena_done;
static volatile long arena_tid[ARENA_CANDIDATES];

static void *fork_wedged_main(void *arg) {
	while (!fork_go) usleep(1000);
	mark((int)(intptr_t)arg);
	if (fork() == 0) _exit(0); // not expected: the arena is wedged
	fork_returned = 1;
	for (;;) pause();
	return NULL;
}

// An exited thread's arena is reused (free list) before a new one is made
// under list_lock: candidates take their first allocation in turn until one
// waits; the others keep the arenas they took.
static void *arena_candidate_main(void *arg) {
	int i = (int)(intptr_t)arg;
	arena_tid[i] = syscall(SYS_gettid);
	while (arena_turn != i) usleep(1000);
	void *volatile p = malloc(64);
	free(p);
	arena_done++;
	for (;;) pause();
	return NULL;
}

static void say(const char *s) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w <= 0) return;
		s += w;
		n -= (size_t)w;
	}
}

void fork_wedge_then_ready(int fork_slot, int waiter_slot, long pid, long main_goid) {
	pthread_t t;
	for (int i = 0; i < ARENA_CANDIDATES; i++)
		if (pthread_create(&t, NULL, arena_candidate_main, (void *)(intptr_t)i) != 0) abort();
	if (pthread_create(&t, NULL, fork_wedged_main, (void *)(intptr_t)fork_slot) != 0) abort();
	fork_go = 1;
	while (!tids[fork_slot]) usleep(1000);
	usleep(100000);
	if (fork_returned) {
		say("fork returned: no malloc arena is wedged\n");
		abort();
	}
	int waiter = -1;
	for (int i = 0; i < ARENA_CANDIDATES && waiter < 0; i++) {
		while (!arena_tid[i]) usleep(1000);
		int done = arena_done;
		arena_turn = i;
		usleep(200000);
		if (arena_done == done) waiter = i;
	}
	if (waiter < 0) {
		say("every arena candidate found a free arena\n");
		abort();
	}
	tids[waiter_slot] = arena_tid[waiter];
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "SCENARIO fork_wedged tid=%ld goid=0\nSCENARIO arena_waiter tid=%ld goid=0\n",
			 (long)tids[fork_slot], (long)tids[waiter_slot]);
	// The other candidates: threads of the scenario, each keeping an arena or
	// still waiting for its turn.
	for (int i = 0, k = 0; i < ARENA_CANDIDATES; i++)
		if (i != waiter)
			n += snprintf(buf + n, sizeof buf - n, "SCENARIO arena_spare_%d tid=%ld goid=0\n", k++,
				      (long)arena_tid[i]);
	snprintf(buf + n, sizeof buf - n, "READY pid=%ld main_goid=%ld\n", pid, main_goid);
	say(buf);
	for (;;) pause();
}

// The live tests' thread that will not stop (only when asked: CGOSTUCK_VFORK):
// the parent side of a vfork whose child never execs waits in the kernel,
// uninterruptibly, until the child goes, as a thread on a stalled NFS or
// FUSE mount does. The child, on the parent's stack and memory, makes system
// calls only: it records its pid, asks to die with its parent, and pauses.
static volatile long vfork_tid, vfork_child;
long vfork_stuck_tid(void) { return vfork_tid; }
long vfork_stuck_child(void) { return vfork_child; }
void block_in_vfork(void) {
	vfork_tid = syscall(SYS_gettid);
	if (vfork() == 0) {
		syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		vfork_child = syscall(SYS_getpid);
		for (;;)
			syscall(SYS_ppoll, NULL, 0, NULL, NULL, 0);
	}
}

// The live tests' climbing thread count (only when asked: CGOSTUCK_CLIMB):
// each call holds its thread in C for good, as a call into a library that
// never returns does.
void climb_sleep(void) { sleep_forever(); }
