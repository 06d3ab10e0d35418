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
    l.merge_into(&books);
    assert_eq!(books.latency_all.snapshot().max() / 1000, 50);
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
    l.merge_into(&books);
    assert!(books.lag_recent.snapshot().max() > 0);
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

#[test]
fn noted_values_reach_every_histogram_they_count_in() {
    use crate::capacity::timeline::Sample;
    const S: u64 = 1000 * MS;
    // 10 clients due every 100 ms; answered 7 ms late in second 0, 14 ms in second 1, ...
    let mut l = lane(10, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(2);
    let win = Window {
        measure_from: S,
        stop_at: 4 * S,
    };
    let run = l.instrument().clone();
    run.open_step(2 * S, 3 * S);
    let lat = |sched: u64| (sched / S + 1) * 7 * MS;
    let mut answers: Vec<(Correlation, u64)> = Vec::new();
    for t in (0..4 * S).step_by(10 * MS as usize) {
        l.tick(t, &books);
        for (c, at) in answers.drain(..) {
            l.on_reply(c, at, &win, &books);
        }
        let before = books.total.sent.load(Relaxed);
        l.run_due(t, &win, &books, &mut out);
        if books.total.sent.load(Relaxed) > before {
            // phases are multiples of 100 ms: what was due at t was due exactly at t
            let k = ((t % S) / (100 * MS)) as u32;
            let r = (t / S) as u32;
            assert_eq!(l.sched(k, r), t);
            answers.push((corr(k, r), t + lat(t)));
        }
    }
    l.finish(&books);
    // nothing recorded twice or lost between the noting and the histograms
    assert_eq!(books.total.matched.load(Relaxed), 40);
    assert_eq!(books.latency_all.snapshot().len(), 40);
    assert_eq!(books.latency_recent.snapshot().len(), 40);
    assert_eq!(books.lag_recent.snapshot().len(), 40);
    // the measured window (scheduled from 1 s) and the capacity step (scheduled in [2 s, 3 s))
    let w = books.latency_window.snapshot();
    // (latencies in whole ms; the histograms keep 3 significant digits)
    let ms = |us: u64| (us + 500) / 1000;
    assert_eq!((w.len(), ms(w.min())), (30, 14));
    assert_eq!(books.lag_window.snapshot().len(), 30);
    let step = run.step_latency.snapshot();
    assert_eq!((step.len(), ms(step.min()), ms(step.max())), (10, 21, 21));
    // each second of the timeline holds the answers that arrived in it
    run.timeline.close_until(4, Sample::default());
    for s in 0..4 {
        let row = run.timeline.row(s).unwrap();
        assert_eq!(ms(row.p50_us), (s + 1) * 7, "second {s}");
    }
}

#[test]
fn a_burst_is_recorded_before_the_merge_with_bounded_memory() {
    let mut l = lane(20_000, 1, Protocol::V5);
    let books = Books::default();
    let mut out = Batches::new(2);
    out.counts = vec![0, 0];
    l.spec.batch_size = 20_000;
    assert_eq!(l.run_due(1000 * MS - 1, &WIN, &books, &mut out), 20_000);
    // no merge yet: the lane recorded the first DRAIN_AT lags itself and keeps the rest
    assert_eq!(books.lag_recent.snapshot().len(), DRAIN_AT as u64);
    assert_eq!(l.lag.len(), 20_000 - DRAIN_AT);
    l.merge_into(&books);
    assert_eq!(books.lag_recent.snapshot().len(), 20_000);
    assert!(l.lag.is_empty());
}
