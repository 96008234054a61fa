//! A minimal blocking RESP2 client for the fault harness: one connection, one command at a
//! time, every wait bounded.
//!
//! Invariants: a command either returns the one reply value that answers it or an error; after
//! any error (timeout, broken connection, unparsable reply) the connection is unusable and the
//! caller must drop it, since a late reply would otherwise be taken for the next command's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::kv::parse::{parse_value, REPLY_LIMITS};
use crate::kv::resp::Value;

/// Why a command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the command certainly had no effect.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The command may have been sent: its effect is unknown.
    #[error("{0}")]
    Io(std::io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("unparsable reply: {0}")]
    Protocol(String),
}

/// One connection to a RESP server.
pub struct RespConnection {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl RespConnection {
    /// Connects within `timeout`; each later command waits at most `timeout` for its reply.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<RespConnection, CallError> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(CallError::Connect)?;
        stream.set_nodelay(true).map_err(CallError::Connect)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(CallError::Connect)?;
        Ok(RespConnection {
            stream,
            buf: Vec::new(),
            timeout,
        })
    }

    /// Sends one command (an array of bulk strings) and waits for its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, CallError> {
        let request = Value::Array(
            args.iter()
                .map(|arg| Value::Bulk(bytes::Bytes::copy_from_slice(arg)))
                .collect(),
        );
        self.stream
            .write_all(&request.encode())
            .map_err(CallError::Io)?;
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match parse_value(&self.buf, &REPLY_LIMITS) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(error) => return Err(CallError::Protocol(error.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout(self.timeout));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(CallError::Io)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(CallError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(CallError::Timeout(self.timeout));
                }
                Err(error) => return Err(CallError::Io(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_a_reply_split_across_writes_and_times_out_on_silence() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request).unwrap();
            stream.write_all(b"$5\r\nhe").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            stream.write_all(b"llo\r\n").unwrap();
            let _ = stream.read(&mut request).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut connection = RespConnection::connect(addr, Duration::from_millis(300)).unwrap();
        let reply = connection.call(&[b"GET", b"k"]).unwrap();
        assert_eq!(reply, Value::Bulk(bytes::Bytes::from_static(b"hello")));
        assert!(matches!(
            connection.call(&[b"GET", b"k"]),
            Err(CallError::Timeout(_))
        ));
        server.join().unwrap();
    }
}
