module libs

go 1.21
