//! Micro-benchmarks of the MQTT codec: PUBLISH encode/decode as loadgen and worker use them.
//! `cargo bench -p rr-common --bench codec`; per-operation figures are in benchmarks/README.md.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rr_common::codec::{self as wire, Correlation};
use rr_common::mqtt::codec::{self, Protocol};
use rr_common::mqtt::Encoder;
use std::hint::black_box;

const BODY: [u8; 256] = [b'a'; 256];

fn corr() -> [u8; wire::CORRELATION_LEN] {
    Correlation {
        run: 0xdead_beef,
        client: 123_456,
        seq: 42,
    }
    .to_bytes()
}

/// One request as loadgen encodes it (MQTT 5 properties, or the 3.1.1 payload header).
fn encode_request(buf: &mut BytesMut, proto: Protocol) {
    let reply = b"resp/bench-host/17";
    Encoder { proto }.request(buf, b"req/123", reply, &corr(), &BODY, 0);
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (name, proto) in [("v5", Protocol::V5), ("v4", Protocol::V4)] {
        g.bench_function(format!("encode_publish/{name}/256B"), |b| {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                if buf.len() > 60 * 1024 {
                    buf.clear();
                }
                encode_request(&mut buf, black_box(proto));
            })
        });
        let mut one = BytesMut::new();
        encode_request(&mut one, proto);
        let frame_bytes = one.freeze();
        g.bench_function(format!("decode_publish+reply_to/{name}/256B"), |b| {
            b.iter(|| {
                let bytes = black_box(&frame_bytes[..]);
                let f = codec::next_frame(bytes, 1 << 20).unwrap().unwrap();
                let p = codec::decode_publish(bytes, f, proto).unwrap();
                black_box(
                    codec::to_message(&p, f.total_len)
                        .unwrap()
                        .reply_to
                        .unwrap(),
                );
            })
        });
        // The worker's whole per-request codec work: decode, find the reply address, encode the answer.
        g.bench_function(format!("worker_answer/{name}"), |b| {
            let mut out = BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                if out.len() > 60 * 1024 {
                    out.clear();
                }
                let bytes = black_box(&frame_bytes[..]);
                let f = codec::next_frame(bytes, 1 << 20).unwrap().unwrap();
                let p = codec::decode_publish(bytes, f, proto).unwrap();
                let m = codec::to_message(&p, f.total_len).unwrap();
                Encoder { proto }.answer(&mut out, &m, b"ok", 0);
            })
        });
        // loadgen's per-reply codec work: frame, decode, extract the correlation.
        let mut resp = BytesMut::new();
        {
            let f = codec::next_frame(&frame_bytes, 1 << 20).unwrap().unwrap();
            let p = codec::decode_publish(&frame_bytes, f, proto).unwrap();
            let m = codec::to_message(&p, f.total_len).unwrap();
            Encoder { proto }.answer(&mut resp, &m, b"ok", 0);
        }
        let resp = resp.freeze();
        g.bench_function(format!("decode_response_correlation/{name}"), |b| {
            b.iter(|| {
                let bytes = black_box(&resp[..]);
                let f = codec::next_frame(bytes, 1 << 20).unwrap().unwrap();
                let p = codec::decode_publish(bytes, f, proto).unwrap();
                let m = codec::to_message(&p, f.total_len).unwrap();
                black_box(Correlation::from_bytes(m.correlation.unwrap()).unwrap())
            })
        });
    }
    // Framing a read of 100 back-to-back answers.
    let mut many = BytesMut::new();
    for _ in 0..100 {
        encode_request(&mut many, Protocol::V5);
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("next_frame/100_frames", |b| {
        b.iter_batched(
            || many.clone(),
            |buf| {
                let mut at = 0;
                while let Some(f) = codec::next_frame(&buf[at..], 1 << 20).unwrap() {
                    at += f.total_len;
                }
                black_box(at)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
