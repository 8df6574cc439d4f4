//! A provider as two processes see it, for each kind of provider, and the ways a test breaks it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use decentcom::bus::local::LocalLog;
use decentcom::bus::nats::NatsLog;
use decentcom::bus::postgres::PgLog;
use decentcom::bus::{Delivery, EventBus, Provider, Retention, Sequenced};
use decentcom::config::StorageConfig;
use decentcom::storage::PoolSettings;
use decentcom::storage::postgres::PostgresBackend;
use decentcom::testing::ScratchPg;
use tokio::sync::broadcast::Receiver;
use tokio_util::sync::CancellationToken;

use crate::nats_server::{self, OwnNatsServer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    InProcess,
    Postgres,
    /// The machine's NATS server (`$NATS_URL`), a stream of the test's own.
    Nats,
    /// A NATS server of the test's own, which the test may restart.
    NatsOwnServer,
}

/// Two processes' view of one log: `a` and `b` (the same provider for the in-process kind).
pub struct Fleet {
    pub a: Arc<dyn Provider>,
    pub b: Arc<dyn Provider>,
    stop: CancellationToken,
    pg: Option<ScratchPg>,
    own_nats: Option<OwnNatsServer>,
    nats_stream: Option<(String, String)>,
}

impl Fleet {
    pub async fn start(kind: Kind, retention: Retention) -> Fleet {
        let mut fleet = Fleet {
            a: Arc::new(LocalLog::new(retention)),
            b: Arc::new(LocalLog::new(retention)),
            stop: CancellationToken::new(),
            pg: None,
            own_nats: None,
            nats_stream: None,
        };
        match kind {
            Kind::InProcess => fleet.b = fleet.a.clone(),
            Kind::Postgres => {
                let pg = ScratchPg::create("bus").await;
                // Opening the storage applies the migrations, the log's table among them.
                let settings = PoolSettings::from_config(&StorageConfig::default());
                drop(PostgresBackend::open(pg.url(), &settings).await.unwrap());
                fleet.a = Arc::new(PgLog::connect(pg.url(), retention).await.unwrap());
                fleet.b = Arc::new(PgLog::connect(pg.url(), retention).await.unwrap());
                fleet.pg = Some(pg);
            }
            Kind::Nats | Kind::NatsOwnServer => {
                let url = if kind == Kind::Nats {
                    nats_server::shared_url()
                } else {
                    let own = OwnNatsServer::start().await;
                    let url = own.url();
                    fleet.own_nats = Some(own);
                    url
                };
                let stream = nats_server::unique_stream("DECENTCOM_TEST_BUS");
                fleet.a = Arc::new(NatsLog::connect(&url, &stream, retention).await.unwrap());
                fleet.b = Arc::new(NatsLog::connect(&url, &stream, retention).await.unwrap());
                fleet.nats_stream = Some((url, stream));
            }
        }
        fleet
    }

    /// An `EventBus` on each process, following from the log's head.
    pub async fn buses(&self) -> (Arc<EventBus>, Arc<EventBus>) {
        (
            EventBus::start(self.a.clone(), self.stop.clone()).await.unwrap(),
            EventBus::start(self.b.clone(), self.stop.clone()).await.unwrap(),
        )
    }

    /// Cuts the processes' connections to the log the way an outage would, and lets it come
    /// back: PostgreSQL terminates every LISTEN connection; the test's own NATS server is killed
    /// and restarted after `down`.
    pub async fn cut(&mut self, down: Duration) {
        if let Some(pg) = &self.pg {
            let cut = pg.cut_listen_connections().await;
            assert!(!cut.is_empty() && cut.iter().all(|&c| c), "no LISTEN connection to cut: {cut:?}");
            tokio::time::sleep(down).await;
        } else if let Some(own) = &mut self.own_nats {
            own.restart(down).await;
        } else {
            panic!("this fleet has no connection a test can cut");
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let (Some((url, stream)), None) = (self.nats_stream.take(), &self.own_nats) {
            // Drop may run inside a runtime: delete the stream from a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    if let Ok(client) = async_nats::connect(&url).await {
                        let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
                    }
                });
            })
            .join();
        }
    }
}

/// The next `count` messages a bus hands its connections; panics on a resync or when they do
/// not come within 20 s.
pub async fn receive(rx: &mut Receiver<Delivery>, count: usize) -> Vec<Arc<Sequenced>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(Delivery::Message(message))) => received.push(message),
            Ok(Ok(Delivery::Resync)) => panic!("a resync after {} of {count} messages", received.len()),
            Ok(Err(err)) => panic!("the bus stopped after {} of {count} messages: {err}", received.len()),
            Err(_) => panic!("only {} of {count} messages arrived within 20 s", received.len()),
        }
    }
    received
}
