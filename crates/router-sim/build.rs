//! Generates the simulator's own Raft transport (`proto/sim_raft.proto`, not
//! part of the router's contract). Needs `protoc` on the PATH (or `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sim_raft.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/sim_raft.proto"], &["proto"])?;
    Ok(())
}
