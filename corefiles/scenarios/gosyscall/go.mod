module gosyscall

go 1.21
