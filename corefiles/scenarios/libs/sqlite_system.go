//go:build !bundled_sqlite

package main

// Debian's shared libsqlite3 (only its exported symbols here).

// #cgo LDFLAGS: -lsqlite3
import "C"
