// queue: a few goroutines block in C while many more queue behind them in Go,
// the way a service's requests pile up: on a mutex a method holds across a
// cgo call, on a package-level mutex held the same way, on a buffered
// channel used as a semaphore whose slots goroutines in C hold, on an
// RWMutex whose readers are in C (a writer and later readers queued), in
// WaitGroup.Wait for workers in C, on sync.Cond, and a two-step chain
// (producers on a channel whose one consumer waits for a mutex held in C).
//
// It prints one record per object, "OBJECT <name> kind=<k> addr=<hex>
// holders=<goids> waiters=<goids>", then READY. Addresses are those of the
// sync value or the channel itself.
package main

/*
#include <unistd.h>
// Blocks for good: the goroutine that calls it stays in C.
static void c_block(void) { for (;;) pause(); }
static void c_wait_io(int fd) { char b; for (;;) read(fd, &b, 1); }
*/
import "C"

import (
	"bytes"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
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

// The record: who holds and who waits on each object, by goroutine id.
type object struct {
	kind    string
	addr    uintptr
	holders []uint64
	waiters []uint64
}

var (
	recordMu sync.Mutex
	objects  = map[string]*object{}
	order    []string
)

func declare(name, kind string, addr unsafe.Pointer) {
	recordMu.Lock()
	defer recordMu.Unlock()
	objects[name] = &object{kind: kind, addr: uintptr(addr)}
	order = append(order, name)
}

func holds(name string) { note(name, true) }
func waits(name string) { note(name, false) }
func note(name string, holder bool) {
	id := goid()
	recordMu.Lock()
	defer recordMu.Unlock()
	o := objects[name]
	if o == nil {
		return // the benchmark's objects are not recorded
	}
	if holder {
		o.holders = append(o.holders, id)
	} else {
		o.waiters = append(o.waiters, id)
	}
}

// A method holds its receiver's mutex across a blocking cgo call; the
// other method's callers queue. The mutex is not the first field.
type Store struct {
	name string
	n    int
	mu   sync.Mutex
	data map[string]string
}

func (s *Store) Save() {
	s.mu.Lock()
	holds("store")
	C.c_block()
	s.n++
	s.mu.Unlock()
}

func (s *Store) Get(k string) string {
	waits("store")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[k]
}

// A package-level mutex held across a cgo call in a handler: the first
// caller is in C, the rest wait at the Lock a line above.
var configMu sync.Mutex

func handle(fd C.int) {
	configMu.Lock()
	C.c_wait_io(fd)
	configMu.Unlock()
}

// A buffered channel as a semaphore: its slots are held by workers in C.
func worker(sem chan struct{}) {
	sem <- struct{}{}
	C.c_block()
	<-sem
}

type Cache struct {
	hits int
	rw   sync.RWMutex
}

func (c *Cache) read() {
	c.rw.RLock()
	holds("cache")
	C.c_block()
	c.rw.RUnlock()
}

func (c *Cache) lateRead() {
	waits("cache")
	c.rw.RLock()
	c.rw.RUnlock()
}

func (c *Cache) write() {
	waits("cache")
	c.rw.Lock()
	c.hits = 0
	c.rw.Unlock()
}

// Two steps: producers wait to send to the consumer, which waits for a
// mutex a goroutine in C holds.
type Ledger struct {
	mu    sync.Mutex
	total int
}

func (l *Ledger) post() {
	l.mu.Lock()
	holds("ledger")
	C.c_block()
	l.mu.Unlock()
}

func consume(jobs chan int, l *Ledger) {
	waits("ledger")
	l.mu.Lock()
	for j := range jobs {
		l.total += j
	}
	l.mu.Unlock()
}

// The most common shape: Lock, defer Unlock, then the cgo call (the
// receiver reaches the holder's frame only through the defer's closure).
type Pool struct {
	size int
	mu   sync.Mutex
}

func (p *Pool) Exec() {
	p.mu.Lock()
	defer p.mu.Unlock()
	holds("pool")
	C.c_block()
}

func (p *Pool) Stats() int {
	waits("pool")
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// A database/sql driver whose statements block in C: two connections (the
// pool's maximum) are in C, the other callers wait for one in database/sql.
type cDriver struct{}
type cConn struct{}
type cStmt struct{}

func (cDriver) Open(string) (driver.Conn, error)         { return &cConn{}, nil }
func (*cConn) Prepare(string) (driver.Stmt, error)       { return &cStmt{}, nil }
func (*cConn) Close() error                              { return nil }
func (*cConn) Begin() (driver.Tx, error)                 { return nil, errors.New("no transactions") }
func (*cStmt) Close() error                              { return nil }
func (*cStmt) NumInput() int                             { return -1 }
func (*cStmt) Query([]driver.Value) (driver.Rows, error) { return nil, errors.New("no rows") }
func (*cStmt) Exec([]driver.Value) (driver.Result, error) {
	C.c_block()
	return driver.RowsAffected(0), nil
}

func settle() { time.Sleep(150 * time.Millisecond) }

// scale is the benchmark's program: n mutexes, each held by a goroutine in
// C, each with w goroutines waiting.
func scale(n, w int) {
	held := make(chan struct{})
	for i := 0; i < n; i++ {
		s := &Store{name: "shard", data: map[string]string{}}
		go func() {
			s.mu.Lock()
			held <- struct{}{}
			C.c_block()
			s.mu.Unlock()
		}()
		<-held
		for j := 0; j < w; j++ {
			go s.Get("k")
		}
	}
	for runtime.NumGoroutine() < n*(w+1) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	fmt.Printf("READY main_goid=%d\n", goid())
	select {}
}

func main() {
	nObjects := flag.Int("objects", 0, "benchmark: this many mutexes, each held by a goroutine in C")
	nWaiters := flag.Int("waiters", 0, "benchmark: goroutines waiting on each of them")
	flag.Parse()
	if *nObjects > 0 {
		scale(*nObjects, *nWaiters)
	}
	store := &Store{name: "orders", data: map[string]string{}}
	declare("store", "mutex", unsafe.Pointer(&store.mu))
	go store.Save()
	settle()
	for i := 0; i < 200; i++ {
		go store.Get("k")
	}

	declare("config", "mutex", unsafe.Pointer(&configMu))
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	fd := C.int(r.Fd())
	first := make(chan uint64)
	go func() { first <- goid(); handle(fd) }()
	recordMu.Lock()
	objects["config"].holders = append(objects["config"].holders, <-first)
	recordMu.Unlock()
	settle()
	for i := 0; i < 20; i++ {
		go func() { waits("config"); handle(fd) }()
	}

	sem := make(chan struct{}, 2)
	declare("sem", "chan", *(*unsafe.Pointer)(unsafe.Pointer(&sem)))
	for i := 0; i < 2; i++ {
		go func() { holds("sem"); worker(sem) }()
	}
	settle()
	for i := 0; i < 50; i++ {
		go func() { waits("sem"); worker(sem) }()
	}

	cache := &Cache{}
	declare("cache", "rwmutex", unsafe.Pointer(&cache.rw))
	for i := 0; i < 2; i++ {
		go cache.read()
	}
	settle()
	go cache.write()
	settle()
	for i := 0; i < 5; i++ {
		go cache.lateRead()
	}

	var wg sync.WaitGroup
	declare("wg", "waitgroup", unsafe.Pointer(&wg))
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); holds("wg"); C.c_block() }()
	}
	go func() { waits("wg"); wg.Wait() }()

	var condMu sync.Mutex
	cond := sync.NewCond(&condMu)
	declare("cond", "cond", unsafe.Pointer(cond))
	ready := false
	for i := 0; i < 3; i++ {
		go func() {
			waits("cond")
			condMu.Lock()
			for !ready {
				cond.Wait()
			}
			condMu.Unlock()
		}()
	}

	ledger := &Ledger{}
	declare("ledger", "mutex", unsafe.Pointer(&ledger.mu))
	go ledger.post()
	settle()
	jobs := make(chan int)
	declare("jobs", "chan", *(*unsafe.Pointer)(unsafe.Pointer(&jobs)))
	go func() { holds("jobs"); consume(jobs, ledger) }()
	for i := 0; i < 10; i++ {
		go func(i int) { waits("jobs"); jobs <- i }(i)
	}

	pool := &Pool{size: 4}
	declare("pool", "mutex", unsafe.Pointer(&pool.mu))
	go pool.Exec()
	settle()
	for i := 0; i < 30; i++ {
		go pool.Stats()
	}

	sql.Register("cblock", cDriver{})
	db, err := sql.Open("cblock", "")
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(2)
	declare("sqldb", "sqlpool", unsafe.Pointer(db))
	for i := 0; i < 2; i++ {
		go func() { holds("sqldb"); db.Exec("UPDATE slow") }()
	}
	settle()
	for i := 0; i < 20; i++ {
		go func() { waits("sqldb"); db.Exec("SELECT 1") }()
	}

	time.Sleep(500 * time.Millisecond)
	recordMu.Lock()
	for _, name := range order {
		o := objects[name]
		fmt.Printf("OBJECT %s kind=%s addr=%#x holders=%s waiters=%s\n", name, o.kind, o.addr, ids(o.holders), ids(o.waiters))
	}
	recordMu.Unlock()
	fmt.Printf("READY main_goid=%d\n", goid())
	runtime.KeepAlive(store)
	runtime.KeepAlive(cache)
	runtime.KeepAlive(w)
	runtime.KeepAlive(db)
	select {}
}

func ids(v []uint64) string {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

// The live tests' collections (QUEUE_GC=1): a garbage collection every
// 100 ms, so the runtime records how long each blocked goroutine has waited
// (g.waitsince is set by a collection that sees the goroutine blocked).
func init() {
	if os.Getenv("QUEUE_GC") == "" {
		return
	}
	go func() {
		for {
			runtime.GC()
			time.Sleep(100 * time.Millisecond)
		}
	}()
}
