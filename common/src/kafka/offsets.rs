//! The offsets a Kafka consumer handed on, per partition: a record at or below the last one
//! handed on is one the client reads again (redelivered), offsets jumped over are records it
//! never got (skipped). Both are counted rather than filtered: the books see every record the
//! client hands over (docs/kafka.md, "Duplicates and gaps"). After a group rebalance a
//! partition's offsets start again (a partition handed back may resume anywhere).

/// Per partition of each topic, the offset of the last record handed on. One topic is usual
/// (the fan-out topic, the request topic): the last one used is looked up first.
#[derive(Debug, Default)]
pub(super) struct Offsets {
    topics: Vec<(String, Vec<i64>)>,
    last: usize,
    /// The consumer's rebalance generation these offsets belong to.
    generation: u64,
    /// Records at or below an offset already handed on, since [`Offsets::take`].
    redelivered: u64,
    /// Offsets jumped over, since [`Offsets::take`].
    skipped: u64,
}

impl Offsets {
    /// Notes a record at `offset` of `topic`'s `partition`, handed on in rebalance generation
    /// `generation` of the consumer.
    pub fn see(&mut self, generation: u64, topic: &str, partition: i32, offset: i64) {
        if generation != self.generation {
            self.generation = generation;
            for (_, v) in &mut self.topics {
                v.fill(-1);
            }
        }
        let i = if self.topics.get(self.last).is_some_and(|(t, _)| t == topic) {
            self.last
        } else {
            match self.topics.iter().position(|(t, _)| t == topic) {
                Some(i) => i,
                None => {
                    self.topics.push((topic.to_string(), Vec::new()));
                    self.topics.len() - 1
                }
            }
        };
        self.last = i;
        let (Ok(p), true) = (usize::try_from(partition), offset >= 0) else {
            return;
        };
        let v = &mut self.topics[i].1;
        if v.len() <= p {
            v.resize(p + 1, -1);
        }
        let prev = v[p];
        if offset <= prev {
            self.redelivered += 1;
        } else {
            if prev >= 0 {
                self.skipped += (offset - prev - 1) as u64;
            }
            v[p] = offset;
        }
    }

    /// Redelivered and skipped records since the last call.
    pub fn take(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.redelivered),
            std::mem::take(&mut self.skipped),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewinds_are_redeliveries_and_jumps_are_skips() {
        let mut o = Offsets::default();
        // the first record of a partition is the baseline, wherever it is
        for off in [40, 41, 42] {
            o.see(0, "fanout", 2, off);
        }
        o.see(0, "fanout", 0, 7);
        assert_eq!(o.take(), (0, 0));
        // the same record twice in a row (as tansu's fetch responses had it), then a rewind of
        // three records
        o.see(0, "fanout", 2, 42);
        for off in [40, 41, 42, 43] {
            o.see(0, "fanout", 2, off);
        }
        assert_eq!(o.take(), (4, 0));
        // 44 and 45 never came; partition 0 and another topic are apart
        o.see(0, "fanout", 2, 46);
        o.see(0, "other", 2, 1);
        o.see(0, "fanout", 0, 8);
        assert_eq!(o.take(), (0, 2));
        // a rebalance: the partition may resume anywhere, earlier or later
        o.see(1, "fanout", 2, 30);
        o.see(1, "fanout", 0, 100);
        assert_eq!(o.take(), (0, 0));
        o.see(1, "fanout", 2, 30);
        assert_eq!(o.take(), (1, 0));
        // no partition or offset: not counted
        o.see(1, "fanout", -1, 5);
        o.see(1, "fanout", 2, -1001);
        assert_eq!(o.take(), (0, 0));
    }
}
