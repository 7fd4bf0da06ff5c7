//! Against the real RabbitMQ on 127.0.0.1:5672, one private vhost per test.

mod common;

use std::time::Duration;

use common::{Proxy, Vhost, fast_retry, publish_info};
use gc_broker::{
    BrokerError, ConsumeTarget, NoticeTarget, PublishError, PublishTarget, Publisher,
    PublisherOptions, StopReason, Subscriber, SubscriberOptions, UnackedStore, send_notice,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step timed out")
}

fn consume_target(url: &str, queue: &str) -> ConsumeTarget {
    ConsumeTarget::from_json(&json!({"connection_url": url, "queue": queue}), None).unwrap()
}

async fn wait_consuming(sub: &Subscriber) {
    let mut w = sub.consuming();
    within(w.wait_for(|c| *c)).await.expect("consuming watch");
}

#[tokio::test]
async fn only_handed_off_deliveries_are_acked() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    for i in 1..=5u8 {
        admin.send("tasks", &[i]).await;
    }
    let mut sub = Subscriber::start(
        consume_target(&vh.url(), "tasks"),
        SubscriberOptions {
            exclusive: true,
            ..Default::default()
        },
    );
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(within(sub.next()).await.expect("delivery"));
    }
    assert_eq!(
        got.iter().map(|d| d.body[0]).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // Hand off 1, 2 and 4; 3 and 5 stay with the "engine".
    for i in [0, 1, 3] {
        sub.handed_off(got[i].token);
    }
    within(sub.close()).await;

    // The broker has 3 and 5 back, redelivered; the rest was acked.
    admin.wait_ready("tasks", 2).await;
    let a = admin.get("tasks").await.expect("message 3");
    let b = admin.get("tasks").await.expect("message 5");
    assert_eq!(
        (a.delivery.data.as_slice(), b.delivery.data.as_slice()),
        (&[3u8][..], &[5u8][..])
    );
    assert!(a.delivery.redelivered && b.delivery.redelivered);
}

#[tokio::test]
async fn acks_are_flushed_in_batches_while_running() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    let proxy = Proxy::start().await;
    let mut sub = Subscriber::start(
        consume_target(&vh.url_via(&proxy.addr()), "tasks"),
        SubscriberOptions {
            ack_batch: 10,
            ack_interval: Duration::from_secs(3600),
            retry: fast_retry(),
            ..Default::default()
        },
    );
    for i in 0..25u8 {
        admin.send("tasks", &[i]).await;
    }
    let acks = sub.ack_handle();
    for _ in 0..25 {
        let d = within(sub.next()).await.expect("delivery");
        acks.handed_off(d.token);
        // Hand-offs reported together are flushed together (a run of confirmed results is
        // never split); one at a time, the threshold decides.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With a one-hour timer only the batch threshold can flush: 20 acked, 5 pending. Let the
    // two batch acks reach the broker, then kill the connection without a close: exactly the
    // 5 pending deliveries come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "{}",
        String::from_utf8_lossy(
            &std::process::Command::new("rabbitmqctl")
                .args([
                    "list_queues",
                    "-p",
                    &vh.name,
                    "name",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers"
                ])
                .output()
                .unwrap()
                .stdout
        )
    );
    admin.wait_ready("tasks", 5).await;
    let m = admin.get("tasks").await.expect("first requeued");
    assert_eq!(m.delivery.data, [20u8]);
    within(sub.close()).await;
}

#[tokio::test]
async fn stale_tokens_are_never_acked_on_a_new_channel() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    let proxy = Proxy::start().await;
    let mut sub = Subscriber::start(
        consume_target(&vh.url_via(&proxy.addr()), "tasks"),
        SubscriberOptions {
            exclusive: true,
            retry: fast_retry(),
            ..Default::default()
        },
    );
    admin.send("tasks", b"A").await;
    let first = within(sub.next()).await.expect("first delivery");
    assert_eq!(first.body, b"A");

    // Outage: the connection dies, A goes back to the queue.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore().await;
    let again = within(sub.next()).await.expect("redelivery");
    assert_eq!(again.body, b"A");
    assert!(again.redelivered);
    assert_ne!(first.token, again.token);

    // The old token has the same delivery tag (1) but belongs to the dead channel.
    sub.handed_off(first.token);
    within(sub.close()).await;
    admin.wait_ready("tasks", 1).await;
}

#[tokio::test]
async fn exclusive_consumer_is_refused_and_stops_for_good() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    let first = Subscriber::start(
        consume_target(&vh.url(), "tasks"),
        SubscriberOptions {
            exclusive: true,
            ..Default::default()
        },
    );
    wait_consuming(&first).await;
    let mut second = Subscriber::start(
        consume_target(&vh.url(), "tasks"),
        SubscriberOptions {
            exclusive: true,
            retry: fast_retry(),
            ..Default::default()
        },
    );
    match within(second.next()).await {
        Err(BrokerError::Stopped(StopReason::ChannelClosedTooOften { closes, last, .. })) => {
            assert_eq!(closes, 3);
            assert!(last.to_string().contains("exclusive"), "{last}");
        }
        other => panic!("expected a stop, got {other:?}"),
    }
    // Stopped is sticky.
    assert!(matches!(second.next().await, Err(BrokerError::Stopped(_))));
    // A consumer of a missing queue stops the same way (404 three times).
    let mut missing = Subscriber::start(
        consume_target(&vh.url(), "no-such-queue"),
        SubscriberOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    );
    assert!(matches!(
        within(missing.next()).await,
        Err(BrokerError::Stopped(
            StopReason::ChannelClosedTooOften { .. }
        ))
    ));
    first.close().await;
}

#[tokio::test]
async fn bad_credentials_give_up_at_once() {
    let vh = Vhost::new();
    let url = format!("amqp://guest:wrong-password@127.0.0.1:5672/{}", vh.name);
    let mut sub = Subscriber::start(consume_target(&url, "tasks"), SubscriberOptions::default());
    assert!(matches!(
        within(sub.next()).await,
        Err(BrokerError::Stopped(StopReason::Authentication(_)))
    ));
    let publisher = Publisher::start(
        PublishTarget::from_json(&publish_info(&url, "results", "results", "x.results"), None)
            .unwrap(),
        PublisherOptions::default(),
    );
    let failure = within(publisher.publish_confirmed(b"r".to_vec()))
        .await
        .expect_err("cannot publish");
    assert!(matches!(
        failure.error,
        PublishError::Stopped(StopReason::Authentication(_))
    ));
    assert_eq!(failure.body, b"r");
}

#[tokio::test]
async fn ten_thousand_pipelined_publishes_are_all_confirmed() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.topic("results", "results", "*.results").await;
    let target = PublishTarget::from_json(
        &publish_info(&vh.url(), "results", "results", "u.results"),
        None,
    )
    .unwrap();
    let publisher = Publisher::start(target, PublisherOptions::default());
    let mut confirms = Vec::with_capacity(10_000);
    for i in 0..10_000u32 {
        confirms.push(
            publisher
                .publish(i.to_be_bytes().to_vec())
                .await
                .expect("accepted"),
        );
    }
    for c in confirms {
        within(c).await.expect("confirmed");
    }
    admin.wait_ready("results", 10_000).await;
    let first = admin.get("results").await.expect("a message");
    assert_eq!(first.delivery.data, 0u32.to_be_bytes());
    assert_eq!(first.delivery.properties.delivery_mode(), &Some(2));
    publisher.close().await;
}

#[tokio::test]
async fn unroutable_mandatory_publish_is_a_failure() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.topic("results", "results", "*.results").await;
    let target = PublishTarget::from_json(
        &publish_info(&vh.url(), "results", "results", "no-binding-matches-this"),
        None,
    )
    .unwrap();
    let publisher = Publisher::start(target, PublisherOptions::default());
    let failure = within(publisher.publish_confirmed(b"lost?".to_vec()))
        .await
        .expect_err("returned");
    match failure.error {
        PublishError::Returned { code, ref text } => {
            assert_eq!(code, 312);
            assert!(text.contains("NO_ROUTE"), "{text}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(failure.body, b"lost?");
    // The publisher keeps working after a return.
    let mut info = publish_info(&vh.url(), "results", "results", "ok.results");
    info["queue_publish_kwargs"]["mandatory"] = json!(false);
    let ok = Publisher::start(
        PublishTarget::from_json(&info, None).unwrap(),
        PublisherOptions::default(),
    );
    within(ok.publish_confirmed(b"fine".to_vec()))
        .await
        .expect("confirmed");
    within(publisher.publish_confirmed(b"again".to_vec()))
        .await
        .expect_err("returned again");
}

#[tokio::test]
async fn missing_exchange_stops_the_publisher() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("results").await;
    let publisher = Publisher::start(
        PublishTarget::from_json(&publish_info(&vh.url(), "nope", "results", "k"), None).unwrap(),
        PublisherOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    );
    let failure = within(publisher.publish_confirmed(b"x".to_vec()))
        .await
        .expect_err("passive declare fails");
    assert!(matches!(
        failure.error,
        PublishError::Stopped(StopReason::ChannelClosedTooOften { .. })
    ));
}

#[tokio::test]
async fn results_survive_a_broker_outage() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.topic("results", "results", "*.results").await;
    let proxy = Proxy::start().await;
    let info = publish_info(
        &vh.url_via(&proxy.addr()),
        "results",
        "results",
        "u.results",
    );
    let target = PublishTarget::from_json(&info, None).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1. A publisher that is up, then loses the broker: what it accepts meanwhile is held
    //    and confirmed after the reconnect.
    let publisher = Publisher::start(
        target.clone(),
        PublisherOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    );
    within(publisher.publish_confirmed(b"before".to_vec()))
        .await
        .expect("confirmed before the outage");
    proxy.cut();
    let held = within(publisher.publish(b"during".to_vec()))
        .await
        .expect("accepted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore().await;
    within(held).await.expect("confirmed after the reconnect");

    // 2. The broker stays away long enough for a publisher to give up: its messages come
    //    back with their bodies and go to the store.
    proxy.cut();
    let giving_up = Publisher::start(
        target.clone(),
        PublisherOptions {
            retry: gc_broker::RetryPolicy {
                max_attempts: 3,
                ..fast_retry()
            },
            ..Default::default()
        },
    );
    let store = UnackedStore::open(dir.path()).unwrap();
    for task in ["task-1", "task-2"] {
        let failure = within(giving_up.publish_confirmed(task.as_bytes().to_vec()))
            .await
            .expect_err("broker is down");
        assert!(matches!(
            failure.error,
            PublishError::Stopped(StopReason::AttemptsExhausted { .. })
        ));
        store.put(task, &failure.body).unwrap();
    }

    // 3. "Next start" in the same directory, broker back: the store is re-published and
    //    emptied.
    drop(store);
    proxy.restore().await;
    let store = UnackedStore::open(dir.path()).unwrap();
    assert_eq!(store.task_ids().unwrap(), vec!["task-1", "task-2"]);
    let fresh = Publisher::start(target, PublisherOptions::default());
    let report = within(store.republish(&fresh)).await.unwrap();
    assert_eq!(report.confirmed, vec!["task-1", "task-2"]);
    assert!(report.failed.is_empty());
    assert!(store.task_ids().unwrap().is_empty());

    admin.wait_ready("results", 4).await;
    let mut bodies = Vec::new();
    while let Some(m) = admin.get("results").await {
        bodies.push(String::from_utf8(m.delivery.data).unwrap());
    }
    assert_eq!(bodies, vec!["before", "during", "task-1", "task-2"]);
}

#[tokio::test]
async fn failure_notice_has_no_properties() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin
        .topic("heartbeats", "heartbeats", "*.heartbeats")
        .await;
    let info = publish_info(&vh.url(), "heartbeats", "heartbeats", "uep.heartbeats");
    let target = NoticeTarget::from_json(&info).unwrap();
    within(send_notice(&target, b"notice", Duration::from_secs(30)))
        .await
        .expect("notice confirmed");
    let m = admin.get("heartbeats").await.expect("notice arrived");
    assert_eq!(m.delivery.data, b"notice");
    assert_eq!(m.delivery.properties, lapin::BasicProperties::default());
    assert_eq!(m.delivery.routing_key.as_str(), "uep.heartbeats");

    let unroutable = NoticeTarget {
        routing_key: "nobody-listens".into(),
        ..target
    };
    assert!(matches!(
        within(send_notice(&unroutable, b"x", Duration::from_secs(30))).await,
        Err(gc_broker::NoticeError::Publish(
            PublishError::Returned { .. }
        ))
    ));
}

#[test]
fn failure_notice_blocking_helper_works_without_a_runtime() {
    let vh = Vhost::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        vh.admin()
            .await
            .topic("heartbeats", "heartbeats", "*.heartbeats")
            .await;
    });
    let info = publish_info(&vh.url(), "heartbeats", "heartbeats", "uep.heartbeats");
    let target = NoticeTarget::from_json(&info).unwrap();
    gc_broker::send_notice_blocking(&target, b"n", Duration::from_secs(30)).expect("sent");
    rt.block_on(async {
        assert_eq!(vh.admin().await.ready("heartbeats").await, 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_when_the_connection_dies_are_sent_again() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.topic("results", "results", "*.results").await;
    let proxy = Proxy::start().await;
    let info = publish_info(
        &vh.url_via(&proxy.addr()),
        "results",
        "results",
        "u.results",
    );
    let publisher = Publisher::start(
        PublishTarget::from_json(&info, None).unwrap(),
        PublisherOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    );
    within(publisher.publish_confirmed(b"warm-up".to_vec()))
        .await
        .expect("connected");
    let mut confirms = std::collections::VecDeque::new();
    for i in 0..3000u32 {
        confirms.push_back(
            publisher
                .publish(i.to_be_bytes().to_vec())
                .await
                .expect("accepted"),
        );
    }
    // Wait for the first thousand, then cut while the rest is on the wire, unconfirmed.
    for _ in 0..1000 {
        within(confirms.pop_front().unwrap())
            .await
            .expect("confirmed");
    }
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore().await;
    for c in confirms {
        within(c)
            .await
            .expect("every accepted message is confirmed");
    }
    // At-least-once: nothing is missing; messages on the wire at the cut may be duplicated.
    let mut seen = std::collections::BTreeSet::new();
    while let Some(m) = admin.get("results").await {
        if m.delivery.data.len() == 4 {
            let mut b = [0u8; 4];
            b.copy_from_slice(&m.delivery.data);
            seen.insert(u32::from_be_bytes(b));
        }
    }
    assert_eq!(seen.len(), 3000);
}

#[tokio::test]
async fn amqps_handshake_failure_is_an_error_not_a_panic() {
    // TLS against the plain-text port: the handshake fails; the subscriber retries and then
    // reports the failure.
    let url = "amqps://guest:guest@127.0.0.1:5672/";
    let mut sub = Subscriber::start(
        consume_target(url, "tasks"),
        SubscriberOptions {
            retry: gc_broker::RetryPolicy {
                max_attempts: 2,
                ..fast_retry()
            },
            ..Default::default()
        },
    );
    assert!(matches!(
        within(sub.next()).await,
        Err(BrokerError::Stopped(StopReason::AttemptsExhausted {
            attempts: 2,
            ..
        }))
    ));
}

#[tokio::test]
async fn close_does_not_hang_when_the_owner_stopped_reading() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    for i in 0..1100u32 {
        admin.send("tasks", &i.to_be_bytes()).await;
    }
    let mut sub = Subscriber::start(
        consume_target(&vh.url(), "tasks"),
        SubscriberOptions {
            prefetch: 0,
            ..Default::default()
        },
    );
    let d = within(sub.next()).await.expect("delivery");
    sub.handed_off(d.token);
    // Without a prefetch limit the hand-over channel (1,024) fills up and nobody reads it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(sub.close()).await;
    admin.wait_ready("tasks", 1099).await;
}

#[tokio::test]
async fn target_source_is_read_again_on_reconnect() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    let (first, second) = (Proxy::start().await, Proxy::start().await);
    // "Rotated credentials": the source hands out the first address, then the second one.
    let current = std::sync::Arc::new(std::sync::Mutex::new(vh.url_via(&first.addr())));
    let shared = std::sync::Arc::clone(&current);
    let source: gc_broker::TargetSource<ConsumeTarget> = std::sync::Arc::new(move || {
        let url = shared.lock().unwrap().clone();
        ConsumeTarget::from_json(&json!({"connection_url": url, "queue": "tasks"}), None)
    });
    let mut sub = Subscriber::start_with_source(
        source,
        SubscriberOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    )
    .expect("valid first target");
    wait_consuming(&sub).await;
    *current.lock().unwrap() = vh.url_via(&second.addr());
    first.cut(); // the old address is gone for good
    admin.send("tasks", b"after rotation").await;
    let d = within(sub.next())
        .await
        .expect("delivery over the new target");
    assert_eq!(d.body, b"after rotation");
    sub.handed_off(d.token);

    // A source that no longer produces a valid target stops the subscriber, typed.
    *current.lock().unwrap() = "http://not-amqp/".into();
    second.cut();
    match within(sub.next()).await {
        Err(BrokerError::Stopped(StopReason::Config(e))) => {
            assert_eq!(e, gc_broker::ConfigError::UnsupportedScheme("http".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad: gc_broker::TargetSource<ConsumeTarget> = std::sync::Arc::new(|| {
        ConsumeTarget::from_json(&json!({"connection_url": "http://x/", "queue": "q"}), None)
    });
    assert!(matches!(
        Subscriber::start_with_source(bad, SubscriberOptions::default()),
        Err(gc_broker::ConfigError::UnsupportedScheme(_))
    ));
}

#[tokio::test]
async fn deleted_queue_cancels_the_consumer_and_stops_it() {
    let vh = Vhost::new();
    let admin = vh.admin().await;
    admin.queue("tasks").await;
    let mut sub = Subscriber::start(
        consume_target(&vh.url(), "tasks"),
        SubscriberOptions {
            retry: fast_retry(),
            ..Default::default()
        },
    );
    wait_consuming(&sub).await;
    admin
        .channel
        .queue_delete("tasks".into(), Default::default())
        .await
        .expect("delete");
    // basic.cancel counts as one channel close; re-consuming the missing queue fails twice.
    assert!(matches!(
        within(sub.next()).await,
        Err(BrokerError::Stopped(StopReason::ChannelClosedTooOften {
            closes: 3,
            ..
        }))
    ));
}
