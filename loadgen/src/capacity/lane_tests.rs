//! The gate and the timeline inside real scheduler lanes (no sockets): a staged profile is
//! offered second by second as planned, every request still resolves, and the timeline rows of
//! the measured window add up exactly to the window's books.

use super::profile::Profile;
use super::tally::Instrument;
use super::timeline::{Field, NS_PER_S};
use crate::rr::books::Books;
use crate::rr::lane::{Batches, Lane, LaneSpec, Topics, Window};
use rr_common::codec::Correlation;
use rr_common::mqtt::codec::{decode_publish, next_frame, to_message, Protocol};
use rr_common::mqtt::Encoder as MqttEncoder;
use rr_common::transport::Encoder;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const MS: u64 = 1_000_000;
const S: u64 = NS_PER_S;
const RUN: u32 = 7;

fn lanes(n: u32, clients: u32, run: &Arc<Instrument>) -> Vec<Lane> {
    (0..n)
        .map(|l| {
            let spec = LaneSpec {
                lane: l,
                lanes: n,
                total_clients: clients,
                interval_ns: S,
                timeout_ns: 500 * MS,
                max_inflight: 1,
                run_id: RUN,
                encoder: Encoder::Mqtt(MqttEncoder {
                    proto: Protocol::V5,
                }),
                qos: 0,
                shards: 4,
                expect_replies: true,
                batch_size: 100_000,
            };
            let topics = Topics {
                request: (0..4).map(|s| format!("req/{s}").into_bytes()).collect(),
                reply: vec![b"resp/t/0".to_vec()],
            };
            Lane::with_instrument(spec, topics, 8, run.clone())
        })
        .collect()
}

/// Correlations of every request encoded into `out`, which is then cleared.
fn sent(out: &mut Batches) -> Vec<Correlation> {
    let mut v = Vec::new();
    for b in &mut out.bufs {
        let mut rest = &b[..];
        while let Some(f) = next_frame(rest, 1 << 20).unwrap() {
            let p = decode_publish(rest, f, Protocol::V5).unwrap();
            let m = to_message(&p, 0).unwrap();
            v.push(Correlation::from_bytes(m.correlation.unwrap()).unwrap());
            rest = &rest[f.total_len..];
        }
        b.clear();
    }
    for c in &mut out.counts {
        *c = 0;
    }
    v
}

#[test]
fn a_staged_profile_is_offered_as_planned_and_the_books_close() {
    // 2,000 clients at 1 s: 0 → 1,500 req/s in 4 s, hold 4 s, down to 300 req/s in 4 s
    let profile = Profile::ramps(&[(4 * S, 1500.0), (4 * S, 1500.0), (4 * S, 300.0)]);
    let run = Arc::new(Instrument::new(profile.clone(), 2, 1.0));
    let mut ls = lanes(2, 2000, &run);
    let books = Books::default();
    let mut outs: Vec<Batches> = (0..2).map(|_| Batches::new(1)).collect();
    let win = Window {
        measure_from: 2 * S,
        stop_at: 12 * S,
    };
    // answers after 20 ms; every 50th never, every 97th after 800 ms (late)
    let mut answers: Vec<BinaryHeap<Reverse<(u64, u32, u32)>>> = vec![BinaryHeap::new(); 2];
    let mut n = 0u64;
    let mut t = 0;
    while t < 13 * S {
        for (i, l) in ls.iter_mut().enumerate() {
            l.tick(t, &books);
            while let Some(&Reverse((at, client, seq))) = answers[i].peek() {
                if at > t {
                    break;
                }
                answers[i].pop();
                l.on_reply(
                    Correlation {
                        run: RUN,
                        client,
                        seq,
                    },
                    at,
                    &win,
                    &books,
                );
            }
            l.expire(t, &win, &books);
            l.run_due(t, &win, &books, &mut outs[i]);
            for c in sent(&mut outs[i]) {
                n += 1;
                let delay = match n {
                    n if n % 50 == 0 => continue,
                    n if n % 97 == 0 => 800 * MS,
                    _ => 20 * MS,
                };
                answers[i].push(Reverse((t + delay, c.client, c.seq)));
            }
        }
        t += MS;
    }
    for l in &mut ls {
        l.expire(u64::MAX / 2, &win, &books);
        l.finish(&books);
    }
    let w = books.window.snapshot();
    assert_eq!(books.inflight.load(Relaxed), 0);
    assert_eq!(w.sent, w.matched + w.timeouts, "the books close");
    assert!(w.late > 0 && w.timeouts > w.late);
    // the window's rows add up to its books, column by column
    let c = run.timeline.sum(2, u64::MAX);
    assert_eq!(c.get(Field::Sent), w.sent);
    assert_eq!(c.get(Field::Matched), w.matched);
    assert_eq!(c.get(Field::Timeout), w.timeouts);
    assert_eq!(c.get(Field::Late), w.late);
    assert_eq!(c.get(Field::Duplicate), w.duplicates);
    assert_eq!(c.get(Field::Skipped), w.skipped);
    assert_eq!(c.get(Field::Offered), w.sent + w.skipped + w.publish_errors);
    // each second offers what the profile plans (1 s interval: requests = client-seconds)
    for sec in 0..12 {
        let row = run.timeline.sum(sec, sec + 1);
        let want = profile.integral(sec * S, (sec + 1) * S) / S as f64;
        let got = row.get(Field::Offered) as f64;
        assert!(
            (got - want).abs() <= 0.01 * want + 2.0,
            "second {sec}: {got} vs {want}"
        );
    }
    assert_eq!(
        run.timeline.sum(12, u64::MAX).get(Field::Offered),
        0,
        "nothing after the stop"
    );
}

#[test]
fn an_answer_for_a_slot_the_profile_did_not_offer_is_invalid() {
    // 10 clients, 1 active: the others' slots are never sent
    let run = Arc::new(Instrument::new(Profile::constant(1.0), 1, 1.0));
    let mut ls = lanes(1, 10, &run);
    let books = Books::default();
    let mut out = Batches::new(1);
    let win = Window {
        measure_from: 0,
        stop_at: u64::MAX,
    };
    for t in (0..3 * S).step_by(MS as usize) {
        ls[0].tick(t, &books);
        ls[0].expire(t, &win, &books);
        ls[0].run_due(t, &win, &books, &mut out);
    }
    let got = sent(&mut out);
    assert_eq!(got.len(), 3, "one client, three cycles");
    let active = got[0].client;
    assert!(got.iter().all(|c| c.client == active));
    for g in (0..10).filter(|&g| g != active) {
        ls[0].on_reply(
            Correlation {
                run: RUN,
                client: g,
                seq: 1,
            },
            3 * S,
            &win,
            &books,
        );
    }
    assert_eq!(books.total.invalid.load(Relaxed), 9);
    assert_eq!(
        books.total.late.load(Relaxed) + books.total.duplicates.load(Relaxed),
        0
    );
}
