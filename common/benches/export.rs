//! What a `/metrics` scrape costs: latency histograms written from bucket totals (what
//! `prom::Exporter` does) against replaying the same samples through the metrics-exporter-prometheus
//! recorder with `record_many(value, count)` per bucket (its storage keeps one entry per sample).
//! `cargo bench -p rr-common --bench export`; figures in benchmarks/README.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use metrics::{Key, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use rr_common::prom::Exporter;
use rr_common::stats::{new_histogram, record_us, AtomicBuckets, BucketTotals, LATENCY_BUCKETS};
use std::hint::black_box;

/// Samples between two scrapes: 10k req/s scraped every 10 s.
const SAMPLES: u64 = 100_000;

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// A latency distribution of `SAMPLES` values spread from 100 µs to ~50 ms.
fn samples() -> hdrhistogram::Histogram<u64> {
    let mut h = new_histogram();
    for i in 0..SAMPLES {
        record_us(&mut h, 100 + (i * 7919) % 50_000);
    }
    h
}

fn scrape(c: &mut Criterion) {
    let h = samples();
    let totals = BucketTotals::of_hdr(&h);
    let mut g = c.benchmark_group("scrape");

    // what /metrics does: counters set, histograms from totals
    let e = Exporter::new();
    let sent = e.counter("x_sent_total", "sent");
    let lat = e.histogram("x_latency_seconds", "latency");
    g.bench_function(
        "exporter render, 1 counter + 1 histogram from totals",
        |b| {
            b.iter(|| {
                sent.absolute(SAMPLES);
                black_box(e.render(&[(&lat, black_box(totals))]))
            })
        },
    );
    g.bench_function("BucketTotals::of_hdr (loadgen latency histogram)", |b| {
        b.iter(|| black_box(BucketTotals::of_hdr(black_box(&h))))
    });
    let ab = AtomicBuckets::default();
    for i in 0..SAMPLES {
        ab.record_us(100 + (i * 7919) % 50_000);
    }
    g.bench_function("AtomicBuckets::totals (worker)", |b| {
        b.iter(|| black_box(ab.totals()))
    });

    // the alternative: replay the interval's samples per bucket into the recorder, then render
    let r = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .unwrap()
        .build_recorder();
    let handle = r.handle();
    let hist = r.register_histogram(&Key::from_static_name("x_latency_seconds"), &META);
    g.throughput(Throughput::Elements(SAMPLES));
    g.bench_function(
        "recorder replay record_many per bucket + render, per sample",
        |b| {
            b.iter_batched(
                || totals,
                |t| {
                    for (i, n) in t.counts.iter().enumerate() {
                        let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(60.0);
                        hist.record_many(bound, *n as usize);
                    }
                    black_box(handle.render())
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
