//! Publish and consume throughput against the local RabbitMQ (127.0.0.1:5672, guest), in a
//! throwaway vhost. Not a criterion benchmark: one broker round trip dominates, so each
//! scenario is run once on a large batch and reported as messages per second.
//!
//! `cargo bench -p gc-broker --bench throughput` (results in docs/benchmarks.md).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{Vhost, publish_info};
use gc_broker::{
    ConsumeTarget, PublishTarget, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
};
use serde_json::json;

const PIPELINED: u32 = 50_000;
const SERIAL: u32 = 2_000;
const CONSUMED: u32 = 50_000;
const BODY: usize = 256;

fn rate(n: u32, start: Instant) -> f64 {
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let vh = Vhost::new();
    rt.block_on(async {
        let admin = vh.admin().await;
        admin.topic("results", "results", "*.results").await;
        let target = PublishTarget::from_json(
            &publish_info(&vh.url(), "results", "results", "bench.results"),
            None,
        )
        .expect("target");
        let publisher = Publisher::start(target, PublisherOptions::default());
        publisher
            .publish_confirmed(vec![0; BODY])
            .await
            .expect("warm-up");

        let start = Instant::now();
        let mut confirms = Vec::with_capacity(PIPELINED as usize);
        for _ in 0..PIPELINED {
            confirms.push(publisher.publish(vec![7; BODY]).await.expect("accepted"));
        }
        for c in confirms {
            c.await.expect("confirmed");
        }
        println!(
            "publish, pipelined confirms: {PIPELINED} x {BODY} B: {:.0} msg/s",
            rate(PIPELINED, start)
        );

        let start = Instant::now();
        for _ in 0..SERIAL {
            publisher
                .publish_confirmed(vec![7; BODY])
                .await
                .expect("confirmed");
        }
        println!(
            "publish, one confirm round trip each: {SERIAL} x {BODY} B: {:.0} msg/s",
            rate(SERIAL, start)
        );
        publisher.close().await;

        // Consume what was published (plus warm-up), handing every delivery off at once.
        let total = 1 + PIPELINED + SERIAL;
        admin.wait_ready("results", total).await;
        let mut sub = Subscriber::start(
            ConsumeTarget::from_json(
                &json!({"connection_url": vh.url(), "queue": "results"}),
                None,
            )
            .expect("target"),
            SubscriberOptions {
                exclusive: true,
                ..Default::default()
            },
        );
        let start = Instant::now();
        for _ in 0..CONSUMED {
            let d = sub.next().await.expect("delivery");
            sub.handed_off(d.token);
        }
        println!(
            "consume + ack-after-hand-off (prefetch {}): {CONSUMED} msgs: {:.0} msg/s",
            gc_broker::DEFAULT_PREFETCH,
            rate(CONSUMED, start)
        );
        sub.close().await;
        admin.wait_ready("results", total - CONSUMED).await;
    });
}
