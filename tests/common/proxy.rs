//! A TCP fault proxy between the client and an emulator: each new connection may, by a
//! seeded draw, be cut (FIN), reset (RST) or stalled after some bytes in one direction.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy has done.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub resets: AtomicU64,
    pub stalls: AtomicU64,
}

impl ProxyCounts {
    pub fn faults(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
            + self.resets.load(Ordering::Relaxed)
            + self.stalls.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Cut,
    Reset,
    Stall,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    action: Action,
    /// Bytes let through in the faulted direction before acting.
    after: u64,
    /// Client to server (a request cut while sending) or back.
    upstream: bool,
}

#[derive(Debug)]
struct Chaos {
    rng: u64,
    probability: f64,
}

/// A running proxy; it stops with the runtime.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<ProxyCounts>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    stall: Duration,
    /// Bumped to close every open connection (so that pooled ones are not reused across
    /// a change of schedule).
    generation: tokio::sync::watch::Sender<u64>,
}

impl FaultProxy {
    /// Listens on a free local port and forwards to `upstream`; `stall` is how long a
    /// stalled connection hangs before it is closed.
    pub async fn start(upstream: SocketAddr, stall: Duration) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(ProxyCounts::default());
        let chaos: Arc<Mutex<Option<Chaos>>> = Arc::default();
        let (generation, gen_rx) = tokio::sync::watch::channel(0u64);
        let (c, ch) = (counts.clone(), chaos.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::Relaxed);
                let plan = draw(&ch);
                let mut closing = gen_rx.clone();
                closing.mark_unchanged();
                tokio::spawn(serve(client, upstream, plan, c.clone(), stall, closing));
            }
        });
        FaultProxy {
            addr,
            counts,
            chaos,
            stall,
            generation,
        }
    }

    /// From now on, each new connection is faulted with `probability`, drawn from `seed`.
    /// Open connections are closed first, so the client's pool reconnects under it.
    pub fn chaos(&self, seed: u64, probability: f64) {
        *self.chaos.lock().unwrap() = Some(Chaos {
            rng: seed,
            probability,
        });
        self.generation.send_modify(|g| *g += 1);
    }

    /// No more faults; open connections are closed.
    pub fn calm(&self) {
        *self.chaos.lock().unwrap() = None;
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn stall(&self) -> Duration {
        self.stall
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn draw(chaos: &Mutex<Option<Chaos>>) -> Option<Plan> {
    let mut guard = chaos.lock().unwrap();
    let c = guard.as_mut()?;
    let roll = (splitmix(&mut c.rng) >> 11) as f64 / (1u64 << 53) as f64;
    if roll >= c.probability {
        return None;
    }
    let action = match splitmix(&mut c.rng) % 3 {
        0 => Action::Cut,
        1 => Action::Reset,
        _ => Action::Stall,
    };
    let upstream = splitmix(&mut c.rng).is_multiple_of(2);
    // A third of the faults fall in the first bytes (inside headers, small requests and
    // answers), a third in the first 64 KiB, a third anywhere in a part or a read.
    let span = match splitmix(&mut c.rng) % 3 {
        0 => 512,
        1 => 64 << 10,
        _ => 6 << 20,
    };
    let after = splitmix(&mut c.rng) % span;
    Some(Plan {
        action,
        after,
        upstream,
    })
}

enum End {
    Eof,
    Tripped,
}

/// Copies `r` to `w`; with a limit, stops once that many bytes went through.
async fn pump(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, limit: Option<u64>) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
        };
        let allowed = match limit {
            Some(l) => (l - sent).min(n as u64) as usize,
            None => n,
        };
        if w.write_all(&buf[..allowed]).await.is_err() {
            return End::Eof;
        }
        sent += allowed as u64;
        if limit == Some(sent) {
            // The connection stays open: `serve` holds duplicates of both sockets.
            return End::Tripped;
        }
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    plan: Option<Plan>,
    counts: Arc<ProxyCounts>,
    stall: Duration,
    mut closing: tokio::sync::watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let client_std = client.into_std().unwrap();
    let server_std = server.into_std().unwrap();
    // Duplicates kept to act on the connection (reset, close) after the pumps stop.
    let client_ctl = client_std.try_clone().unwrap();
    let server_ctl = server_std.try_clone().unwrap();
    let (cr, cw) = TcpStream::from_std(client_std).unwrap().into_split();
    let (sr, sw) = TcpStream::from_std(server_std).unwrap().into_split();
    let (up_limit, down_limit) = match plan {
        Some(p) if p.upstream => (Some(p.after), None),
        Some(p) => (None, Some(p.after)),
        None => (None, None),
    };
    let up = pump(cr, sw, up_limit);
    let down = pump(sr, cw, down_limit);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let tripped = loop {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                End::Tripped => break true,
                End::Eof => up_done = true,
            },
            end = &mut down, if !down_done => match end {
                End::Tripped => break true,
                End::Eof => down_done = true,
            },
            _ = closing.changed() => {
                let _ = client_ctl.shutdown(std::net::Shutdown::Both);
                let _ = server_ctl.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        if up_done && down_done {
            break false;
        }
    };
    if !tripped {
        return;
    }
    let plan = plan.expect("tripped without a plan");
    match plan.action {
        Action::Cut => {
            counts.cuts.fetch_add(1, Ordering::Relaxed);
        }
        Action::Reset => {
            counts.resets.fetch_add(1, Ordering::Relaxed);
            // SO_LINGER 0: closing the last descriptor sends RST (no shutdown, which
            // would send FIN first).
            let _ = socket2_linger_zero(&client_ctl);
            return;
        }
        Action::Stall => {
            counts.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(stall).await;
        }
    }
    let _ = client_ctl.shutdown(std::net::Shutdown::Both);
    let _ = server_ctl.shutdown(std::net::Shutdown::Both);
}

fn socket2_linger_zero(s: &std::net::TcpStream) -> std::io::Result<()> {
    // std's set_linger is unstable; tokio's is on its own type: convert a clone.
    let clone = s.try_clone()?;
    clone.set_nonblocking(true)?;
    let t = TcpStream::from_std(clone)?;
    #[allow(deprecated)]
    t.set_linger(Some(Duration::ZERO))?;
    Ok(())
}
