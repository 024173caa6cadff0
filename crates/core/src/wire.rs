//! Hand-written primitives of Kafka's binary format: the protocol's hot paths
//! (Produce request parsing, Fetch response framing) that avoid the generic
//! codec, and the record keys and values of `__consumer_offsets`.

use bytes::{BufMut, BytesMut};

/// A request that does not parse; Kafka closes the connection on these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// A bounds-checked cursor over borrowed request bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(Malformed(what));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn i8(&mut self) -> Result<i8, Malformed> {
        Ok(self.take(1, "truncated int8")?[0] as i8)
    }

    pub fn i16(&mut self) -> Result<i16, Malformed> {
        Ok(i16::from_be_bytes(
            self.take(2, "truncated int16")?.try_into().expect("2 bytes"),
        ))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(
            self.take(4, "truncated int32")?.try_into().expect("4 bytes"),
        ))
    }

    pub fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_be_bytes(
            self.take(8, "truncated int64")?.try_into().expect("8 bytes"),
        ))
    }

    /// Classic (int32-length) bytes; null reads as empty.
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        match self.length(false, true)? {
            Some(n) => self.take(n, "truncated bytes"),
            None => Ok(&[]),
        }
    }

    pub fn uvarint(&mut self) -> Result<u32, Malformed> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, "truncated varint")?[0];
            value |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("varint longer than 5 bytes"))
    }

    /// Length of a nullable string/bytes field: classic (int16/int32) or compact (uvarint N+1).
    fn length(&mut self, compact: bool, wide: bool) -> Result<Option<usize>, Malformed> {
        let n: i64 = match (compact, wide) {
            (true, _) => self.uvarint()? as i64 - 1,
            (false, false) => self.i16()? as i64,
            (false, true) => self.i32()? as i64,
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(Malformed("negative length")),
            n if n as usize > self.remaining() => Err(Malformed("length past the end of the request")),
            n => Ok(Some(n as usize)),
        }
    }

    /// A string; as Kafka's readers, one longer than an int16 counts (32,767
    /// bytes) is malformed in compact form too.
    pub fn nullable_str(&mut self, compact: bool) -> Result<Option<&'a str>, Malformed> {
        match self.length(compact, false)? {
            None => Ok(None),
            Some(n) if n > i16::MAX as usize => Err(Malformed("string longer than 32,767 bytes")),
            Some(n) => std::str::from_utf8(self.take(n, "truncated string")?)
                .map(Some)
                .map_err(|_| Malformed("string is not UTF-8")),
        }
    }

    pub fn str(&mut self, compact: bool) -> Result<&'a str, Malformed> {
        self.nullable_str(compact)?
            .ok_or(Malformed("null where a string is required"))
    }

    /// A nullable bytes field, returned as a range into the buffer (not copied).
    pub fn nullable_bytes_range(&mut self, compact: bool) -> Result<Option<std::ops::Range<usize>>, Malformed> {
        match self.length(compact, true)? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                self.take(n, "truncated bytes")?;
                Ok(Some(start..start + n))
            }
        }
    }

    /// Array length; a classic int32 or compact uvarint N+1. Null arrays read as empty.
    pub fn array_len(&mut self, compact: bool) -> Result<usize, Malformed> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < -1 {
            return Err(Malformed("negative array length"));
        }
        // Every element takes at least one byte: a larger count is a lie.
        let n = n.max(0) as usize;
        if n > self.remaining() {
            return Err(Malformed("array length past the end of the request"));
        }
        Ok(n)
    }

    pub fn skip_tagged_fields(&mut self) -> Result<(), Malformed> {
        self.tagged_fields(|_, _| Ok(()))
    }

    /// Reads a tagged-field section, handing each field's tag and bytes to `field`.
    pub fn tagged_fields(
        &mut self,
        mut field: impl FnMut(u32, &'a [u8]) -> Result<(), Malformed>,
    ) -> Result<(), Malformed> {
        // Bounded: each field takes at least two bytes of what is left.
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            field(tag, self.take(size, "truncated tagged field")?)?;
        }
        Ok(())
    }
}

/// A tagged-field section: `fields` as (tag, bytes), in ascending tag order.
pub fn put_tagged_fields(out: &mut BytesMut, fields: &[(u32, &[u8])]) {
    assert!(fields.windows(2).all(|w| w[0].0 < w[1].0), "tags ascend");
    put_uvarint(out, fields.len() as u32);
    for (tag, bytes) in fields {
        put_uvarint(out, *tag);
        put_uvarint(out, bytes.len() as u32);
        out.put_slice(bytes);
    }
}

pub fn put_uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Array length, classic or compact.
pub fn put_array_len(out: &mut BytesMut, n: usize, compact: bool) {
    if compact {
        put_uvarint(out, n as u32 + 1);
    } else {
        out.put_i32(n as i32);
    }
}

pub fn put_str(out: &mut BytesMut, s: &str, compact: bool) {
    if compact {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.put_i16(s.len() as i16);
    }
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lies_about_lengths_are_errors_not_panics() {
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(r.array_len(false).is_err());
        let mut r = Reader::new(&[0x00, 0x10, b'a']);
        assert!(r.nullable_str(false).is_err());
        let mut r = Reader::new(&[0xff, 0xff]);
        assert_eq!(r.nullable_str(false).unwrap(), None);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(r.uvarint().is_err());
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]);
        assert!(r.uvarint().is_err());
    }

    #[test]
    fn compact_strings_stop_at_32767_bytes_as_in_kafka() {
        for (len, ok) in [(32_767usize, true), (32_768, false)] {
            let mut buf = Vec::new();
            let mut n = len as u32 + 1;
            while n >= 0x80 {
                buf.push((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            buf.push(n as u8);
            buf.extend(std::iter::repeat_n(b'a', len));
            assert_eq!(Reader::new(&buf).str(true).is_ok(), ok, "{len} bytes");
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u32, 1, 127, 128, 300, 16384, u32::MAX] {
            let mut b = BytesMut::new();
            put_uvarint(&mut b, v);
            assert_eq!(Reader::new(&b).uvarint().unwrap(), v);
        }
    }
}
