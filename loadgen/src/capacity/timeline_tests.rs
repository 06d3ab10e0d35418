//! Tests of the timeline: exact sums however late an event comes, per-second latency, CSV.

use super::*;
use rr_common::stats::record_us;

/// A small deterministic generator (xorshift) for event streams.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const ALL: [Field; FIELDS] = [
    Field::Offered,
    Field::Sent,
    Field::Matched,
    Field::Timeout,
    Field::Late,
    Field::Duplicate,
    Field::Invalid,
    Field::Skipped,
    Field::PublishError,
];

#[test]
fn rows_add_up_exactly_to_the_totals_whatever_the_delays() {
    let timeline = Timeline::default();
    let timeout_ns = 2 * NS_PER_S;
    let mut lanes: Vec<LaneSeconds> = (0..3).map(|_| LaneSeconds::new(timeout_ns)).collect();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut want = vec![Counts::default(); 200];
    // 120 s of lane ticks every 10 ms; each tick counts events for its own second or, now and
    // then, for an older one (a timeout 2 s later, a late answer up to 100 s later)
    for tick in 0..12_000u64 {
        let now_ns = tick * 10_000_000;
        let now_sec = now_ns / NS_PER_S;
        for (l, lane) in lanes.iter_mut().enumerate() {
            lane.roll(now_sec, &timeline);
            for _ in 0..(rng.next() % 5) {
                let x = rng.next();
                let back = match x % 100 {
                    0 => (x >> 8) % 100, // a late answer, long after
                    1..=20 => 2,         // a timeout
                    _ => 0,
                };
                let sec = now_sec.saturating_sub(back);
                let f = ALL[((x >> 20) % FIELDS as u64) as usize];
                lane.add(sec, f);
                want[sec as usize].0[f as usize] += 1;
                let _ = l;
            }
        }
    }
    // a late answer after the lanes were flushed still counts
    lanes[0].add(5, Field::Late);
    want[5].0[Field::Late as usize] += 1;
    for lane in &mut lanes {
        lane.flush_all(&timeline);
    }
    let rows = timeline.rows(5);
    assert_eq!(rows.len(), 120);
    for (t, row) in rows.iter().enumerate() {
        let w = &want[t];
        let got = [
            row.offered,
            row.sent,
            row.matched,
            row.timeouts,
            row.late,
            row.duplicates,
            row.invalid,
            row.skipped,
            row.publish_errors,
        ];
        assert_eq!(got, w.0, "second {t}");
        assert_eq!(row.warmup, t < 5);
    }
    // the measured window's rows sum to its totals
    let mut total = Counts::default();
    for w in &want[5..] {
        total.add(w);
    }
    assert_eq!(timeline.sum(5, u64::MAX), total);
    assert!(total.get(Field::Sent) > 5_000, "{total:?}");
}

#[test]
fn a_second_closes_with_the_percentiles_of_the_answers_that_arrived_in_it() {
    let timeline = Timeline::default();
    let (mut lat, mut lag) = (new_histogram(), new_histogram());
    for us in 1..=1000 {
        record_us(&mut lat, us);
    }
    record_us(&mut lag, 250);
    timeline.merge_latency(3, &lat, &lag);
    let mut lat2 = new_histogram();
    record_us(&mut lat2, 5000);
    timeline.merge_latency(3, &lat2, &new_histogram());
    timeline.merge_latency(4, &lat2, &new_histogram());
    timeline.close_until(
        4,
        Sample {
            active_clients: 10.0,
            target_rate: 5.0,
            inflight: 7,
            reconnects: 1,
            worker_pool: Some(10),
        },
    );
    // a merge for a closed second folds into the first open one
    timeline.merge_latency(2, &lat2, &new_histogram());
    timeline.close_until(5, Sample::default());
    let rows = timeline.rows(0);
    assert_eq!(rows.len(), 5);
    let r3 = &rows[3];
    assert!((500..=502).contains(&r3.p50_us), "{r3:?}");
    assert!((899..=902).contains(&r3.p90_us), "{r3:?}");
    assert!((990..=1000).contains(&r3.p99_us), "{r3:?}");
    assert!((5000..=5003).contains(&r3.max_us), "{r3:?}");
    assert!((250..=251).contains(&r3.lag_p99_us));
    assert_eq!(
        (r3.inflight, r3.reconnects, r3.worker_pool),
        (7, 1, Some(10))
    );
    assert_eq!(r3.active_clients, 10.0);
    let r4 = &rows[4];
    assert!(
        (5000..=5003).contains(&r4.p50_us) && r4.max_us >= 5000,
        "{r4:?}"
    );
    assert_eq!(rows[0].p99_us, 0);
    // closing again changes nothing
    timeline.close_until(5, Sample::default());
    assert_eq!(timeline.rows(0), rows);
}

#[test]
fn csv_has_a_header_and_one_line_per_row() {
    let rows = vec![
        Row {
            t: 0,
            warmup: true,
            sent: 3,
            ..Row::default()
        },
        Row {
            t: 1,
            sent: 4,
            worker_pool: Some(10),
            ..Row::default()
        },
    ];
    let csv = to_csv(&rows);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines[1], "0,true,0,0,0,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,");
    assert_eq!(lines[2], "1,false,0,0,0,4,0,0,0,0,0,0,0,0,0,0,0,0,0,0,10");
    // every column of the header has a value in each line
    let cols = CSV_HEADER.split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == cols));
    // and the JSON row has exactly the CSV's columns
    let v = serde_json::to_value(&rows[1]).unwrap();
    let keys: Vec<&str> = CSV_HEADER.split(',').collect();
    assert_eq!(v.as_object().unwrap().len(), keys.len());
    assert!(keys.iter().all(|k| v.get(*k).is_some()));
}
