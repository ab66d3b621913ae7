module airlock.example/policies/business-hours-go

go 1.24

require airlock.example/sdk v0.0.0

replace airlock.example/sdk => ../../sdk/go
