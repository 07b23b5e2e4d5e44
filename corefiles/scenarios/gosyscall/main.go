// gosyscall: goroutines blocked in system calls made from Go itself (no cgo):
// raw syscall.Read on a pipe (one of them locked to its thread), Flock on a
// file another descriptor holds, Accept on a blocking socket, Nanosleep and
// Wait4 on a child that never exits. Built with CGO_ENABLED=0 (a static
// binary) and with cgo. It prints "SCENARIO <name> tid=0 goid=<goid>" per
// goroutine (the thread is the one whose M runs that goroutine), then READY.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

var (
	mu    sync.Mutex
	goids = map[string]uint64{}
	wg    sync.WaitGroup
)

// blocked runs f on a new goroutine after recording its id under name.
func blocked(name string, locked bool, f func()) {
	wg.Add(1)
	go func() {
		if locked {
			runtime.LockOSThread()
		}
		mu.Lock()
		goids[name] = goid()
		mu.Unlock()
		wg.Done()
		f()
	}()
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func main() {
	var p1, p2 [2]int
	must(syscall.Pipe(p1[:]))
	must(syscall.Pipe(p2[:]))
	blocked("go_read", false, func() {
		buf := make([]byte, 1)
		syscall.Read(p1[0], buf)
	})
	blocked("go_read_locked", true, func() {
		buf := make([]byte, 1)
		syscall.Read(p2[0], buf)
	})

	path := fmt.Sprintf("%s/gosyscall-%d.lock", os.TempDir(), os.Getpid())
	holder, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT, 0o600)
	must(err)
	must(syscall.Flock(holder, syscall.LOCK_EX))
	waiter, err := syscall.Open(path, syscall.O_RDWR, 0)
	must(err)
	syscall.Unlink(path)
	blocked("go_flock", false, func() { syscall.Flock(waiter, syscall.LOCK_EX) })

	ln, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	must(err)
	must(syscall.Bind(ln, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	must(syscall.Listen(ln, 1))
	blocked("go_accept", false, func() { syscall.Accept(ln) })

	blocked("go_nanosleep", false, func() {
		ts := syscall.NsecToTimespec(int64(100000 * time.Second))
		syscall.Nanosleep(&ts, nil)
	})

	child, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "100000"}, &syscall.ProcAttr{
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	must(err)
	blocked("go_wait4", false, func() {
		var ws syscall.WaitStatus
		syscall.Wait4(child, &ws, 0, nil)
	})

	wg.Wait()
	startThreadsOn(syscall.SIGUSR1)
	// Let every goroutine enter its system call.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	for _, name := range []string{"go_read", "go_read_locked", "go_flock", "go_accept", "go_nanosleep", "go_wait4"} {
		fmt.Printf("SCENARIO %s tid=0 goid=%d\n", name, goids[name])
	}
	mu.Unlock()
	fmt.Printf("READY pid=%d main_goid=%d\n", os.Getpid(), goid())
	select {}
}

// startThreadsOn: at the signal (the generator's "starting" capture, made
// under gdb), more goroutines block in system calls than there are idle
// threads, so Go starts new ones (pthread_create with cgo, its own clone
// without).
func startThreadsOn(sig os.Signal) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	go func() {
		<-c
		for i := 0; i < 8; i++ {
			var p [2]int
			must(syscall.Pipe(p[:]))
			go func() {
				buf := make([]byte, 1)
				syscall.Read(p[0], buf)
			}()
		}
	}()
}
