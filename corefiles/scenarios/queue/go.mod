module queue

go 1.21
