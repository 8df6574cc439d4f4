//! The PostgreSQL broadcast channel under the cross-process event bus (api.md §6.5), with two
//! backends over one database standing in for two server processes. (The HTTP-level behaviour,
//! with real server processes, is in `tests/api/scale_out.rs`.)
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use decentcom::config::StorageConfig;
use decentcom::storage::postgres::PostgresBackend;
use decentcom::storage::{Broadcast, PoolSettings, Storage};
use decentcom::testing::ScratchPg;
use pretty_assertions::assert_eq;
use tokio::sync::mpsc::Receiver;

async fn two_processes() -> (Arc<dyn Broadcast>, Arc<dyn Broadcast>, ScratchPg) {
    let scratch = ScratchPg::create("bus").await;
    let settings = PoolSettings::from_config(&StorageConfig::default());
    let a = PostgresBackend::open(scratch.url(), &settings).await.unwrap();
    let b = PostgresBackend::open(scratch.url(), &settings).await.unwrap();
    (a.broadcast().expect("postgres broadcasts"), b.broadcast().expect("postgres broadcasts"), scratch)
}

async fn receive(rx: &mut Receiver<String>, count: usize) -> Vec<String> {
    let mut received = Vec::new();
    while received.len() < count {
        let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} payloads arrived", received.len()))
            .expect("still listening");
        received.push(payload);
    }
    received
}

#[tokio::test]
async fn every_payload_reaches_every_process_in_publish_order_whatever_its_size() {
    let (a, b, _scratch) = two_processes().await;
    let mut on_a = a.subscribe().await.unwrap();
    let mut on_b = b.subscribe().await.unwrap();

    // Identical payloads stay distinct (PostgreSQL folds identical notifications of one
    // transaction), and payloads over the 8000-byte NOTIFY limit travel by reference.
    let large = "é".repeat(10_000);
    let mut published = Vec::new();
    for i in 0..300 {
        let payload = match i {
            100 | 200 => large.clone(),
            150..=152 => "same".to_owned(),
            _ => format!("payload {i}"),
        };
        a.publish(payload.clone());
        published.push(payload);
    }
    assert_eq!(receive(&mut on_b, published.len()).await, published);
    assert_eq!(receive(&mut on_a, published.len()).await, published, "the publisher hears itself too");
}

#[tokio::test]
async fn listening_stops_when_the_receiver_is_dropped() {
    let (_a, b, scratch) = two_processes().await;
    let listeners = || async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(scratch.url()).await.unwrap();
        // Test harness query against the catalogue, not the application schema: runtime SQL.
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    };
    let on_b = b.subscribe().await.unwrap();
    assert_eq!(listeners().await, 1);
    drop(on_b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listeners().await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the LISTEN connection is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
