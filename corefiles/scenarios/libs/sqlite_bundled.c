//go:build bundled_sqlite

// SQLite's amalgamation compiled into the program, with its DWARF, as
// github.com/mattn/go-sqlite3 does (the generator puts sqlite3.c on the
// include path).
#include "sqlite3.c"
