module airlock.example/sdk

go 1.24
