//! The binary encoding of everything the server stores or replicates: log
//! record payloads, hot-tier values, spool entries.
//!
//! One bincode configuration for all of them, fixed for ever: changing it
//! changes the bytes on disk and in the Raft log, so a replica of one build
//! could not read what another wrote. Decoding is strict: a value must use
//! every byte it is given, so a truncated or padded value is an error, not a
//! silently different value.

use serde::de::DeserializeOwned;
use serde::Serialize;

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// Bytes that do not decode as the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not an encoding of the type (bincode's own explanation).
    #[error("{0}")]
    Malformed(String),
    /// A valid encoding followed by bytes that belong to nothing.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, BINCODE).expect("in-memory encoding cannot fail")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, read) = bincode::serde::decode_from_slice(bytes, BINCODE)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - read));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips() {
        let v = (7u64, "seven".to_string(), vec![Some(1u8), None]);
        assert_eq!(
            decode::<(u64, String, Vec<Option<u8>>)>(&encode(&v)).unwrap(),
            v
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&7u64);
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(decode::<u64>(&bytes), Err(CodecError::TrailingBytes(2)));
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        let bytes = encode(&"a string".to_string());
        let err = decode::<String>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn the_encoding_is_fixed() {
        // Stored and replicated bytes depend on this: varint integers,
        // length-prefixed strings.
        assert_eq!(encode(&(300u64, "ab")), vec![251, 44, 1, 2, b'a', b'b']);
    }
}
