//! Airlock's one change to etcd-client 0.21.1: the protocol files are
//! compiled by protox, a protobuf compiler written in Rust, instead of a
//! `protoc` found on the machine, so building Airlock needs nothing but
//! cargo (see `vendor/README.md`). The generated code is byte for byte
//! the same.

#[cfg(feature = "build-server")]
fn should_build_server() -> bool {
    true
}

#[cfg(not(feature = "build-server"))]
fn should_build_server() -> bool {
    false
}

fn main() {
    let proto_root = "proto";
    println!("cargo:rerun-if-changed={proto_root}");

    let descriptors = protox::compile(
        [
            "proto/etcd/api/authpb/auth.proto",
            "proto/etcd/api/etcdserverpb/rpc.proto",
            "proto/etcd/api/mvccpb/kv.proto",
            "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
            "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
        ],
        [proto_root],
    )
    .expect("Failed to parse proto files");
    // `compile_protos` adds this attribute itself; `compile_fds` does not.
    tonic_prost_build::configure()
        .build_server(should_build_server())
        .type_attribute(".", "#[allow(clippy::all)]")
        .compile_fds(descriptors)
        .expect("Failed to compile proto files");
}
