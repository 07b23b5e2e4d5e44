// cgostuck is a cgo program that gets goroutines and threads stuck in every way
// cgocore must explain, prints which thread and goroutine each scenario runs on,
// prints READY, and waits to be dumped (SIGABRT with GOTRACEBACK=crash, or gcore
// followed by SIGQUIT).
package main

/*
#cgo LDFLAGS: -lpthread -lresolv -ldl
#include <stdlib.h>
#include "scenario.h"
*/
import "C"

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Fixed scenario slots; extra C-blocked goroutines use slots from firstExtra on.
const (
	slotReadPipe = iota
	slotCondWait
	slotMutexHolder
	slotMutexWaiter
	slotSleep
	slotAccept
	slotLockedInC
	slotLockedTwiceGo
	slotExtraParked
	slotExtraInC
	slotForeign
	slotCallback
	slotRwlockHolder
	slotRwlockWaiter
	slotSemWait
	slotWritePipe
	slotConnect
	slotRecv
	slotSend
	slotPoll
	slotDNS
	slotWaitChild
	slotFlockHolder
	slotFlockWaiter
	slotLoaderHolder
	slotLoaderWaiter
	slotStdioHolder
	slotStdioWaiter
	slotBusy
	slotSignalUnsafe
	slotDeadlockAB
	slotDeadlockBA
	slotMallocSelf
	slotSetenvSelf
	slotSetenvWaiter
	slotForkWedged
	slotArenaWaiter
	slotCudaUnlocked
	slotCudaLocked
	firstExtra
)

var names = map[int]string{
	slotReadPipe:      "read_pipe",
	slotCondWait:      "cond_wait",
	slotMutexHolder:   "mutex_holder",
	slotMutexWaiter:   "mutex_waiter",
	slotSleep:         "sleep",
	slotAccept:        "accept",
	slotLockedInC:     "locked_in_c",
	slotLockedTwiceGo: "locked_twice_go",
	slotExtraParked:   "extra_m_parked",
	slotExtraInC:      "extra_m_in_c",
	slotForeign:       "foreign_thread",
	slotCallback:      "callback",
	slotRwlockHolder:  "rwlock_holder",
	slotRwlockWaiter:  "rwlock_waiter",
	slotSemWait:       "sem_wait",
	slotWritePipe:     "write_pipe",
	slotConnect:       "connect",
	slotRecv:          "recv",
	slotSend:          "send",
	slotPoll:          "poll",
	slotDNS:           "dns",
	slotWaitChild:     "wait_child",
	slotFlockHolder:   "flock_holder",
	slotFlockWaiter:   "flock_waiter",
	slotLoaderHolder:  "loader_holder",
	slotLoaderWaiter:  "loader_waiter",
	slotStdioHolder:   "stdio_holder",
	slotStdioWaiter:   "stdio_waiter",
	slotBusy:          "busy",
	slotSignalUnsafe:  "signal_unsafe",
	slotDeadlockAB:    "deadlock_ab",
	slotDeadlockBA:    "deadlock_ba",
	slotMallocSelf:    "malloc_self",
	slotSetenvSelf:    "setenv_self",
	slotSetenvWaiter:  "setenv_waiter",
	slotForkWedged:    "fork_wedged",
	slotArenaWaiter:   "arena_waiter",
	slotCudaUnlocked:  "cuda_unlocked",
	slotCudaLocked:    "cuda_locked",
}

// Under a debugger (the gdb and lldb tests of a live process), which stops
// here with SIGTRAP when every scenario is in place.
var underDebugger = os.Getenv("CGOSTUCK_TRAP") != ""

var (
	goids   sync.Map // slot -> goid
	goReady atomic.Int32
	never   = make(chan int) // nobody ever sends: receivers park forever
	nobody  = make(chan int) // nobody ever receives: senders park forever
)

func goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

func record(slot int) { goids.Store(slot, goid()) }

//export goCallbackBlock
func goCallbackBlock(slot C.int) {
	record(int(slot))
	<-never
}

//export goParkForever
func goParkForever(slot C.int) {
	record(int(slot))
	<-never
}

//export goPing
func goPing(slot C.int) {
	record(int(slot))
}

func inC(slot int, locked bool, f func(C.int)) {
	go func() {
		if locked {
			runtime.LockOSThread()
		}
		record(slot)
		f(C.int(slot))
	}()
}

func lockedTwiceParked() {
	runtime.LockOSThread()
	runtime.LockOSThread()
	record(slotLockedTwiceGo)
	C.scenario_mark(C.int(slotLockedTwiceGo))
	<-never
}

// parked starts n goroutines parked in Go in a mix of ways.
func parked(n int) {
	var mu sync.Mutex
	var rw sync.RWMutex
	var wg sync.WaitGroup
	cond := sync.NewCond(&sync.Mutex{})
	mu.Lock()
	rw.Lock()
	wg.Add(1)
	for i := 0; i < n; i++ {
		switch i % 8 {
		case 0:
			go func() { <-never }()
		case 1:
			go func() { nobody <- 1 }()
		case 2:
			go func() { mu.Lock() }()
		case 3:
			go func() {
				select {
				case <-never:
				case nobody <- 2:
				}
			}()
		case 4:
			go func() { time.Sleep(time.Hour) }()
		case 5:
			go func() { wg.Wait() }()
		case 6:
			go func() { rw.RLock() }()
		case 7:
			go func() { cond.L.Lock(); cond.Wait() }()
		}
	}
}

// exitLocked runs a goroutine that exits while locked to its thread: Go ends
// that thread (sched.nmfreed counts it).
func exitLocked() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
	}()
	<-done
}

// waitUntil polls a C readiness flag: a lock holder must hold before its waiter starts.
func waitUntil(ready func() C.int) {
	for ready() == 0 {
		time.Sleep(time.Millisecond)
	}
}

// classes starts one goroutine blocked in C per kind of blocking call.
// glibc is false under musl: its scenarios that wedge glibc's own locks are
// left out (glibcOnly).
var glibc = C.scenario_glibc() != 0

var glibcOnly = map[int]bool{
	slotDNS: true, slotLoaderHolder: true, slotLoaderWaiter: true,
	slotMallocSelf: true, slotSetenvSelf: true, slotSetenvWaiter: true,
}

func classes() {
	inC(slotRwlockHolder, false, func(s C.int) { C.hold_rwlock_then_sleep(s) })
	waitUntil(func() C.int { return C.rwlock_ready() })
	inC(slotRwlockWaiter, false, func(s C.int) { C.block_rwlock(s) })
	inC(slotSemWait, false, func(s C.int) { C.block_sem(s) })
	inC(slotWritePipe, false, func(s C.int) { C.block_write(s) })
	inC(slotConnect, false, func(s C.int) { C.block_connect(s) })
	inC(slotRecv, false, func(s C.int) { C.block_recv(s) })
	inC(slotSend, false, func(s C.int) { C.block_send(s) })
	inC(slotPoll, false, func(s C.int) { C.block_poll(s) })
	if glibc {
		inC(slotDNS, false, func(s C.int) { C.block_dns(s) })
	}
	inC(slotWaitChild, false, func(s C.int) { C.block_wait_child(s) })
	inC(slotFlockHolder, false, func(s C.int) { C.hold_flock_then_sleep(s) })
	waitUntil(func() C.int { return C.flock_holder_ready() })
	inC(slotFlockWaiter, false, func(s C.int) { C.block_flock(s) })
	if glibc {
		inC(slotLoaderHolder, false, func(s C.int) { C.hold_loader_then_sleep(s) })
		waitUntil(func() C.int { return C.loader_holder_ready() })
		inC(slotLoaderWaiter, false, func(s C.int) { C.block_loader(s) })
	}
	inC(slotStdioHolder, false, func(s C.int) { C.hold_stdio_then_sleep(s) })
	waitUntil(func() C.int { return C.stdio_holder_ready() })
	inC(slotStdioWaiter, false, func(s C.int) { C.block_stdio(s) })
	inC(slotBusy, false, func(s C.int) { C.busy_in_c(s) })
	inC(slotSignalUnsafe, true, func(s C.int) { C.block_in_signal_handler(s) })
	inC(slotDeadlockAB, false, func(s C.int) { C.deadlock_ab(s) })
	inC(slotDeadlockBA, false, func(s C.int) { C.deadlock_ba(s) })
	// C library locks wedged by a handler on their holder's own thread: the
	// arena lock (no waiter can be aimed at one arena) and the environment
	// lock, with a goroutine waiting for it in setenv.
	// fork() takes every malloc arena lock: a scenario still to fork when an
	// arena wedges would hang in __malloc_fork_lock_parent (seen under load).
	if !glibc {
		return
	}
	before := []int{}
	for s := 0; s < slotMallocSelf; s++ {
		before = append(before, s)
	}
	waitFor(before)
	C.start_malloc_self_deadlock(C.int(slotMallocSelf))
	C.start_setenv_self_deadlock(C.int(slotSetenvSelf))
	inC(slotSetenvWaiter, false, func(s C.int) { C.block_setenv(s) })
}

func waitFor(slots []int) {
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range slots {
		for C.scenario_tid(C.int(s)) == 0 {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "scenario slot %d never started\n", s)
				os.Exit(3)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func main() {
	nParked := flag.Int("parked", 40, "ordinary goroutines parked in Go")
	nCBlocked := flag.Int("cblocked", 0, "extra goroutines blocked in C sleep (every tenth locked)")
	cudaLib := flag.String("cuda", "", "a CUDA driver library to call (cuCtxSynchronize) from a locked and an unlocked goroutine")
	noArena := flag.Bool("no-arena", false, "leave out the fork that wedges on a malloc arena and the thread that waits for it: they need an arena no other thread uses, which a thousand threads do not leave (the benchmark's scale programs)")
	flag.Parse()
	if firstExtra+*nCBlocked > C.SC_MAX {
		fmt.Fprintln(os.Stderr, "too many -cblocked")
		os.Exit(2)
	}

	// Loaded first: a scenario below holds the loader lock for good.
	if *cudaLib != "" {
		path := C.CString(*cudaLib)
		if C.cuda_open(path) == 0 {
			fmt.Fprintf(os.Stderr, "cannot load the CUDA library %s\n", *cudaLib)
			os.Exit(2)
		}
		C.free(unsafe.Pointer(path))
	}

	inC(slotReadPipe, false, func(s C.int) { C.block_read(s) })
	inC(slotCondWait, false, func(s C.int) { C.block_cond(s) })
	inC(slotMutexHolder, false, func(s C.int) { C.hold_mutex_then_sleep(s) })
	for C.holder_ready() == 0 {
		time.Sleep(time.Millisecond)
	}
	inC(slotMutexWaiter, false, func(s C.int) { C.block_mutex(s) })
	inC(slotSleep, false, func(s C.int) { C.block_sleep(s) })
	inC(slotAccept, false, func(s C.int) { C.block_accept(s) })
	inC(slotLockedInC, true, func(s C.int) { C.block_pause(s) })
	go lockedTwiceParked()
	C.start_extra_parked(C.int(slotExtraParked))
	C.start_extra_in_c(C.int(slotExtraInC))
	C.start_foreign(C.int(slotForeign))
	inC(slotCallback, false, func(s C.int) { C.call_back_into_go(s) })
	exitLocked()
	classes()
	parked(*nParked)

	all := []int{}
	for s := 0; s < firstExtra; s++ {
		if s != slotCudaUnlocked && s != slotCudaLocked && s != slotForkWedged && s != slotArenaWaiter &&
			(glibc || !glibcOnly[s]) {
			all = append(all, s)
		}
	}
	if *cudaLib != "" {
		inC(slotCudaUnlocked, false, func(s C.int) { C.block_cuda(s) })
		inC(slotCudaLocked, true, func(s C.int) { C.block_cuda(s) })
		all = append(all, slotCudaUnlocked, slotCudaLocked)
	}
	for i := 0; i < *nCBlocked; i++ {
		s := firstExtra + i
		names[s] = fmt.Sprintf("cblocked_%d", i)
		inC(s, i%10 == 0, func(s C.int) { C.block_sleep(s) })
		all = append(all, s)
	}
	waitFor(all)
	// Give every thread time to enter its blocking call after marking its slot.
	time.Sleep(300 * time.Millisecond)
	for _, s := range all {
		id, _ := goids.Load(s)
		if id == nil {
			id = uint64(0)
		}
		fmt.Printf("SCENARIO %s tid=%d goid=%d\n", names[s], C.scenario_tid(C.int(s)), id)
	}
	if !glibc {
		// musl: no arena to wedge.
		*noArena = true
	}
	if !underDebugger && !*noArena {
		// Last: most allocations hang after it; it prints READY itself.
		C.fork_wedge_then_ready(C.int(slotForkWedged), C.int(slotArenaWaiter),
			C.long(syscall.Getpid()), C.long(goid()))
	}
	if underDebugger || *noArena {
		fmt.Printf("READY pid=%d main_goid=%d\n", syscall.Getpid(), goid())
	}
	if underDebugger {
		// Under a debugger: stop here, every scenario in place (the tests of
		// the gdb and lldb commands on a live process).
		syscall.Kill(syscall.Getpid(), syscall.SIGTRAP)
	}
	select {}
}

// The live tests' thread that will not stop (CGOSTUCK_VFORK=1): a C call
// parked in a vfork whose child never execs, printed as the scenario
// vfork_stuck (its child's pid as vfork_child).
func init() {
	if os.Getenv("CGOSTUCK_VFORK") == "" {
		return
	}
	id := make(chan uint64)
	go func() {
		id <- goid()
		C.block_in_vfork()
	}()
	g := <-id
	for C.vfork_stuck_child() == 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("SCENARIO vfork_stuck tid=%d goid=%d\n", C.vfork_stuck_tid(), g)
	fmt.Printf("SCENARIO vfork_child tid=%d goid=0\n", C.vfork_stuck_child())
}

// The live tests' climbing thread count (CGOSTUCK_CLIMB=FILE): every 200 ms
// one more goroutine enters a C call that never returns (a thread each); FILE
// holds how many have, the program's own record.
func init() {
	record := os.Getenv("CGOSTUCK_CLIMB")
	if record == "" {
		return
	}
	go func() {
		for n := 1; ; n++ {
			go func() { C.climb_sleep() }()
			os.WriteFile(record+".tmp", []byte(strconv.Itoa(n)), 0o644)
			os.Rename(record+".tmp", record)
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

// The crash at the thread limit (CGOSTUCK_EXHAUST=1): goroutines enter a C
// call that never returns, each holding a thread, until Go aborts with
// "program exceeds 10000-thread limit" (a kernel core with GOTRACEBACK=crash).
func init() {
	if os.Getenv("CGOSTUCK_EXHAUST") == "" {
		return
	}
	go func() {
		for {
			go func() { C.climb_sleep() }()
			time.Sleep(50 * time.Microsecond)
		}
	}()
}
