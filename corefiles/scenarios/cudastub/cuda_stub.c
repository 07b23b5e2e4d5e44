// A stand-in for the CUDA driver (libcuda.so.1) on machines without a GPU:
// the driver API's exported names and shape (a synchronizing call that waits
// in the kernel), so the CUDA findings are tested on real cores. It is not
// CUDA; docs/json-schema.md says what is verified with it.
#include <poll.h>

typedef int CUresult;

CUresult cuInit(unsigned int flags) {
	(void)flags;
	return 0;
}

// The real call waits for the GPU (ioctl on /dev/nvidia*, or a poll on its
// event fd); this one waits forever.
CUresult cuCtxSynchronize(void) {
	for (;;) poll((struct pollfd *)0, 0, -1);
	return 0;
}
