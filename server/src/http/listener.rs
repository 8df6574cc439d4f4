//! The accept loop and the connection limits of api.md §1.7: at most `network.max_connections`
//! open connections (gateway sockets included), a request head that must arrive within 10 s, idle
//! keep-alive connections closed after 75 s, and the process's open-file limit raised so that
//! those connections cannot run it out of descriptors.
//!
//! The head and idle timeouts are one deadline with two lengths, which hyper's own
//! `header_read_timeout` cannot express (it starts the head's clock when the previous response
//! ends, so an idle keep-alive connection would close after 10 s — sooner than the proxies in
//! front of us keep theirs, which makes them fail requests on connections we just closed). Each
//! connection therefore gets a [`HeadTimer`]: hyper arms it when it waits for a request head, and
//! it fires 10 s after the first byte of that head arrives, or, while no byte has arrived, 10 s
//! after the connection opened (first request) or 75 s after the previous response (keep-alive).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use futures::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a request head may take from its first byte, and how long a new connection may wait
/// before sending one.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Descriptors kept free beyond `network.max_connections` (database pool, media files, logs).
pub const SPARE_FILES: u64 = 256;

/// The limits the accept loop enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn new(max_connections: usize) -> Limits {
        Limits { max_connections, head_timeout: HEAD_TIMEOUT, idle_timeout: IDLE_TIMEOUT }
    }
}

/// Raises the soft open-file limit to the hard limit; refuses (naming both numbers) when the hard
/// limit cannot hold `max_connections` connections plus [`SPARE_FILES`].
pub fn raise_open_file_limit(max_connections: u64) -> eyre::Result<u64> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get().map_err(|e| eyre::eyre!("cannot read the open-file limit: {e}"))?;
    let needed = max_connections + SPARE_FILES;
    if hard < needed {
        eyre::bail!(
            "the open-file limit is too low for network.max_connections = {max_connections}: the hard limit is \
             {hard}, at least {needed} are needed ({max_connections} connections + {SPARE_FILES} spare); raise it \
             (ulimit -Hn, LimitNOFILE=) or lower network.max_connections"
        );
    }
    if soft < hard {
        Resource::NOFILE
            .set(hard, hard)
            .map_err(|e| eyre::eyre!("cannot raise the open-file limit from {soft} to {hard}: {e}"))?;
        tracing::info!(from = soft, to = hard, "raised the open-file limit");
    }
    Ok(hard)
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets every open
/// connection finish its in-flight request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    // HTTP/1.1 only (with upgrades for the gateway): what browsers speak to a plain-HTTP server
    // and proxies speak to their upstreams; HTTP/2 would bypass the head deadline.
    let mut builder = http1::Builder::new();
    builder.timer(HeadTimerFactory).header_read_timeout(limits.head_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    let mut full_since: Option<Instant> = None;
    loop {
        // At the limit, stop accepting: new connections wait in the kernel's backlog until one
        // closes, and the process never runs out of descriptors.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Logged once per ten seconds of saturation at most.
                if full_since.is_none_or(|since| since.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(max = limits.max_connections, "network.max_connections reached; not accepting");
                    full_since = Some(Instant::now());
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new(limits));
        let io = TokioIo::new(Watched { inner: stream, activity: activity.clone(), _permit: permit });
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request)
            }
        });
        let connection = builder.serve_connection(io, service).with_upgrades();
        let stopping = stopping.clone();
        // The connection's timer needs its activity record: hand it over through the task.
        connections.spawn(CURRENT.scope(activity, async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // Finish the request in flight, then close (an idle connection closes now).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }));
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Accept errors are per connection (the peer gave up) or per process (out of descriptors); the
/// latter is retried after a pause instead of spinning.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(err.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused) {
        return;
    }
    tracing::error!(error = %err, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

tokio::task_local! {
    /// The activity record of the connection whose task is running (read by [`HeadTimerFactory`]).
    static CURRENT: Arc<Activity>;
}

/// What the head timer needs to know about its connection's reads.
struct Activity {
    limits: Limits,
    /// Reference point of the millisecond stamps below.
    origin: Instant,
    /// When the timer was last armed (ms after `origin`, +1 so that 0 means never).
    armed_at: AtomicU64,
    /// When the first byte after the arming arrived (+1; 0 = none yet).
    first_byte_at: AtomicU64,
    /// How many request heads have been waited for.
    heads: AtomicU64,
    waker: AtomicWaker,
}

impl Activity {
    fn new(limits: Limits) -> Activity {
        Activity {
            limits,
            origin: Instant::now(),
            armed_at: AtomicU64::new(0),
            first_byte_at: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    fn stamp(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.origin + Duration::from_millis(stamp - 1)
    }

    /// Bytes arrived: the first since the timer was armed starts the head's clock.
    fn note_read(&self) {
        if self.first_byte_at.load(Ordering::Relaxed) == 0
            && self.first_byte_at.compare_exchange(0, self.stamp(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.waker.wake();
        }
    }

    /// hyper waits for a new request head.
    fn arm(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.first_byte_at.store(0, Ordering::Release);
        self.armed_at.store(self.stamp(), Ordering::Release);
    }

    /// When the connection is to be closed, as far as is known now.
    fn deadline(&self) -> Instant {
        match self.first_byte_at.load(Ordering::Acquire) {
            0 => {
                let idle = if self.heads.load(Ordering::Relaxed) <= 1 {
                    self.limits.head_timeout
                } else {
                    self.limits.idle_timeout
                };
                self.at(self.armed_at.load(Ordering::Acquire).max(1)) + idle
            }
            first => self.at(first) + self.limits.head_timeout,
        }
    }
}

/// A connection's socket, noting reads for the head timer and holding the connection's permit
/// (released when the socket closes, also after a WebSocket upgrade).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.note_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// hyper's timer for our connections. hyper's HTTP/1 server uses its timer for the header read
/// timeout only; every sleep it asks for is that timeout being armed, which [`HeadTimer`] turns
/// into the deadline described in the module documentation.
#[derive(Clone, Copy, Debug)]
struct HeadTimerFactory;

impl hyper::rt::Timer for HeadTimerFactory {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        match CURRENT.try_with(Arc::clone) {
            Ok(activity) => {
                activity.arm();
                let first = activity.deadline();
                Box::pin(HeadTimer { activity, sleep: Box::pin(tokio::time::sleep_until(first.into())) })
            }
            // Not on a connection task (never the case for our connections): a plain sleep.
            Err(_) => Box::pin(PlainSleep(Box::pin(tokio::time::sleep_until(deadline.into())))),
        }
    }
}

/// The deadline of one request head (see the module documentation).
struct HeadTimer {
    activity: Arc<Activity>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadTimer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.activity.waker.register(cx.waker());
        let deadline = tokio::time::Instant::from(self.activity.deadline());
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadTimer {}

struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for PlainSleep {}
