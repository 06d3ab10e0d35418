//! Lossless histograms in reports: HdrHistogram's V2 compressed encoding in base64 (the form
//! HdrHistogram's own interval logs use, so its other implementations read them too), decoding
//! with bounds checks, exact merging, and the "nines" percentile distribution for plots.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use rr_common::stats::{new_histogram, Summary};
use std::io::Read as _;

/// Longest base64 text accepted for one histogram (a 3-digit microsecond histogram of any
/// realistic run encodes to a few KiB; this bounds what a hostile `/report` can make us decode).
pub const MAX_ENCODED_LEN: usize = 8 << 20;

/// Report keys of the histograms a report carries under `histograms`.
pub const LATENCY: &str = "latency_us";
pub const SCHEDULE_LAG: &str = "schedule_lag_us";

/// Why an encoded histogram could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistError {
    #[error("is {0} characters long, more than the {MAX_ENCODED_LEN} accepted")]
    TooLong(usize),
    #[error("is not base64 ({0})")]
    Base64(String),
    #[error("is not an HdrHistogram V2 encoding ({0})")]
    Decode(String),
    #[error(
        "has bounds {low}..{high} with {sigfig} significant digits, outside 1..2^62 / 1..5 digits"
    )]
    Bounds { low: u64, high: u64, sigfig: u8 },
}

/// Encodes `h` as base64 of its V2 deflate-compressed serialization.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // serializing into a Vec only fails on a histogram whose counts overflow i64: not ours
    if V2DeflateSerializer::new().serialize(h, &mut bytes).is_err() {
        bytes.clear();
    }
    B64.encode(bytes)
}

/// Decodes what `encode` wrote (or any V2 / V2-compressed HdrHistogram encoding). The header
/// is checked before anything is allocated from it: the bounds (what the counts array costs) and
/// the payload length (which must be present), so hostile input cannot make us allocate much.
pub fn decode(text: &str) -> Result<Histogram<u64>, HistError> {
    let text = text.trim();
    if text.len() > MAX_ENCODED_LEN {
        return Err(HistError::TooLong(text.len()));
    }
    let bytes = B64
        .decode(text)
        .map_err(|e| HistError::Base64(e.to_string()))?;
    let plain = match be_u32(&bytes, 0) {
        Some(V2_COMPRESSED_COOKIE) => {
            let len = be_u32(&bytes, 4).unwrap_or(0) as usize;
            let zipped = bytes.get(8..8 + len).ok_or_else(|| bad("truncated"))?;
            let mut out = Vec::new();
            ZlibDecoder::new(zipped)
                .take(MAX_DECODED_LEN as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad(&e.to_string()))?;
            if out.len() > MAX_DECODED_LEN {
                return Err(bad("decompresses to more than 64 MiB"));
            }
            out
        }
        Some(V2_COOKIE) => bytes,
        _ => return Err(bad("unknown cookie")),
    };
    if be_u32(&plain, 0) != Some(V2_COOKIE) || plain.len() < 40 {
        return Err(bad("no V2 header"));
    }
    let payload = be_u32(&plain, 4).unwrap_or(u32::MAX) as usize;
    if payload > plain.len() - 40 {
        return Err(bad("truncated payload"));
    }
    let sigfig = be_u32(&plain, 12).unwrap_or(0).min(255) as u8;
    let low = be_u64(&plain, 16);
    let high = be_u64(&plain, 24);
    check_bounds(low, high, sigfig)?;
    Deserializer::new()
        .deserialize(&mut &plain[..40 + payload])
        .map_err(|e| HistError::Decode(format!("{e:?}")))
}

const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
const MAX_DECODED_LEN: usize = 64 << 20;

fn bad(why: &str) -> HistError {
    HistError::Decode(why.to_string())
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let hi = be_u32(b, at).unwrap_or(0);
    let lo = be_u32(b, at + 4).unwrap_or(0);
    (u64::from(hi) << 32) | u64::from(lo)
}

fn check_bounds(low: u64, high: u64, sigfig: u8) -> Result<(), HistError> {
    if low == 0 || high < 2 * low || high > (1 << 62) || !(1..=5).contains(&sigfig) {
        return Err(HistError::Bounds { low, high, sigfig });
    }
    Ok(())
}

/// Adds every count of `src` into `into` exactly (growing `into` if `src` holds larger values).
pub fn merge_into(into: &mut Histogram<u64>, src: &Histogram<u64>) {
    into.auto(true);
    if into.add(src).is_err() {
        // different bucket layouts that `add` refuses: record value by value (still exact at
        // the coarser of the two precisions)
        for v in src.iter_recorded() {
            let _ = into.record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// An empty histogram of the layout every report uses.
pub fn empty() -> Histogram<u64> {
    new_histogram()
}

/// Percentile summary (the report's `latency_us` shape) of a histogram.
pub fn summary(h: &Histogram<u64>) -> Summary {
    Summary::of(h)
}

/// The "nines" at which percentile plots are labelled: 0, 90, 99, 99.9, ... as fractions.
pub const NINES_TICKS: &[(f64, &str)] = &[
    (0.0, "0%"),
    (0.9, "90%"),
    (0.99, "99%"),
    (0.999, "99.9%"),
    (0.9999, "99.99%"),
    (0.99999, "99.999%"),
    (0.999999, "99.9999%"),
];

/// The x coordinate of quantile `q` on a nines axis: log10(1 / (1 - q)), so 90% is 1, 99% is 2.
pub fn nines_x(q: f64) -> f64 {
    let q = q.clamp(0.0, 1.0 - 1e-12);
    -(1.0 - q).log10()
}

/// The percentile distribution as HdrHistogram plots it: (nines x, value) points from the
/// minimum up to the maximum, denser towards the tail. Empty for an empty histogram.
pub fn nines_points(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    // the last quantile that still holds at least one sample
    let top = nines_x(1.0 - 1.0 / n).max(0.0);
    let mut pts = Vec::new();
    let steps = 240;
    for i in 0..=steps {
        let x = top * f64::from(i) / f64::from(steps);
        let q = 1.0 - 10f64.powf(-x);
        pts.push((x, h.value_at_quantile(q)));
    }
    pts.push((top, h.max()));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rr_common::stats::record_us;

    fn sample(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            record_us(&mut h, v);
        }
        h
    }

    #[test]
    fn round_trip_keeps_every_count() {
        let h = sample((1..5000).map(|i| i * 37 % 100_000 + 1));
        let text = encode(&h);
        assert!(text.len() < 20_000, "encoding is {} chars", text.len());
        let back = decode(&text).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
        assert_eq!(back.min(), h.min());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q));
        }
        assert_eq!(
            back.iter_recorded()
                .map(|v| v.count_at_value())
                .sum::<u64>(),
            h.len()
        );
    }

    #[test]
    fn empty_round_trips() {
        let back = decode(&encode(&new_histogram())).unwrap();
        assert!(back.is_empty());
        assert!(nines_points(&back).is_empty());
    }

    #[test]
    fn merge_equals_one_histogram_of_both() {
        let a = sample((0..3000).map(|i| 100 + i));
        let b = sample((0..1000).map(|i| 50_000 + i * 13));
        let both = sample(
            (0..3000)
                .map(|i| 100 + i)
                .chain((0..1000).map(|i| 50_000 + i * 13)),
        );
        let mut m = empty();
        merge_into(&mut m, &decode(&encode(&a)).unwrap());
        merge_into(&mut m, &decode(&encode(&b)).unwrap());
        assert_eq!(summary(&m), summary(&both));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode("%%%"), Err(HistError::Base64(_))));
        assert!(matches!(
            decode("aGVsbG8gd29ybGQ="),
            Err(HistError::Decode(_))
        ));
        let mut bytes = B64.decode(encode(&sample([5, 6, 7]))).unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(decode(&B64.encode(&bytes)).is_err());
        assert!(matches!(
            decode(&"A".repeat(MAX_ENCODED_LEN + 4)),
            Err(HistError::TooLong(_))
        ));
        // a V2 header asking for absurd bounds is refused before allocation
        let mut hdr = vec![0x1c, 0x84, 0x93, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        hdr.extend_from_slice(&1u64.to_be_bytes());
        hdr.extend_from_slice(&u64::MAX.to_be_bytes());
        hdr.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode(&B64.encode(&hdr)),
            Err(HistError::Bounds { .. })
        ));
        // a payload length larger than what follows is refused (no 4 GiB buffer)
        let mut hdr = vec![
            0x1c, 0x84, 0x93, 0x13, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3,
        ];
        hdr.extend_from_slice(&1u64.to_be_bytes());
        hdr.extend_from_slice(&1000u64.to_be_bytes());
        hdr.extend_from_slice(&1f64.to_be_bytes());
        assert_eq!(decode(&B64.encode(&hdr)), Err(bad("truncated payload")));
    }

    #[test]
    fn nines_axis_places_the_tail() {
        assert!((nines_x(0.9) - 1.0).abs() < 1e-9);
        assert!((nines_x(0.999) - 3.0).abs() < 1e-9);
        let h = sample((1..=10_000).map(|i| i as u64));
        let pts = nines_points(&h);
        assert_eq!(pts.first().unwrap().0, 0.0);
        assert!(
            (pts.last().unwrap().0 - 4.0).abs() < 1e-6,
            "{:?}",
            pts.last()
        );
        assert_eq!(pts.last().unwrap().1, h.max());
        assert!(pts.windows(2).all(|w| w[1].1 >= w[0].1), "monotone");
    }
}
