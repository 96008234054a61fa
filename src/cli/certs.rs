//! `ringraft certs`: a CA and certificates for a cluster's members and a client, for a test
//! or a first secure setup (a production cluster may use any CA whose member certificates name
//! `node-<id>.ringraft`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::tls::{generate_cluster_certs, CertValidity};
use crate::types::NodeId;

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write the PEM files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Members to certify: node ids 1..=N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub nodes: u64,
    /// Host names and IP addresses every member certificate is also valid for (so that stock
    /// clients such as redis-cli can check a node by the address they dial).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    pub hosts: Vec<String>,
    /// Days the certificates stay valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub days: u64,
}

pub fn run_certs(args: &CertsArgs) -> ExitCode {
    let nodes: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
    match generate_cluster_certs(
        &args.out,
        &nodes,
        &args.hosts,
        CertValidity::days_from_now(args.days),
    ) {
        Ok(certs) => {
            println!(
                "wrote ca.pem, ca-key.pem, node-N.pem and node-N-key.pem for nodes 1 to {}, \
                 client.pem and client-key.pem in {}",
                args.nodes,
                certs.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ringraft certs: {error}");
            ExitCode::FAILURE
        }
    }
}
