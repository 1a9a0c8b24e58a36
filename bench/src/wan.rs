//! A wide-area link on loopback: a TCP proxy that delays every byte by half the round trip
//! each way and caps each connection's throughput, the way a long-distance TCP window
//! does (this kernel has no netem, so it is done in user space).
//!
//! - A new connection waits one round trip before its first byte moves (the TCP
//!   handshake; TLS is not modelled).
//! - Each direction of a connection reads what arrives, stamps it with the time it may be
//!   delivered (arrival + one-way delay), and a writer delivers it then, paced to the
//!   per-connection cap. Up to `cap x round trip` bytes (at least 4 MiB) wait in flight,
//!   like a window that fills the pipe; the reader stops reading beyond that.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How the proxied link behaves.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Round-trip time added (half each way).
    pub rtt: Duration,
    /// Bytes a second one connection can carry in each direction.
    pub cap: u64,
}

/// Piece of a stream the proxy moves at once.
const PIECE: usize = 64 * 1024;
/// How far ahead of the capped rate a connection may run (a burst of 5 ms at the cap).
const SLACK: Duration = Duration::from_millis(5);

/// Binds 127.0.0.1:0 and proxies every connection to `upstream` through `link`, on the
/// current runtime; returns the address to connect to.
pub async fn start(upstream: SocketAddr, link: Link) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                // The handshake's round trip.
                tokio::time::sleep(link.rtt).await;
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(direction(cr, sw, link));
                let down = tokio::spawn(direction(sr, cw, link));
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok(addr)
}

/// Moves one direction: read, hold for the one-way delay, deliver at the capped rate.
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
) {
    let one_way = link.rtt / 2;
    let window = ((link.cap as f64 * link.rtt.as_secs_f64()) as usize).max(4 << 20);
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>((window / PIECE).max(1));
    let reader = async move {
        loop {
            let mut buf = vec![0u8; PIECE];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now() + one_way, buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the sender ends the writer once everything in flight is delivered.
    };
    let writer = async move {
        let per_byte = Duration::from_secs_f64(1.0 / link.cap.max(1) as f64);
        // When the link is next free. Sleeping for each piece would round every wait up
        // to the timer's millisecond and cap the rate far below `cap`: the writer sleeps
        // only once it is more than SLACK ahead of the link.
        let mut free_at = Instant::now();
        while let Some((due, piece)) = rx.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if free_at > Instant::now() + SLACK {
                tokio::time::sleep_until(free_at - SLACK).await;
            }
            if to.write_all(&piece).await.is_err() {
                break;
            }
            // The link is busy with this piece for its length at the cap.
            free_at = Instant::now().max(free_at) + per_byte * piece.len() as u32;
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
