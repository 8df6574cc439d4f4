//! A TCP proxy owned by a test, between a server and PostgreSQL: the test can sever every
//! connection (and refuse new ones), stall them (bytes stop flowing, sockets stay open, new
//! connections hang), and restore service — a real outage that leaves the shared PostgreSQL alone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Existing connections stop forwarding (bytes wait); new ones are accepted and left hanging.
    Stall,
    /// Every connection is closed; new ones are closed as soon as they are accepted.
    Sever,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
    /// Connection tasks, aborted on sever and on drop.
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watch) = watch::channel(Mode::Forward);
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let task = tokio::spawn({
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    let watch = watch.clone();
                    let handle = tokio::spawn(async move {
                        if *watch.borrow() == Mode::Sever {
                            return; // dropping the socket closes it
                        }
                        relay(client, upstream, watch).await;
                    });
                    connections.lock().unwrap().push(handle);
                }
            }
        });
        Proxy { addr, mode, task, connections }
    }

    pub fn set(&self, mode: Mode) {
        if mode == Mode::Sever {
            for handle in self.connections.lock().unwrap().drain(..) {
                handle.abort();
            }
        }
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for handle in self.connections.lock().unwrap().drain(..) {
            handle.abort();
        }
    }
}

/// Copies bytes both ways while the mode is Forward; waits while it is Stall.
async fn relay(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, mode.clone());
    let down = pump(server_read, client_write, mode);
    tokio::select! {
        () = up => {},
        () = down => {},
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // While stalled, read nothing: the kernel buffers fill and the peer waits.
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A stall while waiting for bytes: go back and wait for Forward.
            _ = mode.wait_for(|m| *m != Mode::Forward) => continue,
        };
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
