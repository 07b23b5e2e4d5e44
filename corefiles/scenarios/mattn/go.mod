module mattn

go 1.21

require github.com/mattn/go-sqlite3 v1.14.16

// The generator points this at the binding as Debian packages it
// (golang-github-mattn-go-sqlite3-dev), built offline: see generate.py.
replace github.com/mattn/go-sqlite3 => ./go-sqlite3
