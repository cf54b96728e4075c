//! Requests and responses on the wire: a `criu_req` decoded from one packet (never a panic,
//! whatever the bytes) and a `criu_resp` encoded into one.

use criu_proto::rpc::{CriuReq, CriuReqType, CriuResp};
use prost::Message;

/// Why a packet is not a request this service can act on.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not a protobuf `criu_req`.
    #[error("the request is not a criu_req message ({len} bytes)")]
    Malformed {
        /// The packet's length.
        len: usize,
        /// prost's reason.
        #[source]
        source: prost::DecodeError,
    },
    /// A `type` this protocol does not define (`criu_req_type`).
    #[error("unknown request type {0} (criu_req_type has 0-13)")]
    UnknownType(i32),
    /// `EMPTY` (0), also what a request without a type decodes to.
    #[error("empty request type (criu_req.type is EMPTY or missing)")]
    Empty,
}

impl RequestError {
    /// The errno CRIU's clients expect in `cr_errno` (`EBADRQC` for an invalid request).
    pub fn errno(&self) -> i32 {
        libc::EBADRQC
    }
}

/// Decodes one request packet and checks its type.
pub fn decode_request(bytes: &[u8]) -> Result<(CriuReqType, CriuReq), RequestError> {
    let req = CriuReq::decode(bytes).map_err(|source| RequestError::Malformed {
        len: bytes.len(),
        source,
    })?;
    match CriuReqType::try_from(req.r#type) {
        Ok(CriuReqType::Empty) => Err(RequestError::Empty),
        Ok(t) => Ok((t, req)),
        Err(_) => Err(RequestError::UnknownType(req.r#type)),
    }
}

/// Encodes a response.
pub fn encode_response(resp: &CriuResp) -> Vec<u8> {
    resp.encode_to_vec()
}

/// A failed response of type `t` carrying `errno` and `msg` (CRIU's `cr_errno`/`cr_errmsg`).
pub fn failure(t: CriuReqType, errno: i32, msg: impl Into<String>) -> CriuResp {
    CriuResp {
        r#type: t as i32,
        success: false,
        cr_errno: Some(errno),
        cr_errmsg: Some(msg.into()),
        ..CriuResp::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::rpc::CriuOpts;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let req = CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: 5,
                pid: Some(42),
                ..CriuOpts::default()
            }),
            ..CriuReq::default()
        };
        let (t, back) = decode_request(&req.encode_to_vec()).unwrap();
        assert_eq!(t, CriuReqType::Dump);
        assert_eq!(back, req);
        assert!(matches!(
            decode_request(b"\xff\xff\xff"),
            Err(RequestError::Malformed { len: 3, .. })
        ));
        let unknown = CriuReq {
            r#type: 77,
            ..CriuReq::default()
        };
        let err = decode_request(&unknown.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("unknown request type 77"), "{err}");
        assert!(matches!(decode_request(b""), Err(RequestError::Empty)));
        let f = failure(CriuReqType::Check, 5, "x");
        assert_eq!(CriuResp::decode(&*encode_response(&f)).unwrap(), f);
    }
}
