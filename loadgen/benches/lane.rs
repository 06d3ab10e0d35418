//! Micro-benchmarks of the scheduler lane: one tick's `run_due` with N requests due (encoding
//! them into the connection batches) and `on_reply` matching N answers.
//! `cargo bench -p loadgen --bench lane`; per-operation figures are in benchmarks/README.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use loadgen::rr::books::Books;
use loadgen::rr::lane::{Batches, Lane, LaneSpec, Topics, Window};
use rr_common::codec::Correlation;
use rr_common::mqtt::{codec::Protocol, Encoder as MqttEncoder};
use rr_common::transport::Encoder;
use std::time::{Duration, Instant};

const CONNS: usize = 100;
const RUN_ID: u32 = 0x5eed;
const TICK_NS: u64 = 1_000_000;

/// A lane of `n` clients with a 1 ms interval: a tick at `TICK_NS - 1 + i * TICK_NS` has exactly
/// the `n` requests of cycle `i` due.
fn lane(n: u32, proto: Protocol, expect_replies: bool) -> Lane {
    let spec = LaneSpec {
        lane: 0,
        lanes: 1,
        total_clients: n,
        interval_ns: TICK_NS,
        timeout_ns: 5_000_000_000,
        max_inflight: 1,
        run_id: RUN_ID,
        encoder: Encoder::Mqtt(MqttEncoder { proto }),
        qos: 0,
        shards: 256,
        expect_replies,
        batch_size: 512,
    };
    let topics = Topics {
        request: (0..256).map(|s| format!("req/{s}").into_bytes()).collect(),
        reply: (0..CONNS)
            .map(|c| format!("resp/bench-host/{c}").into_bytes())
            .collect(),
    };
    Lane::new(spec, topics, 256)
}

const WIN: Window = Window {
    measure_from: 0,
    stop_at: u64::MAX,
};

/// Starts a tick the way `run_lane` does: every connection usable, counts reset.
fn reset(out: &mut Batches) {
    for i in 0..out.bufs.len() {
        out.bufs[i].clear();
        out.counts[i] = 0;
        out.usable[i] = true;
        out.room[i] = u32::MAX;
    }
}

/// Answers every request of cycle `r` (all clients of a one-lane run).
fn answer_all(lane: &mut Lane, n: u32, r: u32, now: u64, books: &Books) {
    for g in 0..n {
        let c = Correlation {
            run: RUN_ID,
            client: g,
            seq: r,
        };
        lane.on_reply(c, now, &WIN, books);
    }
}

fn bench_lane(c: &mut Criterion) {
    let mut g = c.benchmark_group("lane");
    for n in [10u32, 100, 1000] {
        g.throughput(Throughput::Elements(u64::from(n)));
        for (name, proto, rr) in [
            ("pub/v5", Protocol::V5, false),
            ("rr/v5", Protocol::V5, true),
            ("rr/v4", Protocol::V4, true),
        ] {
            g.bench_with_input(
                BenchmarkId::new(format!("run_due/{name}"), n),
                &n,
                |b, &n| {
                    let books = Books::default();
                    let mut lane = lane(n, proto, rr);
                    let mut out = Batches::new(CONNS);
                    let mut now = TICK_NS - 1;
                    let mut cycle = 0u32;
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            reset(&mut out);
                            let t = Instant::now();
                            let done = lane.run_due(now, &WIN, &books, &mut out);
                            spent += t.elapsed();
                            assert_eq!(done, n);
                            if rr {
                                answer_all(&mut lane, n, cycle, now + 500_000, &books);
                            }
                            now += TICK_NS;
                            cycle += 1;
                        }
                        spent
                    })
                },
            );
        }
        g.bench_with_input(BenchmarkId::new("on_reply/v5", n), &n, |b, &n| {
            let books = Books::default();
            let mut lane = lane(n, Protocol::V5, true);
            let mut out = Batches::new(CONNS);
            let mut now = TICK_NS - 1;
            let mut cycle = 0u32;
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    reset(&mut out);
                    lane.run_due(now, &WIN, &books, &mut out);
                    let t = Instant::now();
                    answer_all(&mut lane, n, cycle, now + 500_000, &books);
                    spent += t.elapsed();
                    assert_eq!(lane.inflight, 0);
                    now += TICK_NS;
                    cycle += 1;
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_lane);
criterion_main!(benches);
