//! How the project's topic layout maps onto Kafka (pure, no I/O): legal topic names, subjects
//! onto topics, keys and partitions (`SUBJECT_TOPIC`), and the request/reply topics of rr.
//!
//! - Kafka topic names are 1-249 characters of `[A-Za-z0-9._-]`. Names from the MQTT layout
//!   are mapped by [`sanitize`]: `/` becomes `.`, any other character outside the set `_`.
//! - Fan-out: every subject is produced with the subject's name (`{SUBJECT_PREFIX}{n}`) as the
//!   record key, to topic [`SubjectTopics::topic_of`], partition `n mod partitions`. One subject
//!   therefore always lands in one partition, in publish order, and its per-subject sequence
//!   numbers are a subsequence of that partition's order.
//! - rr: requests go to one topic named after `REQ_TOPIC_PREFIX` (`req`), key = the shard
//!   number, partition `shard mod partitions`; replies to `resp.{INSTANCE_ID}`, one partition
//!   per reply consumer.

/// Longest legal Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;
/// Placeholder of `SUBJECT_TOPIC` for one topic per subject.
pub const SUBJECT_PLACEHOLDER: &str = "{subject}";

/// Whether `t` is a legal Kafka topic name.
pub fn is_legal_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOPIC_LEN
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Maps a name from the MQTT layout to a legal topic name (`/` → `.`, any other byte outside
/// the legal set → `_`), cut to [`MAX_TOPIC_LEN`].
pub fn sanitize(name: &str) -> String {
    let mut out = [0u8; MAX_TOPIC_LEN];
    let n = sanitize_into(name.as_bytes(), &mut out);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// [`sanitize`] into a caller's buffer, without allocating; returns the length written.
pub fn sanitize_into(name: &[u8], out: &mut [u8; MAX_TOPIC_LEN]) -> usize {
    let mut n = 0;
    for &b in name.iter().take(MAX_TOPIC_LEN) {
        out[n] = match b {
            b'/' => b'.',
            b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') => b,
            _ => b'_',
        };
        n += 1;
    }
    match &out[..n] {
        [] => {
            out[0] = b'_';
            1
        }
        b"." | b".." => {
            out[..n].fill(b'_');
            n
        }
        _ => n,
    }
}

/// Splits an MQTT-layout topic at its last level: `req/17` → (`req`, `17`). A topic of one
/// level has no last level to split off.
pub fn split_last(topic: &[u8]) -> (&[u8], Option<&[u8]>) {
    match topic.iter().rposition(|b| *b == b'/') {
        Some(i) if i > 0 => (&topic[..i], Some(&topic[i + 1..])),
        _ => (topic, None),
    }
}

/// A decimal partition number (`0`..=`i32::MAX`), as the last level of a reply topic names it.
pub fn parse_partition(level: &[u8]) -> Option<i32> {
    if level.is_empty() || level.len() > 10 || !level.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(level).ok()?.parse().ok()
}

/// The topic the worker consumes for an MQTT filter such as `req/+`: the levels before the
/// first wildcard, sanitized (`req/+` → `req`, `a/b/#` → `a.b`).
pub fn topic_of_filter(filter: &str) -> Option<String> {
    let levels: Vec<&str> = filter
        .split('/')
        .take_while(|l| *l != "+" && *l != "#")
        .collect();
    let joined = levels.join("/");
    let trimmed = joined.trim_matches('/');
    (!trimmed.is_empty()).then(|| sanitize(trimmed))
}

/// The reply topic of one loadgen instance: `resp.{instance}`.
pub fn reply_topic(instance: &str) -> String {
    sanitize(&format!("resp/{instance}"))
}

/// Partition of subject (or shard) `n` in a topic of `partitions` partitions.
pub fn partition_of(n: u32, partitions: u32) -> i32 {
    (n % partitions.max(1)) as i32
}

/// `SUBJECT_TOPIC`: one topic for every subject (default `fanout`), or one per subject when the
/// template holds `{subject}` (`s.{subject}` → `s.u.s17` for subject `u/s17`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectTopics {
    template: String,
}

impl SubjectTopics {
    /// Checks the template.
    ///
    /// # Errors
    /// A message naming what is wrong (placeholder twice, illegal characters, empty).
    pub fn parse(template: &str) -> Result<SubjectTopics, String> {
        let t = template.trim();
        if t.matches(SUBJECT_PLACEHOLDER).count() > 1 {
            return Err(format!("'{t}' may hold {SUBJECT_PLACEHOLDER} at most once"));
        }
        let fixed = t.replace(SUBJECT_PLACEHOLDER, "x");
        if !is_legal_topic(&fixed) {
            return Err(format!(
                "'{t}' must be a Kafka topic name (1-{MAX_TOPIC_LEN} of A-Z a-z 0-9 . _ -), optionally holding {SUBJECT_PLACEHOLDER}"
            ));
        }
        Ok(SubjectTopics {
            template: t.to_string(),
        })
    }

    /// One topic per subject.
    pub fn per_subject(&self) -> bool {
        self.template.contains(SUBJECT_PLACEHOLDER)
    }

    /// The topic subject `name` is produced to.
    pub fn topic_of(&self, name: &str) -> String {
        if self.per_subject() {
            let t = self.template.replace(SUBJECT_PLACEHOLDER, &sanitize(name));
            t.chars().take(MAX_TOPIC_LEN).collect()
        } else {
            self.template.clone()
        }
    }

    /// The distinct topics of the given subjects, in first-seen order.
    pub fn topics<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        if !self.per_subject() {
            return vec![self.template.clone()];
        }
        let mut seen = std::collections::HashSet::new();
        names
            .into_iter()
            .map(|n| self.topic_of(n))
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }
}

impl std::fmt::Display for SubjectTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafkas_rules() {
        for ok in ["fanout", "resp.lg-1", "a_b", "x".repeat(249).as_str()] {
            assert!(is_legal_topic(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", "x".repeat(250).as_str()] {
            assert!(!is_legal_topic(bad), "{bad}");
        }
        assert_eq!(sanitize("u/s17"), "u.s17");
        assert_eq!(sanitize("a b+c"), "a_b_c");
        assert_eq!(sanitize("é"), "__", "per byte");
        assert_eq!(sanitize(".."), "__");
        assert_eq!(sanitize("/"), "_");
        assert_eq!(sanitize(""), "_");
        assert!(is_legal_topic(&sanitize(&"é/".repeat(300))));
        assert_eq!(reply_topic("lg-1"), "resp.lg-1");
        assert_eq!(reply_topic("host name"), "resp.host_name");
    }

    #[test]
    fn topics_split_at_their_last_level() {
        assert_eq!(split_last(b"req/17"), (&b"req"[..], Some(&b"17"[..])));
        assert_eq!(split_last(b"resp/lg/3"), (&b"resp/lg"[..], Some(&b"3"[..])));
        assert_eq!(split_last(b"req"), (&b"req"[..], None));
        assert_eq!(split_last(b"/x"), (&b"/x"[..], None));
        assert_eq!(parse_partition(b"3"), Some(3));
        assert_eq!(parse_partition(b"2147483647"), Some(i32::MAX));
        for bad in [&b""[..], b"-1", b"2147483648", b"x", b"1a", b"99999999999"] {
            assert_eq!(parse_partition(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn filters_map_to_their_fixed_levels() {
        assert_eq!(topic_of_filter("req/+").as_deref(), Some("req"));
        assert_eq!(topic_of_filter("a/b/#").as_deref(), Some("a.b"));
        assert_eq!(topic_of_filter("req").as_deref(), Some("req"));
        assert_eq!(topic_of_filter("+/x"), None);
        assert_eq!(topic_of_filter("#"), None);
    }

    #[test]
    fn subjects_map_to_one_topic_or_one_each() {
        let one = SubjectTopics::parse("fanout").unwrap();
        assert!(!one.per_subject());
        assert_eq!(one.topic_of("u/s17"), "fanout");
        assert_eq!(one.topics(["u/s1", "u/s2"]), vec!["fanout"]);
        let each = SubjectTopics::parse("s.{subject}").unwrap();
        assert!(each.per_subject());
        assert_eq!(each.topic_of("u/s17"), "s.u.s17");
        assert_eq!(
            each.topics(["u/s1", "u/s2", "u/s1"]),
            vec!["s.u.s1", "s.u.s2"]
        );
        for bad in ["", "a/b", "{subject}{subject}", "x y{subject}"] {
            assert!(SubjectTopics::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(partition_of(17, 8), 1);
        assert_eq!(partition_of(5, 0), 0);
    }
}
