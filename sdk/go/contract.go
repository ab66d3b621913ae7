package airlock

// ContractSHA256 is the SHA-256 (hex) of wit/policy.wit that this package's
// types and canonical-ABI glue were written against.
//
// When the WIT changes, update the types (types.go), the canonical-ABI glue
// (abi.go, component_wasm.go, host.go, testhost.go) and its tests
// (abi_test.go, wasm_test.go), then this constant and ContractPackage. A
// Rust test in the host compares it with the file, so a contract change
// cannot silently leave the Go SDK behind.
const ContractSHA256 = "d58dda2e954e6da992ee89fe2cce4c288e68144aa06faf4c9e600945008e50d8"

// ContractPackage is the WIT package the SDK implements.
const ContractPackage = "airlock:policy@0.2.0"
