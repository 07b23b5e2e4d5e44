module busy

go 1.21
