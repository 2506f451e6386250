//! Trace and span ids and their hex form.

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

pub fn hex_lower(bytes: &[u8]) -> String {
    tael_consensus::hex(bytes)
}

/// Parses exactly `N` bytes of lowercase or uppercase hex.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id: [u8; 8] = parse_hex("00ff10AbCdEf0001").unwrap();
        assert_eq!(hex_lower(&id), "00ff10abcdef0001");
        assert!(parse_hex::<8>("00ff10abcdef000").is_none());
        assert!(parse_hex::<8>("00ff10abcdef000g").is_none());
        assert!(parse_hex::<8>("ééééééé").is_none());
    }
}
