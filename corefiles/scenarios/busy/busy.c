// The C side of the busy program: short C calls, and C threads that call
// into Go every 200 microseconds.
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#include "_cgo_export.h"

int busy_spin(int n) {
	volatile int x = 0;
	for (int i = 0; i < n; i++) x += i;
	return x;
}

static void *cthread(void *arg) {
	for (;;) {
		goCallback((int)(intptr_t)arg);
		usleep(200);
	}
	return 0;
}

void busy_start_cthreads(int n) {
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, 0, cthread, (void *)(intptr_t)i);
	}
}
