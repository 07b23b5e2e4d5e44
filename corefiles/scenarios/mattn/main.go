// mattn: a database/sql service over github.com/mattn/go-sqlite3 (the binding
// as Debian packages it; over Debian's libsqlite3, or with SQLite's
// amalgamation compiled in as the upstream binding builds it), stuck on
// SQLite's database locks:
//
//   - journal_writer holds a write transaction on journal.db (rollback
//     journal) while an application SQL function (RegisterFunc) sleeps in
//     Go: its thread is in sqlite3_step -> callbackTrampoline -> Go.
//   - journal_busy waits for journal.db in SQLite's busy handler
//     (_busy_timeout), and so does stale_busy, a locked goroutine that first
//     ran statements on the two writers' connections on its own thread (their
//     pointers may stay in its C frames' unused slots).
//   - wal_writer and wal_busy: the same on wal.db in WAL mode.
//   - open_tx leaves a write transaction open on left.db and parks in Go;
//     left_busy waits for it: no thread inside SQLite holds that lock.
//
// It prints "SCENARIO <name> tid=<tid> goid=<goid>" per role (tid 0: the
// goroutine is parked in Go, on no thread) and "HOLDER <waiter> <holder>"
// (holder "none": no thread holds it), "OBJECT pool kind=sqlpool addr=<*DB>
// holders=<goids> waiters=<goids>" for a database/sql pool whose connections
// goroutines in SQLite's busy handler hold, then READY. At SIGUSR1 it makes Go
// start threads (pthread_create, since cgo is linked): the generator's
// "starting" capture.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

var (
	printMu sync.Mutex
	asleep  = make(chan string, 8)
)

func record(name string, tid int) {
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Printf("SCENARIO %s tid=%d goid=%d\n", name, tid, goid())
}

// gosleep is the application SQL function: it records the thread it runs on
// (the thread inside sqlite3_step) and never returns.
func gosleep(role string) int64 {
	record(role, syscall.Gettid())
	asleep <- role
	select {}
}

func open(path, journal string) *sql.DB {
	dsn := fmt.Sprintf("file:%s?_busy_timeout=1000000000&_txlock=immediate&_journal_mode=%s", path, journal)
	db, err := sql.Open("sqlite3_cgocore", dsn)
	must(err)
	_, err = db.Exec("CREATE TABLE IF NOT EXISTS t(v)")
	must(err)
	return db
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mattn:", err)
		os.Exit(2)
	}
}

// writer holds a write transaction on conn while gosleep sleeps inside it.
func writer(role string, conn *sql.Conn) {
	tx, err := conn.BeginTx(context.Background(), nil)
	must(err)
	_, err = tx.Exec("INSERT INTO t VALUES (1)")
	must(err)
	_, err = tx.Exec("SELECT gosleep(?)", role)
	must(err)
}

// busy waits for db's write lock in SQLite's busy handler, on a locked
// thread whose id it records first.
func busy(role string, db *sql.DB) {
	runtime.LockOSThread()
	record(role, syscall.Gettid())
	_, err := db.Begin()
	must(err)
}

func main() {
	sql.Register("sqlite3_cgocore", &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error { return c.RegisterFunc("gosleep", gosleep, false) },
	})
	journal, wal, left := open("journal.db", "DELETE"), open("wal.db", "WAL"), open("left.db", "DELETE")
	ctx := context.Background()

	// The stale pointers: one locked thread runs statements on connections A
	// (journal.db) and B (wal.db), which then go to the writers.
	staleReady := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		a, err := journal.Conn(ctx)
		must(err)
		b, err := wal.Conn(ctx)
		must(err)
		for _, c := range []*sql.Conn{a, b} {
			var n int
			must(c.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n))
		}
		go writer("journal_writer", a)
		go writer("wal_writer", b)
		<-staleReady
		record("stale_busy", syscall.Gettid())
		_, err = journal.Begin()
		must(err)
	}()
	<-asleep
	<-asleep
	close(staleReady)

	// A transaction left open by a goroutine parked in Go.
	opened := make(chan struct{})
	go func() {
		tx, err := left.Begin()
		must(err)
		_, err = tx.Exec("INSERT INTO t VALUES (2)")
		must(err)
		record("open_tx", 0)
		close(opened)
		select {}
	}()
	<-opened

	go busy("journal_busy", journal)
	go busy("wal_busy", wal)
	go busy("left_busy", left)
	pool := poolBehind("journal.db")
	for _, h := range [][2]string{
		{"journal_busy", "journal_writer"}, {"stale_busy", "journal_writer"},
		{"wal_busy", "wal_writer"}, {"left_busy", "none"},
	} {
		fmt.Printf("HOLDER %s %s\n", h[0], h[1])
	}
	startThreadsOn(syscall.SIGUSR1)
	// Let every waiter reach the busy handler's sleep.
	time.Sleep(500 * time.Millisecond)
	printMu.Lock()
	pool.print()
	fmt.Printf("READY main_goid=%d\n", goid())
	printMu.Unlock()
	select {}
}

// startThreadsOn: at the signal, more goroutines block in system calls than
// there are idle threads, so Go starts new ones.
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

// sqlPool is the record of a database/sql pool of two connections
// (SetMaxOpenConns) on a database another connection holds: both are taken
// by goroutines whose BEGIN waits in C (SQLite's busy handler), and more
// callers wait in database/sql for a connection.
type sqlPool struct {
	db      *sql.DB
	mu      sync.Mutex
	holders []uint64
	waiters []uint64
}

func poolBehind(path string) *sqlPool {
	p := &sqlPool{db: open(path, "DELETE")}
	p.db.SetMaxOpenConns(2)
	note := func(list *[]uint64) {
		p.mu.Lock()
		*list = append(*list, goid())
		p.mu.Unlock()
	}
	for i := 0; i < 2; i++ {
		go func() {
			note(&p.holders)
			_, err := p.db.Begin()
			must(err)
		}()
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 20; i++ {
		go func() {
			note(&p.waiters)
			_, err := p.db.Exec("INSERT INTO t VALUES (3)")
			must(err)
		}()
	}
	return p
}

func (p *sqlPool) print() {
	ids := func(l []uint64) string {
		s := make([]string, len(l))
		for i, id := range l {
			s[i] = strconv.FormatUint(id, 10)
		}
		return strings.Join(s, ",")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("OBJECT pool kind=sqlpool addr=%p holders=%s waiters=%s\n", p.db, ids(p.holders), ids(p.waiters))
}
