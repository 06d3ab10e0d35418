//! Record descriptors: how engines' batches for a Kafka link are laid out (pure, no I/O).
//!
//! Engines encode into one buffer per connection per tick and hand it to the link, whatever
//! the transport. For Kafka the buffer holds records for librdkafka's `produce`, each:
//!
//! | size | field |
//! |---|---|
//! | 4 | length of the rest of this record (u32, big endian) |
//! | 1 | flags: bit 0 a key follows, bit 1 a partition follows |
//! | 1 + n | topic: length `n` (u8, 1..=249), then the name (ASCII) |
//! | 4 | partition (i32), when flagged |
//! | 2 + k | key: length `k` (u16), then the bytes, when flagged |
//! | 1 | header count `h` (0..=8) |
//! | h × (1 + a + 2 + b) | header: name length `a` (u8), name (ASCII), value length `b` (u16), value |
//! | rest | value |
//!
//! The encoder writes only what the decoder reads back; the decoder still checks every length,
//! so a damaged batch is an error, never a panic or an out-of-bounds read.

use bytes::{BufMut, BytesMut};

/// Most headers one record carries.
pub const MAX_HEADERS: usize = 8;
const FLAG_KEY: u8 = 1;
const FLAG_PARTITION: u8 = 2;

/// One record, borrowed from a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    headers: [(&'a str, &'a [u8]); MAX_HEADERS],
    header_count: usize,
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn headers(&self) -> &[(&'a str, &'a [u8])] {
        &self.headers[..self.header_count]
    }
}

/// What [`put`] writes: everything but the value, which comes in pieces.
#[derive(Copy, Clone, Debug)]
pub struct Head<'a> {
    pub topic: &'a [u8],
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Appends one record. Topic names longer than 255 bytes, keys and header values longer than
/// 65535 bytes, names longer than 255 and more than [`MAX_HEADERS`] headers are cut (the
/// encoders never produce them: topic names are at most 249, keys and headers are short).
pub fn put(buf: &mut BytesMut, head: &Head<'_>, value: &[&[u8]]) {
    let topic = &head.topic[..head.topic.len().min(255)];
    let key = head.key.map(|k| &k[..k.len().min(u16::MAX as usize)]);
    let headers = &head.headers[..head.headers.len().min(MAX_HEADERS)];
    let value_len: usize = value.iter().map(|v| v.len()).sum();
    let len = 1
        + 1
        + topic.len()
        + head.partition.map_or(0, |_| 4)
        + key.map_or(0, |k| 2 + k.len())
        + 1
        + headers
            .iter()
            .map(|(n, v)| 1 + n.len().min(255) + 2 + v.len().min(u16::MAX as usize))
            .sum::<usize>()
        + value_len;
    buf.reserve(4 + len);
    buf.put_u32(len as u32);
    let flags = if key.is_some() { FLAG_KEY } else { 0 }
        | if head.partition.is_some() {
            FLAG_PARTITION
        } else {
            0
        };
    buf.put_u8(flags);
    buf.put_u8(topic.len() as u8);
    buf.put_slice(topic);
    if let Some(p) = head.partition {
        buf.put_i32(p);
    }
    if let Some(k) = key {
        buf.put_u16(k.len() as u16);
        buf.put_slice(k);
    }
    buf.put_u8(headers.len() as u8);
    for (name, v) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        let v = &v[..v.len().min(u16::MAX as usize)];
        buf.put_u8(name.len() as u8);
        buf.put_slice(name);
        buf.put_u16(v.len() as u16);
        buf.put_slice(v);
    }
    for piece in value {
        buf.put_slice(piece);
    }
}

/// A batch that is not a sequence of records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("damaged record batch at byte {at}")]
pub struct Damaged {
    pub at: usize,
}

/// The records of a batch, in order. Yields an error (and then stops) at the first damage.
pub fn iter(batch: &[u8]) -> Records<'_> {
    Records { batch, pos: 0 }
}

pub struct Records<'a> {
    batch: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Damaged>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.batch.len() {
            return None;
        }
        let at = self.pos;
        let r = decode_at(self.batch, at);
        match r {
            Some((rec, next)) => {
                self.pos = next;
                Some(Ok(rec))
            }
            None => {
                self.pos = self.batch.len();
                Some(Err(Damaged { at }))
            }
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.i.checked_add(n)?;
        let s = self.b.get(self.i..end)?;
        self.i = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn str(&mut self, n: usize) -> Option<&'a str> {
        self.take(n).and_then(|s| std::str::from_utf8(s).ok())
    }
}

fn decode_at(batch: &[u8], at: usize) -> Option<(Record<'_>, usize)> {
    let mut outer = Cursor { b: batch, i: at };
    let len = outer.u32()? as usize;
    let body = outer.take(len)?;
    let mut c = Cursor { b: body, i: 0 };
    let flags = c.u8()?;
    let tlen = c.u8()? as usize;
    let topic = c.str(tlen)?;
    let partition = if flags & FLAG_PARTITION != 0 {
        Some(c.u32()? as i32)
    } else {
        None
    };
    let key = if flags & FLAG_KEY != 0 {
        let k = c.u16()? as usize;
        Some(c.take(k)?)
    } else {
        None
    };
    let count = c.u8()? as usize;
    if count > MAX_HEADERS {
        return None;
    }
    let mut headers = [("", &[][..]); MAX_HEADERS];
    for h in headers.iter_mut().take(count) {
        let n = c.u8()? as usize;
        let name = c.str(n)?;
        let v = c.u16()? as usize;
        *h = (name, c.take(v)?);
    }
    let value = &body[c.i..];
    Some((
        Record {
            topic,
            partition,
            key,
            headers,
            header_count: count,
            value,
        },
        outer.i,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_as_documented() {
        let mut b = BytesMut::new();
        put(
            &mut b,
            &Head {
                topic: b"req",
                partition: Some(3),
                key: Some(b"17"),
                headers: &[("h", b"v")],
            },
            &[b"ab", b"c"],
        );
        let expect: &[u8] = &[
            0, 0, 0, 22, // length of the rest
            3,  // key and partition
            3, b'r', b'e', b'q', // topic
            0, 0, 0, 3, // partition
            0, 2, b'1', b'7', // key
            1,    // one header
            1, b'h', 0, 1, b'v', // header
            b'a', b'b', b'c', // value
        ];
        assert_eq!(&b[..], expect);
        let recs: Vec<_> = iter(&b).collect();
        assert_eq!(recs.len(), 1);
        let r = recs[0].unwrap();
        assert_eq!(
            (r.topic, r.partition, r.key, r.value),
            ("req", Some(3), Some(&b"17"[..]), &b"abc"[..])
        );
        assert_eq!(r.headers(), &[("h", &b"v"[..])]);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut b = BytesMut::new();
        put(
            &mut b,
            &Head {
                topic: b"t",
                partition: None,
                key: None,
                headers: &[],
            },
            &[b"x"],
        );
        let good = b.len();
        b.extend_from_slice(&[0, 0, 0, 9, 0]);
        let recs: Vec<_> = iter(&b).collect();
        assert!(recs[0].is_ok());
        assert_eq!(recs[1], Err(Damaged { at: good }));
        assert_eq!(recs.len(), 2);
    }

    proptest! {
        #[test]
        fn what_is_put_comes_back(
            recs in proptest::collection::vec((
                "[a-z.]{1,20}",
                proptest::option::of(any::<i32>()),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                proptest::collection::vec(("[a-zA-Z_]{1,16}", proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
            ), 0..6)
        ) {
            let mut b = BytesMut::new();
            for (t, p, k, h, v) in &recs {
                let hs: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
                let vs: Vec<&[u8]> = v.iter().map(|x| &x[..]).collect();
                put(&mut b, &Head { topic: t.as_bytes(), partition: *p, key: k.as_deref(), headers: &hs }, &vs);
            }
            let back: Vec<_> = iter(&b).map(|r| r.unwrap()).collect();
            prop_assert_eq!(back.len(), recs.len());
            for (r, (t, p, k, h, v)) in back.iter().zip(&recs) {
                prop_assert_eq!(r.topic, t.as_str());
                prop_assert_eq!(r.partition, *p);
                prop_assert_eq!(r.key, k.as_deref());
                prop_assert_eq!(r.headers().len(), h.len());
                prop_assert_eq!(r.value, &v.concat()[..]);
            }
        }

        #[test]
        fn any_bytes_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for r in iter(&bytes) {
                let _ = r;
            }
        }
    }
}
