//! A replicated counter served over TCP: a small service that embeds ringraft as its
//! replication layer and speaks a line protocol of its own ([`protocol`]).
//!
//! Each process runs one member. Three members on one machine:
//!
//! ```text
//! PEERS=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
//! cargo run --release --example counter_service -- --id 1 --listen 127.0.0.1:7101 \
//!     --peers $PEERS --serve 127.0.0.1:7201 --data-dir /tmp/counter/1 --init
//! # likewise --id 2 (7102, 7202) and --id 3 (7103, 7203), then:
//! printf 'INCR 5\nGET\nSTATUS\n' | nc 127.0.0.1 7201   # or the leader REDIRECT names
//! ```
//!
//! A fourth member starts with `--init --join` (a new data directory; its `--peers` lists itself
//! and the members), and is
//! added through the leader: `ADD-LEARNER 4 127.0.0.1:7104`, then `PROMOTE 4`. `REMOVE 3`
//! takes a member out; `SNAPSHOT` snapshots the count and compacts the log behind it. A member
//! restarted without `--init` recovers the count from its snapshot and log.
//!
//! Modules: [`counter`] is the state machine, [`protocol`] the request and reply lines,
//! [`service`] the node and the TCP server that connects the two.

mod counter;
mod protocol;
mod service;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use ringraft::api::PeerConfig;
use ringraft::types::NodeId;

use service::CounterService;

const USAGE: &str = "usage: counter_service --id N --listen ADDR --peers ID=ADDR,... \
                     --serve ADDR --data-dir DIR [--init] [--join]";

/// The command line of one member.
struct Args {
    id: NodeId,
    listen: SocketAddr,
    peers: Vec<PeerConfig>,
    serve: SocketAddr,
    data_dir: PathBuf,
    init: bool,
    join: bool,
}

fn main() -> ExitCode {
    if std::env::args().any(|word| word == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("counter_service: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(args.serve) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("counter_service: --serve {}: {error}", args.serve);
            return ExitCode::FAILURE;
        }
    };
    let mut config = service::node_config(args.id, args.listen, args.peers, args.data_dir);
    config.init = args.init;
    config.join = args.join;
    match CounterService::start(config, listener) {
        Ok(service) => {
            println!("member {} serving on {}", args.id.0, service.addr());
            // Runs until the node stops; stop it with Ctrl-C (every answered increment is on
            // disk, so nothing acknowledged is lost).
            while service.is_serving() {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            match service.shutdown() {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("counter_service: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("counter_service: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut id, mut listen, mut peers, mut serve, mut data_dir) = (None, None, None, None, None);
    let (mut init, mut join) = (false, false);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => id = Some(NodeId(value()?.parse().map_err(|_| "--id: not a number")?)),
            "--listen" => listen = Some(address("--listen", &value()?)?),
            "--peers" => peers = Some(parse_peers(&value()?)?),
            "--serve" => serve = Some(address("--serve", &value()?)?),
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--init" => init = true,
            "--join" => join = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        id: id.ok_or("--id is required")?,
        listen: listen.ok_or("--listen is required")?,
        peers: peers.ok_or("--peers is required")?,
        serve: serve.ok_or("--serve is required")?,
        data_dir: data_dir.ok_or("--data-dir is required")?,
        init,
        join,
    })
}

fn address(flag: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not an IP address and port"))
}

/// `ID=ADDR,...`: every member's peer address.
fn parse_peers(list: &str) -> Result<Vec<PeerConfig>, String> {
    list.split(',')
        .map(|member| {
            let (id, addr) = member
                .split_once('=')
                .ok_or_else(|| format!("--peers: {member:?} is not ID=ADDR"))?;
            Ok(PeerConfig {
                id: NodeId(
                    id.parse()
                        .map_err(|_| format!("--peers: {id:?} is not a number"))?,
                ),
                addr: address("--peers", addr)?.into(),
                client_addr: None,
            })
        })
        .collect()
}
