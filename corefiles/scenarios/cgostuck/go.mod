module cgostuck

go 1.21
