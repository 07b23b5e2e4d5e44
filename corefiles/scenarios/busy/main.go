// Command busy keeps a Go program busy in the ways a core can catch one:
// allocation under GC pressure (run it with GOGC=5), deep recursion that
// grows stacks, goroutines in loops of short cgo calls (a quarter of them
// locked to their threads), C threads calling into Go every 200 µs, and
// sleepers. It prints READY and runs until it is killed; a core taken at a
// random moment then holds goroutines preempted, running, in syscalls, in
// cgo calls, in callbacks, and the GC at work.
package main

/*
int busy_spin(int n);
void busy_start_cthreads(int n);
*/
import "C"

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

var (
	sink      atomic.Pointer[[]byte]
	callbacks atomic.Int64
)

//export goCallback
func goCallback(i C.int) {
	b := make([]byte, 64+int(i))
	sink.Store(&b)
	callbacks.Add(1)
}

// recurse grows the stack n frames deep, then allocates at the bottom.
func recurse(n int) int {
	var local [24]byte
	local[n%24] = byte(n)
	if n == 0 {
		b := make([]byte, 512+rand.Intn(8192))
		sink.Store(&b)
		return int(b[0])
	}
	return recurse(n-1) + int(local[n%24])
}

func main() {
	for i := 0; i < 40; i++ {
		go func() {
			for {
				recurse(50 + rand.Intn(750))
			}
		}()
	}
	for i := 0; i < 16; i++ {
		go func(i int) {
			if i%4 == 0 {
				runtime.LockOSThread()
			}
			for {
				C.busy_spin(C.int(2000 + i))
			}
		}(i)
	}
	C.busy_start_cthreads(4)
	for i := 0; i < 300; i++ {
		go func() {
			for {
				time.Sleep(time.Duration(1+rand.Intn(20)) * time.Millisecond)
			}
		}()
	}
	for callbacks.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("READY pid=%d main_goid=1\n", os.Getpid())
	select {}
}
