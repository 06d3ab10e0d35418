//! State-machine tests of the lane: schedule, matching, late, duplicate, skipped, timeouts.

use super::*;
use rr_common::mqtt::codec::{decode_publish, next_frame, to_message, InPublish, Protocol};
use rr_common::mqtt::Encoder as MqttEncoder;

/// The correlation a decoded request carries (property or 3.1.1 header).
fn correlation_of(p: &InPublish<'_>) -> Correlation {
    let m = to_message(p, 0).unwrap();
    Correlation::from_bytes(m.correlation.unwrap()).unwrap()
}

const MS: u64 = 1_000_000;

fn lane(clients: u32, max_inflight: u32, proto: Protocol) -> Lane {
    let spec = LaneSpec {
        lane: 0,
        lanes: 1,
        total_clients: clients,
        interval_ns: 1000 * MS,
        timeout_ns: 500 * MS,
        max_inflight,
        run_id: 42,
        encoder: Encoder::Mqtt(MqttEncoder { proto }),
        qos: 0,
        shards: 4,
        expect_replies: true,
        batch_size: 1000,
    };
    let topics = Topics {
        request: (0..4).map(|s| format!("req/{s}").into_bytes()).collect(),
        reply: vec![b"resp/t/0".to_vec(), b"resp/t/1".to_vec()],
    };
    Lane::new(spec, topics, 8)
}

const WIN: Window = Window {
    measure_from: 0,
    stop_at: u64::MAX,
};

fn corr(client: u32, seq: u32) -> Correlation {
    Correlation {
        run: 42,
        client,
        seq,
    }
}

#[test]
fn phases_are_spread_evenly() {
    let l = lane(4, 1, Protocol::V5);
    let times: Vec<u64> = (0..4).map(|k| l.sched(k, 0)).collect();
    assert_eq!(times, vec![0, 250 * MS, 500 * MS, 750 * MS]);
    assert_eq!(l.sched(1, 2), 2250 * MS);
}

#[test]
fn sends_what_is_due_and_matches_replies() {
    let mut l = lane(4, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(2);
    assert_eq!(l.run_due(600 * MS, &WIN, &books, &mut out), 3);
    assert_eq!(books.total.sent.load(Relaxed), 3);
    // decode what was encoded: correlation and reply topic per client
    let buf = out.bufs.iter().find(|b| !b.is_empty()).unwrap().clone();
    let f = next_frame(&buf, 1 << 20).unwrap().unwrap();
    let p = decode_publish(&buf, f, Protocol::V5).unwrap();
    assert_eq!(correlation_of(&p), corr(0, 0));
    assert_eq!(p.response_topic, Some(&b"resp/t/0"[..]));
    l.on_reply(corr(1, 0), 300 * MS, &WIN, &books);
    assert_eq!(books.total.matched.load(Relaxed), 1);
    // latency is measured from the scheduled time (250 ms), not from the send (600 ms)
    assert_eq!(l.lat_all.max() / 1000, 50);
    // a second answer is a duplicate, not a second match
    l.on_reply(corr(1, 0), 310 * MS, &WIN, &books);
    assert_eq!(books.total.duplicates.load(Relaxed), 1);
    assert_eq!(books.total.matched.load(Relaxed), 1);
}

#[test]
fn timeouts_then_late_answers() {
    let mut l = lane(2, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(1);
    l.run_due(0, &WIN, &books, &mut out);
    l.expire(499 * MS, &WIN, &books);
    assert_eq!(books.total.timeouts.load(Relaxed), 0);
    l.expire(500 * MS, &WIN, &books);
    assert_eq!(books.total.timeouts.load(Relaxed), 1);
    assert_eq!(l.inflight, 0);
    l.on_reply(corr(0, 0), 700 * MS, &WIN, &books);
    assert_eq!(books.total.late.load(Relaxed), 1);
    assert_eq!(books.total.matched.load(Relaxed), 0);
    // a second late answer is a duplicate
    l.on_reply(corr(0, 0), 710 * MS, &WIN, &books);
    assert_eq!(books.total.duplicates.load(Relaxed), 1);
}

#[test]
fn inflight_cap_skips_and_counts() {
    let mut l = lane(1, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(1);
    l.run_due(0, &WIN, &books, &mut out);
    // with a long timeout the first request is still pending when the next is due
    l.spec.timeout_ns = 10_000 * MS;
    l.run_due(1000 * MS, &WIN, &books, &mut out);
    assert_eq!(books.total.sent.load(Relaxed), 1);
    assert_eq!(books.total.skipped.load(Relaxed), 1);
    // an answer to the skipped (never sent) cycle is invalid
    l.on_reply(corr(0, 1), 1001 * MS, &WIN, &books);
    assert_eq!(books.total.invalid.load(Relaxed), 1);
}

#[test]
fn foreign_and_future_replies_are_invalid() {
    let mut l = lane(2, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(1);
    l.run_due(0, &WIN, &books, &mut out);
    l.on_reply(
        Correlation {
            run: 7,
            ..corr(0, 0)
        },
        MS,
        &WIN,
        &books,
    );
    l.on_reply(corr(5, 0), MS, &WIN, &books);
    l.on_reply(corr(0, 9), MS, &WIN, &books);
    assert_eq!(books.total.invalid.load(Relaxed), 3);
    assert_eq!(books.total.matched.load(Relaxed), 0);
}

#[test]
fn a_pending_request_matches_after_more_than_the_remembered_cycles() {
    let mut l = lane(1, 64, Protocol::V5);
    l.spec.timeout_ns = 100_000 * MS;
    let books = Books::default();
    let mut out = Batches::new(1);
    for r in 0..40u64 {
        l.run_due(r * 1000 * MS, &WIN, &books, &mut out);
    }
    assert_eq!(l.inflight, 40);
    // cycle 0 was sent 39 intervals ago, beyond the 32-cycle window: still a match
    l.on_reply(corr(0, 0), 39_500 * MS, &WIN, &books);
    assert_eq!(books.total.matched.load(Relaxed), 1);
    assert_eq!(books.total.late.load(Relaxed), 0);
    assert_eq!(l.inflight, 39);
    // answered again: too old to tell apart, counted late (never a second match)
    l.on_reply(corr(0, 0), 39_600 * MS, &WIN, &books);
    assert_eq!(books.total.matched.load(Relaxed), 1);
}

#[test]
fn no_connection_is_a_publish_error_not_a_send() {
    let mut l = lane(2, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(1);
    out.usable[0] = false;
    l.run_due(600 * MS, &WIN, &books, &mut out);
    assert_eq!(books.total.publish_errors.load(Relaxed), 2);
    assert_eq!(books.total.sent.load(Relaxed), 0);
    assert_eq!(l.inflight, 0);
}

#[test]
fn full_batches_make_the_schedule_wait_not_drop() {
    let mut l = lane(10, 1, Protocol::V5);
    l.spec.batch_size = 3;
    let books = Books::default();
    let mut out = Batches::new(2);
    assert_eq!(l.run_due(999 * MS, &WIN, &books, &mut out), 6);
    out.counts = vec![0, 0];
    assert_eq!(l.run_due(999 * MS, &WIN, &books, &mut out), 4);
    assert_eq!(books.total.sent.load(Relaxed), 10);
    // the late sends carry their lag
    assert!(l.lag_recent.max() > 0);
}

#[test]
fn measured_window_books_close() {
    let mut l = lane(4, 1, Protocol::V4);
    let books = Books::default();
    let mut out = Batches::new(1);
    let win = Window {
        measure_from: 1000 * MS,
        stop_at: 3000 * MS,
    };
    let mut now = 0;
    while now < 5000 * MS {
        l.run_due(now, &win, &books, &mut out);
        // answer client 0 and 1 only
        for b in out.bufs.iter_mut() {
            let mut rest = &b[..];
            while let Some(f) = next_frame(rest, 1 << 20).unwrap() {
                let p = decode_publish(rest, f, Protocol::V4).unwrap();
                let c = correlation_of(&p);
                if c.client < 2 {
                    l.on_reply(c, now + MS, &win, &books);
                }
                rest = &rest[f.total_len..];
            }
            b.clear();
        }
        l.expire(now, &win, &books);
        now += 10 * MS;
    }
    let w = books.window.snapshot();
    assert_eq!(w.sent, 8);
    assert_eq!(w.matched, 4);
    assert_eq!(w.sent, w.matched + w.timeouts);
    assert_eq!(l.inflight, 0);
}

use std::sync::atomic::Ordering::Relaxed;

#[test]
fn qos1_requests_wait_for_room_under_the_receive_maximum() {
    let mut l = lane(10, 1, Protocol::V5);
    l.spec.qos = 1;
    let books = Books::default();
    let mut out = Batches::new(2);
    // the broker allows 2 more unacknowledged publishes on one connection, 3 on the other
    out.room = vec![2, 3];
    assert_eq!(l.run_due(999 * MS, &WIN, &books, &mut out), 5);
    assert_eq!(out.counts, vec![2, 3]);
    for (c, buf) in out.bufs.iter().enumerate() {
        let mut rest = &buf[..];
        let mut n = 0;
        while let Some(f) = next_frame(rest, 1 << 20).unwrap() {
            assert_eq!(decode_publish(rest, f, Protocol::V5).unwrap().qos, 1);
            rest = &rest[f.total_len..];
            n += 1;
        }
        assert_eq!(n, out.room[c]);
    }
    // the other five are still due: neither skipped nor errors, sent once there is room
    assert_eq!(books.total.skipped.load(Relaxed), 0);
    assert_eq!(books.total.publish_errors.load(Relaxed), 0);
    for b in out.bufs.iter_mut() {
        b.clear();
    }
    out.counts = vec![0, 0];
    out.room = vec![u32::MAX, u32::MAX];
    assert_eq!(l.run_due(999 * MS, &WIN, &books, &mut out), 5);
    assert_eq!(books.total.sent.load(Relaxed), 10);
}
