//! Compiles `proto/sum.proto` without protoc (protox is a pure-Rust parser)
//! and keeps the encoded descriptor set for gRPC server reflection.

use prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/sum.proto");
    let fds = protox::compile(["sum.proto"], ["../proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // prost-build only writes the descriptor set itself when it runs protoc,
    // so write it here for tonic-reflection.
    std::fs::write(out_dir.join("sum_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
