// Threads stuck inside real third-party C libraries from Debian, on loopback
// only: SQLite (a writer whose commit hook never returns, holding the write
// lock; a reader inside an application SQL function; a third connection in
// SQLite's busy handler), OpenSSL (a
// client handshake to a server that never answers), libcurl (a connect in
// progress to a full listener, and a request waiting for its response),
// libuv (a loop whose callback into Go parks), and an application thread
// named tls_server_main that is in no library at all.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "_cgo_export.h"
#include "libs.h"

static volatile long tids[SLOTS];
static char db_path[512];
static int silent_port, full_port;

long slot_tid(int slot) { return tids[slot]; }
int slot_ready(int slot) { return tids[slot] != 0; }
static void mark(int slot) { tids[slot] = syscall(SYS_gettid); }
void mark_uv(int slot) { mark(slot); }

// A listener that accepts and reads, never answering.
static int listen_on(int backlog, int *port) {
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, backlog) != 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) != 0)
		abort();
	*port = ntohs(a.sin_port);
	return l;
}

static void *silent_server_main(void *arg) {
	int l = (int)(long)arg;
	mark(S_SILENT_SERVER);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0) continue;
		char buf[4096];
		// Read what comes, never answer; keep the connection open.
		(void)read(c, buf, sizeof buf);
	}
	return NULL;
}

int setup(const char *dir) {
	snprintf(db_path, sizeof db_path, "%s/libs.db", dir);
	unlink(db_path);
	sqlite3 *db;
	if (sqlite3_open(db_path, &db) != SQLITE_OK) return 0;
	// WAL: a reader and a writer run at once (a rollback journal's commit
	// takes the EXCLUSIVE lock first).
	sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (0);", NULL, NULL,
		     NULL);
	sqlite3_close(db);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_t t;
	int l = listen_on(16, &silent_port);
	if (pthread_create(&t, NULL, silent_server_main, (void *)(long)l) != 0) return 0;
	// A listener that never accepts, its queue filled: connects hang in SYN_SENT.
	int f = listen_on(0, &full_port);
	(void)f;
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(full_port);
	for (int i = 0; i < 8; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(c, (struct sockaddr *)&a, sizeof a);
	}
	return 1;
}

// SQLite: a write transaction whose commit hook (called as its COMMIT
// runs) never returns: the connection holds the WAL write lock, its write in
// progress.
static int slow_commit(void *arg) {
	(void)arg;
	mark(S_SQLITE_WRITER);
	for (;;) usleep(100000);
	return 0;
}

void sqlite_writer(int slot) {
	(void)slot;
	sqlite3 *db;
	if (sqlite3_open(db_path, &db) != SQLITE_OK) abort();
	sqlite3_commit_hook(db, slow_commit, NULL);
	sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT;", NULL, NULL, NULL);
}

// A reader inside an application SQL function that sleeps, in the middle of
// its SELECT: a read transaction, which keeps no writer out (and is not
// SQLite's busy handler, though it sleeps inside sqlite3_step).
static void slow_value(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	(void)argv;
	mark(S_SQLITE_READER);
	for (;;) usleep(100000);
	sqlite3_result_int(ctx, 1);
}

void sqlite_reader(int slot) {
	(void)slot;
	sqlite3 *db;
	if (sqlite3_open(db_path, &db) != SQLITE_OK) abort();
	sqlite3_create_function(db, "slow_value", 0, SQLITE_UTF8, NULL, slow_value, NULL, NULL);
	sqlite3_exec(db, "SELECT slow_value() FROM t", NULL, NULL, NULL);
}

// A second connection: BEGIN IMMEDIATE needs the write lock; SQLite's busy
// handler sleeps and retries for as long as the timeout allows.
void sqlite_busy_waiter(int slot) {
	sqlite3 *db;
	if (sqlite3_open(db_path, &db) != SQLITE_OK) abort();
	sqlite3_busy_timeout(db, 2000000000);
	mark(slot);
	sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
}

// OpenSSL: a client handshake to the silent server (it reads the
// ClientHello and never answers).
void tls_handshake(int slot) {
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(silent_port);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) abort();
	SSL_set_fd(ssl, s);
	mark(slot);
	SSL_connect(ssl);
}

// An application thread whose name says "tls" but which waits on its own
// condition variable, in no library.
static pthread_mutex_t app_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t app_cv = PTHREAD_COND_INITIALIZER;

static void *tls_server_main(void *arg) {
	mark((int)(long)arg);
	pthread_mutex_lock(&app_mu);
	for (;;) pthread_cond_wait(&app_cv, &app_mu);
	return NULL;
}

void start_tls_server(int slot) {
	pthread_t t;
	if (pthread_create(&t, NULL, tls_server_main, (void *)(long)slot) != 0) abort();
}

static void curl_get(int slot, int port) {
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/stuck", port);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	mark(slot);
	curl_easy_perform(c);
}

// libcurl: connecting (the full listener) and waiting for a response (the
// silent server).
void curl_connecting(int slot) { curl_get(slot, full_port); }
void curl_waiting(int slot) { curl_get(slot, silent_port); }

// libuv: a loop whose timer callback calls into Go, which parks.
static void on_timer(uv_timer_t *t) {
	goUvCallback((int)(long)t->data);
}

void uv_loop_callback(int slot) {
	uv_loop_t loop;
	uv_timer_t timer;
	uv_loop_init(&loop);
	uv_timer_init(&loop, &timer);
	timer.data = (void *)(long)slot;
	uv_timer_start(&timer, on_timer, 0, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
}

// A deadlock across the cgo boundary: a goroutine locked to its thread takes
// a C mutex and returns to Go, where it parks on a channel; a goroutine and
// a foreign C thread then wait for the mutex. The mutex records its owner:
// the locked goroutine's thread.
static pthread_mutex_t boundary_mu = PTHREAD_MUTEX_INITIALIZER;

void boundary_take(int slot) {
	pthread_mutex_lock(&boundary_mu);
	mark(slot);
}

void boundary_wait(int slot) {
	mark(slot);
	pthread_mutex_lock(&boundary_mu);
}

static void *boundary_foreign_main(void *arg) {
	mark((int)(long)arg);
	pthread_mutex_lock(&boundary_mu);
	return NULL;
}

void start_boundary_foreign(int slot) {
	pthread_t t;
	if (pthread_create(&t, NULL, boundary_foreign_main, (void *)(long)slot) != 0) abort();
}
