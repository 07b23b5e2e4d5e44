// A Go library built with -buildmode=c-shared and loaded by a C program
// (host.c): the Go runtime lives in libcgostuck.so, not in the executable.
// Two C threads call into Go: one locks its goroutine to the thread and blocks
// in C, one parks in Go. Each prints its thread and goroutine (the record the
// tests compare against: Go prints no dump in a c-shared library).
package main

// #include <unistd.h>
// static void block_in_c(void) { for (;;) pause(); }
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func goid() uint64 {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n
}

func report(name string) {
	fmt.Fprintf(os.Stdout, "SCENARIO %s tid=%d goid=%d\n", name, syscall.Gettid(), goid())
}

//export CgoLockedBlockInC
func CgoLockedBlockInC() {
	runtime.LockOSThread()
	report("cshared_locked_in_c")
	C.block_in_c()
}

//export CgoParkInGo
func CgoParkInGo() {
	report("cshared_parked_in_go")
	time.Sleep(1000 * time.Hour)
}

func main() {}
