//! Byte streams that may or may not be encrypted, behind one type per IO world.
//!
//! A connection is plain or TLS depending on configuration; the code that reads and writes it
//! should not care. Each runtime's traits get an alias trait with a blanket implementation, so
//! a connection is held as `Box<dyn FuturesIo>` (glommio executors), `Box<dyn TokioIo>` (the
//! Tokio services) or `Box<dyn BlockingIo>` (the blocking client), whatever sits underneath.

/// A stream for glommio executors (futures' IO traits).
pub trait FuturesIo: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin {}
impl<T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> FuturesIo for T {}

/// A stream for the Tokio services (Tokio's IO traits).
#[cfg(feature = "kv")]
pub trait TokioIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
#[cfg(feature = "kv")]
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> TokioIo for T {}

/// A blocking stream (std's IO traits).
pub trait BlockingIo: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> BlockingIo for T {}
