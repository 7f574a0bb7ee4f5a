//! Generates the router's gRPC client and server code from the repository's
//! `proto/` (the router's wire contract). Needs `protoc` on the PATH (or `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../../proto/common.proto", "../../proto/router.proto", "../../proto/registry.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["../../proto"])?;
    Ok(())
}
