package airlock

// ContractSHA256 is the SHA-256 (hex) of wit/policy.wit that this package's
// types and canonical-ABI glue were written against.
//
// When the WIT changes, update the types (types.go), the canonical-ABI glue
// (abi.go, component_wasm.go, host.go) and its layout test (abi_test.go),
// then this constant. A Rust
// test in the host compares it with the file, so a contract change cannot
// silently leave the Go SDK behind.
const ContractSHA256 = "df5c20977b6f0c36130ed4624550c914df32ca15fe70aa014cb2ca63e628667e"

// ContractPackage is the WIT package the SDK implements.
const ContractPackage = "airlock:policy@0.1.0"
