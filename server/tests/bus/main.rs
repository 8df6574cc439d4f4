//! The event bus conformance suite: every rule of the `bus::Provider` contract
//! (`server/src/bus/mod.rs`) as the gateway relies on it, written once and run against every
//! provider — in-process, PostgreSQL and NATS JetStream — the way the storage conformance suite
//! runs on every backend.
//!
//! Two `EventBus`es over one log stand in for two server processes (the HTTP-level behaviour,
//! with real server processes, is in `tests/api/scale_out.rs` and `tests/api/gateway.rs`). The
//! in-process provider is one process's own log: its "two processes" share it.
//!
//! PostgreSQL: a fresh database per test on `$DECENTCOM_TEST_PG_URL` (default the local server).
//! NATS: a stream of its own per test on `$NATS_URL` (default `nats://127.0.0.1:4222`), deleted
//! afterwards; the tests that restart NATS start a `nats-server -js` of their own. Both fail,
//! never skip, when their server does not answer.

#[path = "../common/nats_server.rs"]
mod nats_server;

mod fleet;
mod suite;

/// One `#[tokio::test]` per provider and test: `<provider>::<test>`, calling
/// `crate::suite::<test>(Kind::<provider>)`.
macro_rules! bus_suite {
    ($($provider:ident => $kind:ident { $($test:ident),* $(,)? })*) => {$(
        mod $provider {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::suite::$test(crate::fleet::Kind::$kind).await;
                }
            )*
        }
    )*};
}

bus_suite! {
    in_process => InProcess {
        every_message_reaches_every_process_once_in_publish_order,
        big_payloads_travel_whole,
        a_gap_beyond_retention_is_reported_never_skipped,
        resume_replays_exactly_what_followed,
        resume_beyond_the_window_or_from_the_future_is_refused,
    }
    postgres => Postgres {
        every_message_reaches_every_process_once_in_publish_order,
        big_payloads_travel_whole,
        a_gap_beyond_retention_is_reported_never_skipped,
        resume_replays_exactly_what_followed,
        resume_beyond_the_window_or_from_the_future_is_refused,
        messages_from_both_processes_reach_both_in_one_order,
        a_process_catches_up_after_its_bus_connection_is_cut,
        pruning_is_safe_on_several_processes_at_once,
    }
    nats => Nats {
        every_message_reaches_every_process_once_in_publish_order,
        big_payloads_travel_whole,
        a_gap_beyond_retention_is_reported_never_skipped,
        resume_replays_exactly_what_followed,
        resume_beyond_the_window_or_from_the_future_is_refused,
        messages_from_both_processes_reach_both_in_one_order,
        pruning_is_safe_on_several_processes_at_once,
    }
    nats_own_server => NatsOwnServer {
        a_process_catches_up_after_its_bus_connection_is_cut,
    }
}
