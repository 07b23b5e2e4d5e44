// libs: goroutines and threads stuck inside real third-party C libraries
// (libsqlite3, libssl, libcurl, libuv from Debian), loopback only. It prints
// "SCENARIO <name> tid=<tid> goid=<goid>" per scenario, then READY.
package main

/*
#cgo LDFLAGS: -lssl -lcrypto -lcurl -luv -lpthread
#include <stdlib.h>
#include "libs.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

var goids sync.Map

//export goUvCallback
func goUvCallback(slot C.int) {
	goids.Store(int(slot), goid())
	C.mark_uv(slot)
	select {}
}

func inC(slot int, f func(C.int)) {
	go func() {
		goids.Store(slot, goid())
		f(C.int(slot))
	}()
}

func waitReady(slot int) {
	deadline := time.Now().Add(20 * time.Second)
	for C.slot_ready(C.int(slot)) == 0 {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "slot %d never started\n", slot)
			os.Exit(3)
		}
		time.Sleep(time.Millisecond)
	}
}

func main() {
	dir := C.CString(os.TempDir())
	defer C.free(unsafe.Pointer(dir))
	if C.setup(dir) == 0 {
		fmt.Fprintln(os.Stderr, "setup failed")
		os.Exit(2)
	}
	names := map[int]string{
		C.S_SQLITE_WRITER: "sqlite_writer", C.S_SQLITE_BUSY: "sqlite_busy", C.S_TLS_HANDSHAKE: "tls_handshake",
		C.S_TLS_SERVER: "tls_server_main", C.S_CURL_CONNECTING: "curl_connecting",
		C.S_CURL_WAITING: "curl_waiting", C.S_UV_CALLBACK: "uv_callback", C.S_SILENT_SERVER: "silent_server",
		C.S_BOUNDARY_HOLDER: "boundary_holder", C.S_BOUNDARY_WAITER: "boundary_waiter",
		C.S_BOUNDARY_FOREIGN: "boundary_foreign", C.S_SQLITE_READER: "sqlite_reader",
	}
	inC(C.S_SQLITE_READER, func(s C.int) { C.sqlite_reader(s) })
	waitReady(C.S_SQLITE_READER)
	inC(C.S_SQLITE_WRITER, func(s C.int) { C.sqlite_writer(s) })
	waitReady(C.S_SQLITE_WRITER)
	inC(C.S_SQLITE_BUSY, func(s C.int) { C.sqlite_busy_waiter(s) })
	inC(C.S_TLS_HANDSHAKE, func(s C.int) { C.tls_handshake(s) })
	C.start_tls_server(C.S_TLS_SERVER)
	inC(C.S_CURL_CONNECTING, func(s C.int) { C.curl_connecting(s) })
	inC(C.S_CURL_WAITING, func(s C.int) { C.curl_waiting(s) })
	inC(C.S_UV_CALLBACK, func(s C.int) { C.uv_loop_callback(s) })
	// The boundary deadlock: the locked holder parks in Go holding the C mutex.
	never := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		goids.Store(int(C.S_BOUNDARY_HOLDER), goid())
		C.boundary_take(C.S_BOUNDARY_HOLDER)
		<-never
	}()
	waitReady(C.S_BOUNDARY_HOLDER)
	inC(C.S_BOUNDARY_WAITER, func(s C.int) { C.boundary_wait(s) })
	C.start_boundary_foreign(C.S_BOUNDARY_FOREIGN)
	for s := 0; s < C.S_NSLOTS; s++ {
		waitReady(s)
	}
	// Let every thread enter its blocking call.
	time.Sleep(500 * time.Millisecond)
	for s := 0; s < C.S_NSLOTS; s++ {
		id, _ := goids.Load(s)
		if id == nil || s == C.S_TLS_SERVER || s == C.S_SILENT_SERVER || s == C.S_BOUNDARY_FOREIGN {
			id = uint64(0)
		}
		fmt.Printf("SCENARIO %s tid=%d goid=%d\n", names[s], C.slot_tid(C.int(s)), id)
	}
	fmt.Printf("READY pid=%d main_goid=%d\n", os.Getpid(), goid())
	select {}
}
