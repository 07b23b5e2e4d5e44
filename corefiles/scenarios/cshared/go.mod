module cshared

go 1.21
